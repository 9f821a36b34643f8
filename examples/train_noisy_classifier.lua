-- A noisy, timestep-conditioned classifier for classifier guidance, as in
-- ADM (Dhariwal & Nichol 2021): the U-Net's encoder half with the timestep
-- embedding and an attention-pooling head, trained with cross-entropy on
-- mirrored images noised by q_sample at t uniform in 0..T-1; AdamW, warm-up
-- and a cosine decay that ends at the time budget; the EMA weights are kept.
-- Prints test accuracy at t = 0, 50, ..., 950, 999 and plots it against t.
--   scripts/md-lua examples/train_noisy_classifier.lua [minutes = 5] [out] [run dir = out/noisy_classifier]
local md = require "moondust"

local minutes, out = tonumber(arg and arg[1]) or 5, arg and arg[2] or "checkpoints/noisy_classifier.safetensors"
local run_dir = arg and arg[3] or "out/noisy_classifier"
md.manual_seed(0)

local config = { in_channels = 1, model_channels = 32, channel_mult = { 1, 2, 2 }, num_res_blocks = 2,
                 attention_resolutions = { 4 }, num_head_channels = 32, use_scale_shift_norm = true,
                 out_channels = 10, pool = "attention", image_size = 28 }
local model = md.nn.EncoderUNet(config)
local sched = md.schedule.linear {}
local train, test = md.data.fashion_mnist { split = "train" }, md.data.fashion_mnist { split = "test" }
local loader = md.data.loader(train, { batch_size = 128, drop_last = true, generator = md.Generator(1) })
local gen, base_lr, warmup = md.Generator(2), 1e-3, 200
local opt = md.optim.AdamW(model, { lr = base_lr, weight_decay = 0.05 })
local ema = md.optim.EMA(model, 0.999)
local mirror = md.arange(27, -1, -1) -- column order of a left-right mirror

-- a batch mirrored at random (per image), then noised: x_t = q_sample(x0, t, eps)
local function noisy_batch(x0)
  local n = x0:size(1)
  local flip = (gen:rand { n, 1, 1, 1 }):lt(0.5)
  x0 = md.where(flip, md.index_select(x0, 4, mirror), x0)
  local t = gen:randint(0, sched.T, { n })
  return md.q_sample(x0, t, gen:randn(x0:shape()), sched.alphas_cumprod), t
end

local run = md.runlog.open(run_dir)
local bar = md.progress.new { label = "noisy classifier" }
local start, step = md.progress.now(), 0
while md.progress.now() - start < 60 * minutes do
  local frac = (md.progress.now() - start) / (60 * minutes)
  opt.lr = base_lr * math.min(1, (step + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * frac))
  local x0, y = loader:next()
  local xt, t = noisy_batch(x0)
  local loss = md.cross_entropy(model(xt, t), y)
  opt:zero_grad(); loss:backward()
  md.optim.clip_grad_norm(model, 1.0)
  opt:step()
  ema:update(model)
  step = step + 1
  bar:update(step, { loss = loss:item(), images = x0:size(1) })
  if step % 100 == 0 then run:log { step = step, loss = loss:item(), lr = opt.lr } end
end
bar:finish()
run:plot()

-- test accuracy of the EMA weights on q_sample-noised test images
ema:copy_to(model); model:eval()
local function accuracy(t)
  local correct = 0
  for first = 1, test.n, 1000 do
    local x0, y = test.images:narrow(1, first, 1000), test.labels:narrow(1, first, 1000)
    local tt = md.full({ 1000 }, t)
    local xt = md.q_sample(x0, tt, md.Generator(first + t):randn(x0:shape()), sched.alphas_cumprod)
    correct = correct + md.no_grad(function() return model(xt, tt):argmax(2):eq(y):sum():item() end)
  end
  return correct / test.n
end
local ts, accs, row = {}, {}, {}
for t = 0, 1000, 50 do
  ts[#ts + 1] = math.min(t, 999)
  accs[#accs + 1] = accuracy(ts[#ts])
  row[#row + 1] = ("%.1f%%"):format(100 * accs[#accs])
end
print("| t | " .. table.concat(ts, " | ") .. " |")
print("| test accuracy | " .. table.concat(row, " | ") .. " |")
md.plot.figure(run_dir .. "/accuracy_t.png", { { xlabel = "t", ylabel = "test accuracy", title = "noisy classifier",
  series = { { label = "EMA weights", x = ts, y = accs } } } }, { width = 640, height = 400 })
md.core.mkdir_p(out:match("^(.*)/[^/]*$") or ".")
md.save(out, { model = model }, { model = "encoder_unet", config = model.config, steps = step,
                                  test_accuracy = { t = ts, accuracy = accs } })
print("saved " .. out)
