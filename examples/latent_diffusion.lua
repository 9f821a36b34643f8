-- Latent diffusion (Rombach et al. 2022) on Fashion-MNIST:
-- 1. a convolutional KL autoencoder 1 x 28 x 28 -> 4 x 7 x 7, trained with
--    reconstruction + a small KL weight;
-- 2. the latent scale factor, 1 / std of the encoded training set, stored
--    in the autoencoder's checkpoint;
-- 3. a class-conditional U-Net on the scaled latents, with the same trainer,
--    schedule and samplers as pixel space;
-- 4. samples decoded to images.
--   scripts/md-lua examples/latent_diffusion.lua [ae_minutes = 3] [diffusion_minutes = 10]
local md = require "moondust"

local ae_minutes = tonumber(arg and arg[1]) or 3
local diffusion_minutes = tonumber(arg and arg[2]) or 10
local ae_path, ldm_path = "checkpoints/ldm_autoencoder.safetensors", "checkpoints/ldm_unet.safetensors"
md.manual_seed(0)
md.core.mkdir_p("out"); md.core.mkdir_p("checkpoints")
local train = md.data.fashion_mnist { split = "train" }

-- 1. the autoencoder
local ae = md.vae.VAE { kind = "conv", latent_channels = 4, decoder = "gaussian", sigma = 0.1 }
local opt = md.optim.Adam(ae, { lr = 1e-3 })
local loader = md.data.loader(train, { batch_size = 128, generator = md.Generator(1) })
local gen = md.Generator(2)
local bar = md.progress.new { label = "autoencoder" }
local deadline, step = md.progress.now() + 60 * ae_minutes, 0
while md.progress.now() < deadline do
  local x = loader:next()
  local loss = ae:loss(x, { gen = gen, kl_weight = 1e-3 })
  opt:zero_grad()
  loss:backward()
  opt:step()
  step = step + 1
  bar:update(step, { loss = loss:item(), images = x:size(1) })
end
bar:finish()
ae:eval()

-- 2. latents of the training set (posterior means) and their scale
local function encode(images)
  local parts = {}
  md.no_grad(function()
    for start = 1, images:size(1), 1000 do
      parts[#parts + 1] = (ae:encode(images:narrow(1, start, math.min(1000, images:size(1) - start + 1))))
    end
  end)
  return md.cat(parts, 1)
end
local latents = encode(train.images)
local scale = 1 / latents:std():item()
print(("latents %s, std %.3f -> scale factor %.4f"):format(table.concat(latents:shape(), "x"), 1 / scale, scale))
md.save(ae_path, { model = ae }, { model = "vae", config = ae.config, scale_factor = scale })

-- 3. diffusion on the scaled latents: 7 x 7 throughout, attention at 7 x 7
local unet = md.nn.UNet { in_channels = 4, out_channels = 4, model_channels = 64, channel_mult = { 1 },
                          num_res_blocks = 2, attention_resolutions = { 1 }, num_head_channels = 32, num_classes = 10 }
local result = md.trainer.train {
  model = unet, data = { images = latents * scale, labels = train.labels, n = train.n, classes = train.classes },
  minutes = diffusion_minutes, batch_size = 128, lr = 5e-4, sample_every = 0, checkpoint = ldm_path, resume = false,
}
print(("latent U-Net: %d parameters, %d steps, %.1f images/s"):format(unet:num_parameters(), result.steps,
  result.images_per_second))

-- 4. sample latents (DDIM 50, guidance 3), decode and score
local model = md.load(ldm_path)
local n = 1000
local labels = {}
for i = 1, n do labels[i] = (i - 1) % 10 end
local z = md.sample(model, { n = n, class = labels, steps = 50, guidance = 3, seed = 1, shape = { 4, 7, 7 },
                             batch_size = 250 })
local images = md.no_grad(function() return ae:to_image(ae:decode(z * (1 / scale))) end)
md.image.save_grid(md.index_select(images, 1, md.arange(100)), "out/latent_diffusion.png", { nrow = 10 })
print("wrote out/latent_diffusion.png")
-- the built-in metric (md.metrics: its feature network ships with moondust)
print(("latent diffusion, DDIM 50, guidance 3, %d samples: %s"):format(n, md.metrics.format(md.metrics.score(images, labels))))
