-- The benchmark: moondust against the PyTorch reference (torch_unet.py) on
-- the same U-Net, alternating the two systems, one process per measurement,
-- reporting medians. Writes a table to stdout and out/bench.json.
--   make bench            (or: scripts/md-lua scripts/bench/bench.lua [rounds = 3] [figures])
-- PyTorch runs in its fastest honest configuration on this machine:
-- torch.set_num_threads(2), OPENBLAS_NUM_THREADS=1, tcmalloc preloaded, and
-- the faster of eager and torch.jit.trace (frozen for inference).
local md = require "moondust"

local rounds = tonumber(arg[1]) or 3
local only = arg[2]
local threads = md.get_num_threads()
local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "scripts/bench"

local TORCH_ENV = ("OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=%d LD_PRELOAD=libtcmalloc_minimal.so.4 "):format(threads)

local function run(cmd)
  local p = io.popen(cmd .. " 2>/dev/null")
  local out = p:read("a")
  p:close()
  local line = out:match("(%{.-%})%s*$")
  if not line then return nil, out end
  return md.core.json_decode(line)
end

local function moondust(figure, mc, repeats)
  return run(("%s/../md-lua %s/moondust_unet.lua %s %d %d"):format(here, here, figure, mc, repeats))
end

local function torch(figure, mc, repeats, mode)
  return run(("%s/usr/bin/python3 -c 'import torch,sys; torch.set_num_threads(%d); sys.argv=[\"x\",\"%s\",\"%d\",\"%d\",\"%s\"]; "
    .. "sys.path.insert(0,\"%s\"); import torch_unet; torch_unet.main()'"):format(TORCH_ENV, threads, figure, mc, repeats,
    mode, here))
end

local function median(xs)
  local s = {}
  for i, v in ipairs(xs) do s[i] = v end
  table.sort(s)
  local n = #s
  if n == 0 then return 0 / 0 end
  return n % 2 == 1 and s[(n + 1) // 2] or (s[n // 2] + s[n // 2 + 1]) / 2
end

-- figure -> images per measured unit, GFLOP per unit (forward 0.554 / 2.21 GFLOP per image)
local FWD = { [32] = 0.554, [64] = 2.21 }
local figures = {
  { name = "train", label = "training img/s, batch 128", mc = 32, images = 128, flops = function(mc) return 3 * FWD[mc] * 128 end, repeats = 5 },
  { name = "train", label = "training img/s, batch 128", mc = 64, images = 128, flops = function(mc) return 3 * FWD[mc] * 128 end, repeats = 3 },
  { name = "sample", label = "DDIM-50 img/s, batch 256", mc = 32, images = 256, flops = function(mc) return 50 * FWD[mc] * 256 end, repeats = 1 },
  { name = "sample_cfg", label = "DDIM-50 + CFG img/s, batch 256", mc = 32, images = 256, flops = function(mc) return 100 * FWD[mc] * 256 end, repeats = 1 },
  { name = "forward1", label = "forward, batch 1 (ms)", mc = 32, images = 1, flops = function(mc) return FWD[mc] end, repeats = 20, ms = true },
}

local gemm = moondust("peak", 32, 3)
local gemm_gflops = gemm and 2 * 2048 ^ 3 / median(gemm.times) / 1e9 or 0 / 0
local fma = moondust("fma", 32, 3)
local peak_gflops = fma and median(fma.times) or 0 / 0
print(("fp32 FMA peak probe: %.0f GFLOP/s; GEMM probe (2048^3, oneDNN): %.0f GFLOP/s; %d threads"):format(
  peak_gflops, gemm_gflops, threads))

local results = {}
for _, f in ipairs(figures) do
  if not only or only:find(f.name, 1, true) then
    local r = { figure = f.name, label = f.label, mc = f.mc, moondust = {}, torch_eager = {}, torch_jit = {} }
    for round = 1, rounds do
      io.stderr:write(("%s mc=%d round %d/%d\n"):format(f.name, f.mc, round, rounds))
      local m = moondust(f.name, f.mc, f.repeats)
      local te = torch(f.name, f.mc, f.repeats, "eager")
      local tj = torch(f.name, f.mc, f.repeats, "jit")
      for key, res in pairs { moondust = m, torch_eager = te, torch_jit = tj } do
        if res then
          for _, t in ipairs(res.times) do table.insert(r[key], t) end
          r[key .. "_rss"] = math.max(r[key .. "_rss"] or 0, res.maxrss_mb)
          r[key .. "_params"] = res.params
        end
      end
    end
    local med = {}
    for _, key in ipairs { "moondust", "torch_eager", "torch_jit" } do med[key] = median(r[key]) end
    r.torch_best = (med.torch_jit == med.torch_jit and med.torch_jit < med.torch_eager) and "torch_jit" or "torch_eager"
    r.median_s = med
    r.moondust_gflops = f.flops(f.mc) / med.moondust
    r.moondust_peak_fraction = r.moondust_gflops / peak_gflops
    if f.ms then
      r.moondust_value, r.torch_value = med.moondust * 1000, med[r.torch_best] * 1000
      r.speedup = med[r.torch_best] / med.moondust
    else
      r.moondust_value, r.torch_value = f.images / med.moondust, f.images / med[r.torch_best]
      r.speedup = r.moondust_value / r.torch_value
    end
    results[#results + 1] = r
  end
end

print()
print(("%-34s %4s %10s %10s %7s %9s %9s %7s"):format("figure", "mc", "moondust", "PyTorch", "ratio", "md MB", "torch MB", "% peak"))
for _, r in ipairs(results) do
  print(("%-34s %4d %10.2f %10.2f %6.2fx %9.0f %9.0f %6.1f%%"):format(r.label, r.mc, r.moondust_value, r.torch_value,
    r.speedup, r.moondust_rss or 0, r[r.torch_best .. "_rss"] or 0, 100 * r.moondust_peak_fraction))
end
local params = results[1] and ("parameters: moondust %s, PyTorch %s"):format(tostring(results[1].moondust_params),
  tostring(results[1].torch_eager_params)) or ""
print(params)
print("ratio: moondust over PyTorch's faster mode (higher is better; for ms, PyTorch time / moondust time)")
md.core.mkdir_p("out")
local f = io.open("out/bench.json", "w")
f:write(md.core.json_encode { threads = threads, peak_gflops = peak_gflops, gemm_gflops = gemm_gflops, rounds = rounds,
                      results = results })
f:close()
print("wrote out/bench.json")
