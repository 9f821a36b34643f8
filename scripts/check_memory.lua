-- Trains the reference U-Net (model_channels 32, channel_mult (1, 2, 2),
-- attention at 7x7, 10 classes) at batch 128 for a number of steps and
-- prints the resident memory every 20 steps: it must stay flat.
--   scripts/md-lua scripts/check_memory.lua [steps = 200]
local md = require "moondust"

local steps = tonumber(arg[1]) or 200
local function rss_mb()
  local f = io.open("/proc/self/status")
  local s = f:read("a")
  f:close()
  return tonumber(s:match("VmRSS:%s+(%d+)")) / 1024
end

md.manual_seed(0)
local model = md.nn.UNet { model_channels = 32, channel_mult = { 1, 2, 2 }, attention_resolutions = { 4 },
                           num_head_channels = 32, num_classes = 10 }
local opt = md.optim.AdamW(model, { lr = 1e-4 })
local ema = md.optim.EMA(model, 0.999)
local sched = md.schedule.linear {}
local gen = md.Generator(1)
local x0 = md.rand { 128, 1, 28, 28 } * 2 - 1
local y = md.randint(0, 11, { 128 })
local readings = {}
local t0 = md.time()
for step = 1, steps do
  local t, noise = gen:randint(0, 1000, { 128 }), gen:randn { 128, 1, 28, 28 }
  local loss = md.mse_loss(model(md.q_sample(x0, t, noise, sched.alphas_cumprod), t, y), noise)
  opt:zero_grad()
  loss:backward()
  opt:step()
  ema:update(model)
  if step % 20 == 0 then
    readings[#readings + 1] = rss_mb()
    print(("step %4d  loss %.4f  resident %.0f MB  live tensors %.0f MB  %.1f img/s"):format(step, loss:item(),
      readings[#readings], md.memory() / 2 ^ 20, 128 * step / (md.time() - t0)))
  end
end
local first, last, top = readings[2] or readings[1], readings[#readings], 0
for i = 2, #readings do top = math.max(top, readings[i]) end
print(("resident memory from step 40 to %d: %.0f -> %.0f MB (max %.0f MB)"):format(steps, first, last, top))
