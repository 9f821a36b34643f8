-- DDPM on Fashion-MNIST (Ho et al. 2020), class-conditional with label
-- dropout so that one model samples conditionally, unconditionally and with
-- classifier-free guidance.
--   scripts/md-lua examples/ddpm_fashion.lua [minutes = 10] [checkpoint]
local md = require "moondust"

local minutes = tonumber(arg and arg[1]) or 10
local checkpoint = arg and arg[2] or "checkpoints/ddpm_fashion.safetensors"

-- The tiny ADM U-Net: 32 base channels at 28x28, 64 at 14x14 and 7x7,
-- self-attention at 7x7, 10 classes plus the "no class" index 10.
local model = md.nn.UNet {
  in_channels = 1, out_channels = 1, model_channels = 32, channel_mult = { 1, 2, 2 },
  num_res_blocks = 2, attention_resolutions = { 4 }, num_head_channels = 32,
  num_classes = 10, dropout = 0.1,
}
print(("U-Net with %d parameters"):format(model:num_parameters()))

-- The training loop, written out (md.trainer.train runs the same algorithm
-- with checkpoints, resume, EMA and sample grids; this script uses it below):
--   repeat
--     x0, y ~ data;  t ~ Uniform{0, ..., T-1};  eps ~ N(0, I)
--     y <- "no class" with probability 0.1
--     x_t = sqrt(ab_t) x0 + sqrt(1 - ab_t) eps           (md.q_sample)
--     loss = || eps - model(x_t, t, y) ||^2               (md.mse_loss)
--     gradient step on loss (AdamW), update the EMA of the weights
--   until the time is up
local result = md.trainer.train {
  model = model,
  data = md.data.fashion_mnist { split = "train" },
  schedule = "linear",           -- betas 1e-4 .. 0.02, T = 1000
  minutes = minutes,
  batch_size = 128,
  lr = 2e-4,
  ema_decay = 0.999,
  label_dropout = 0.1,
  sample_every = 1000,
  checkpoint = checkpoint,
}
print(("trained %d steps, %.1f images/s; checkpoint %s"):format(result.steps, result.images_per_second, checkpoint))

-- Sampling: DDIM with 50 steps and guidance 3, one row per class.
local trained = md.load(checkpoint)
local labels = {}
for c = 0, 9 do for _ = 1, 10 do labels[#labels + 1] = c end end
local x = md.sample(trained, { n = #labels, class = labels, steps = 50, sampler = "ddim", guidance = 3, seed = 1 })
md.image.save_grid(x, "out/ddpm_fashion_ddim50.png", { nrow = 10 })
print("wrote out/ddpm_fashion_ddim50.png")
