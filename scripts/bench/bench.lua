-- The benchmark: moondust against the PyTorch reference (torch_unet.py) on
-- the same U-Net, alternating the two systems, one process per measurement,
-- reporting medians, each ratio the median of the rounds' own ratios with
-- their range. moondust runs in fp32 and bf16 (md.set_precision), PyTorch
-- in fp32 (eager, jit) and bf16 (torch.autocast). Writes a table to stdout
-- and out/bench.json.
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

local function moondust(figure, mc, repeats, precision)
  return run(("%s/../md-lua %s/moondust_unet.lua %s %d %d %s"):format(here, here, figure, mc, repeats,
    precision or "fp32"))
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

local function spread(xs)
  local lo, hi = math.huge, -math.huge
  for _, v in ipairs(xs) do lo, hi = math.min(lo, v), math.max(hi, v) end
  return lo, hi
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

-- The systems, each run in its own process once per round, in this order
-- (alternated, so drift hits all of them alike). PyTorch fp32 is the faster
-- of eager and jit in each round.
local systems = {
  { key = "md_fp32", run = function(f) return moondust(f.name, f.mc, f.repeats, "fp32") end },
  { key = "md_bf16", run = function(f) return moondust(f.name, f.mc, f.repeats, "bf16") end },
  { key = "torch_eager", run = function(f) return torch(f.name, f.mc, f.repeats, "eager") end },
  { key = "torch_jit", run = function(f) return torch(f.name, f.mc, f.repeats, "jit") end },
  { key = "torch_bf16", run = function(f) return torch(f.name, f.mc, f.repeats, "bf16") end },
}
local bf16_ok = pcall(md.set_precision, "bf16")
md.set_precision("fp32")

-- value of one measurement: images/s, or ms for the batch-1 figure
local function value(f, seconds) return f.ms and seconds * 1000 or f.images / seconds end

local results = {}
for _, f in ipairs(figures) do
  if not only or only:find(f.name, 1, true) then
    local r = { figure = f.name, label = f.label, mc = f.mc, rounds = {}, rss = {} }
    for round = 1, rounds do
      io.stderr:write(("%s mc=%d round %d/%d\n"):format(f.name, f.mc, round, rounds))
      local med = {}
      for _, sys in ipairs(systems) do
        local res = (sys.key ~= "md_bf16" or bf16_ok) and sys.run(f) or nil
        if res then
          med[sys.key] = median(res.times)
          r.rss[sys.key] = math.max(r.rss[sys.key] or 0, res.maxrss_mb)
          r.params = r.params or res.params
        end
      end
      med.torch_fp32 = math.min(med.torch_eager or math.huge, med.torch_jit or math.huge)
      if med.torch_fp32 == math.huge then med.torch_fp32 = nil end
      r.rounds[round] = med
    end
    -- per-round ratios, then their median and range
    local function ratios(a, b)
      local xs = {}
      for _, med in ipairs(r.rounds) do
        if med[a] and med[b] then xs[#xs + 1] = med[b] / med[a] end -- in moondust's favour
      end
      local lo, hi = spread(xs)
      return { median = median(xs), lo = lo, hi = hi, n = #xs }
    end
    local function values(key)
      local xs = {}
      for _, med in ipairs(r.rounds) do if med[key] then xs[#xs + 1] = value(f, med[key]) end end
      local lo, hi = spread(xs)
      return { median = median(xs), lo = lo, hi = hi }
    end
    r.values = { md_fp32 = values("md_fp32"), md_bf16 = values("md_bf16"), torch_fp32 = values("torch_fp32"),
                 torch_bf16 = values("torch_bf16") }
    r.ratio_fp32 = ratios("md_fp32", "torch_fp32")
    r.ratio_bf16 = ratios("md_bf16", "torch_fp32")
    r.ratio_bf16_vs_torch_bf16 = ratios("md_bf16", "torch_bf16")
    local sec = f.ms and r.values.md_fp32.median / 1000 or f.images / r.values.md_fp32.median
    r.moondust_gflops = f.flops(f.mc) / sec
    r.moondust_peak_fraction = r.moondust_gflops / peak_gflops
    results[#results + 1] = r
  end
end

-- The trainer itself, as a user runs it (data loader, EMA, GC, logging): 2
-- minutes per precision, once; its images/s is the median of the log's
-- 50-step windows after the first (which carries the start-up costs).
local function trainer_images_per_second(precision)
  local dir = os.tmpname()
  os.remove(dir)
  local cmd = ("%s/../moondust train --minutes 2 --fresh --sample-every 0 --checkpoint %s/ck.safetensors "
    .. "--run-dir %s --precision %s >/dev/null 2>&1"):format(here, dir, dir, precision)
  if not os.execute(cmd) then return nil end
  local xs = {}
  for line in io.lines(dir .. "/log.jsonl") do
    local rec = md.core.json_decode(line)
    if rec.images_per_second and rec.step and rec.step > 50 then xs[#xs + 1] = rec.images_per_second end
  end
  os.execute("rm -rf " .. dir)
  return #xs > 0 and median(xs) or nil, #xs
end
local trainer = {}
if not only or only:find("trainer", 1, true) then
  for _, p in ipairs { "fp32", "bf16" } do
    if p == "fp32" or bf16_ok then
      io.stderr:write(("trainer %s, 2 minutes\n"):format(p))
      local ok, ips = pcall(trainer_images_per_second, p)
      trainer[p] = ok and ips or nil
      if not ok then io.stderr:write("trainer: " .. tostring(ips) .. "\n") end
    end
  end
end

local function range(v, fmt) return (fmt .. " (" .. fmt .. "-" .. fmt .. ")"):format(v.median, v.lo, v.hi) end
print()
print(("%-31s %3s | %-22s %-22s | %-22s %-22s | %-19s %-19s %-19s | %5s %5s | %5s"):format("figure (median (range))", "mc",
  "moondust fp32", "moondust bf16", "PyTorch fp32", "PyTorch bf16", "fp32 ratio", "bf16 / torch fp32",
  "bf16 / torch bf16", "md MB", "pt MB", "%peak"))
for _, r in ipairs(results) do
  print(("%-31s %3d | %-22s %-22s | %-22s %-22s | %-19s %-19s %-19s | %5.0f %5.0f | %4.1f%%"):format(r.label, r.mc,
    range(r.values.md_fp32, "%.1f"), range(r.values.md_bf16, "%.1f"), range(r.values.torch_fp32, "%.1f"),
    range(r.values.torch_bf16, "%.1f"), range(r.ratio_fp32, "%.2f"), range(r.ratio_bf16, "%.2f"),
    range(r.ratio_bf16_vs_torch_bf16, "%.2f"), r.rss.md_fp32 or 0,
    math.min(r.rss.torch_eager or math.huge, r.rss.torch_jit or math.huge), 100 * r.moondust_peak_fraction))
end
if trainer.fp32 then
  local harness = results[1] and results[1].figure == "train" and results[1].values
  print(("trainer, scripts/moondust train --minutes 2 (mc 32, batch 128): fp32 %.1f img/s, bf16 %s img/s%s"):format(
    trainer.fp32, trainer.bf16 and ("%.1f"):format(trainer.bf16) or "-",
    harness and ("; the harness above: %.1f / %.1f"):format(harness.md_fp32.median, harness.md_bf16.median) or ""))
end
print(("parameters: %s; %d rounds; PyTorch fp32 = the faster of eager and jit in each round"):format(
  tostring(results[1] and results[1].params), rounds))
print("ratios: median over rounds of each round's PyTorch time / moondust time (higher is better), with their range")
if not bf16_ok then print("moondust bf16: not run (this CPU or build has no bf16 convolutions)") end
md.core.mkdir_p("out")
local f = io.open("out/bench.json", "w")
f:write(md.core.json_encode { threads = threads, peak_gflops = peak_gflops, gemm_gflops = gemm_gflops, rounds = rounds,
                      results = results, trainer_images_per_second = trainer })
f:close()
print("wrote out/bench.json")
