-- One benchmark figure for moondust's reference U-Net, in its own process
-- so that peak memory is that figure's own. Run by scripts/bench/bench.lua.
--   scripts/md-lua scripts/bench/moondust_unet.lua FIGURE MODEL_CHANNELS REPEATS [PRECISION]
--   FIGURE: train | sample | sample_cfg | forward1 | peak; PRECISION: fp32 | bf16
-- Prints one JSON line: {"times": [...], "maxrss_mb": ..., "params": ...}.
local md = require "moondust"

local figure, mc, repeats = arg[1], tonumber(arg[2]) or 32, tonumber(arg[3]) or 3
md.set_precision(arg[4] or "fp32")

local function maxrss_mb()
  local f = io.open("/proc/self/status")
  local s = f:read("a")
  f:close()
  return tonumber(s:match("VmHWM:%s+(%d+)")) / 1024
end

md.manual_seed(0)
local model = md.nn.UNet { model_channels = mc, channel_mult = { 1, 2, 2 }, num_res_blocks = 2,
                           attention_resolutions = { 4 }, num_head_channels = 32, num_classes = 10, norm_groups = 8 }
local times = {}

-- A warm-up run first (primitive creation, caches), then `repeats` timed
-- runs; the garbage collector runs when it would in a real loop, inside them.
local function timed(fn, warmup)
  (warmup or fn)()
  for _ = 1, repeats do
    local t0 = md.time()
    fn()
    times[#times + 1] = md.time() - t0
  end
end

if figure == "train" then
  local opt = md.optim.AdamW(model, { lr = 1e-4 })
  local ema = md.optim.EMA(model, 0.999)
  -- as the trainer runs it: a fresh batch each step, the EMA update
  timed(function()
    local x, t, y = md.randn { 128, 1, 28, 28 }, md.randint(0, 1000, { 128 }), md.randint(0, 11, { 128 })
    local noise = md.randn(x:shape())
    local loss = md.mse_loss(model(x, t, y), noise)
    opt:zero_grad()
    loss:backward()
    opt:step()
    ema:update(model)
  end)
elseif figure == "sample" or figure == "sample_cfg" then
  model:eval()
  local function run(steps)
    return function()
      md.sample(model, { n = 256, class = 7, steps = steps, sampler = "ddim", batch_size = 256, progress = false,
                         guidance = figure == "sample_cfg" and 3 or nil })
    end
  end
  timed(run(50), run(2))
elseif figure == "forward1" then
  model:eval()
  local x, t, y = md.randn { 1, 1, 28, 28 }, md.tensor { 500 }, md.tensor { 3 }
  timed(function() md.no_grad(function() return model(x, t, y) end) end)
elseif figure == "fma" then
  -- the machine's fp32 FMA peak: chains of independent vector FMAs on every thread
  md.core.fma_peak() -- warm-up (clocks, thread pool)
  for i = 1, repeats do times[i] = md.core.fma_peak() end
elseif figure == "peak" then
  -- what a large GEMM reaches (oneDNN's SGEMM)
  local n = 2048
  local a, b = md.randn { n, n }, md.randn { n, n }
  timed(function() md.no_grad(function() for _ = 1, 5 do md.matmul(a, b) end end) end)
  for i, s in ipairs(times) do times[i] = s / 5 end
else
  error("unknown figure " .. tostring(figure))
end
print(md.core.json_encode { times = times, maxrss_mb = maxrss_mb(), params = model:num_parameters() })
