-- A noisy, timestep-conditioned classifier for classifier guidance
-- (Dhariwal & Nichol 2021): the U-Net's encoder half with the timestep
-- embedding, pooled to 10 logits, trained with cross-entropy on images
-- noised by q_sample at t drawn uniformly from 0..T-1 (so it never sees
-- only clean images).
--   scripts/md-lua examples/train_noisy_classifier.lua [minutes = 5] [out]
local md = require "moondust"

local minutes = tonumber(arg and arg[1]) or 5
local out = arg and arg[2] or "checkpoints/noisy_classifier.safetensors"
md.manual_seed(0)

local config = { in_channels = 1, model_channels = 32, channel_mult = { 1, 2, 2 }, num_res_blocks = 1,
                 attention_resolutions = { 4 }, num_head_channels = 32, out_channels = 10 }
local model = md.nn.EncoderUNet(config)
local sched = md.schedule.linear {}
local train, test = md.data.fashion_mnist { split = "train" }, md.data.fashion_mnist { split = "test" }
local loader = md.data.loader(train, { batch_size = 128, drop_last = true, generator = md.Generator(1) })
local gen = md.Generator(2)
local opt = md.optim.AdamW(model, { lr = 1e-3, weight_decay = 0.05 })
local warm = md.optim.warmup(opt, 100)

-- noisy images: x_t = q_sample(x0, t, eps)
local function noisy(x0)
  local t = gen:randint(0, sched.T, { x0:size(1) })
  return md.q_sample(x0, t, gen:randn(x0:shape()), sched.alphas_cumprod), t
end

local bar = md.progress.new { label = "noisy classifier" }
local deadline, step = md.progress.now() + 60 * minutes, 0
while md.progress.now() < deadline do
  local x0, y = loader:next()
  local xt, t = noisy(x0)
  local loss = md.cross_entropy(model(xt, t), y)
  opt:zero_grad()
  loss:backward()
  opt:step()
  warm:step()
  step = step + 1
  bar:update(step, { loss = loss:item(), images = x0:size(1) })
end
bar:finish()

-- accuracy on noisy test images at a few noise levels
model:eval()
for _, t in ipairs { 0, 250, 500, 750 } do
  local x0 = test.images:narrow(1, 1, 1000)
  local y = test.labels:narrow(1, 1, 1000)
  local tt = md.full({ 1000 }, t)
  local xt = md.q_sample(x0, tt, gen:randn(x0:shape()), sched.alphas_cumprod)
  local acc = md.no_grad(function() return model(xt, tt):argmax(2):eq(y):mean():item() end)
  print(("test accuracy at t = %d: %.1f%%"):format(t, 100 * acc))
end
md.core.mkdir_p("checkpoints")
md.save(out, { model = model }, { model = "encoder_unet", config = model.config, steps = step })
print("saved " .. out)
