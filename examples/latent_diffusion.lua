-- Latent diffusion (Rombach et al. 2022) on Fashion-MNIST:
-- 1. a KL autoencoder (md.autoencoder: ResnetBlocks, attention in the
--    middle, 1 x 28 x 28 -> 4 x 7 x 7) trained with L1 + a perceptual term
--    on md.metrics' features + a small KL weight, its latents scaled to unit std;
-- 2. a class-conditional U-Net on those latents, trained by the same trainer,
--    which saves the autoencoder into its checkpoint;
-- 3. md.load + md.sample give decoded images, scored by md.metrics.
--   scripts/md-lua examples/latent_diffusion.lua [ae_minutes = 6] [diffusion_minutes = 24] [n = 1000]
local md = require "moondust"

local ae_minutes = tonumber(arg and arg[1]) or 6
local diffusion_minutes = tonumber(arg and arg[2]) or 24
local n = tonumber(arg and arg[3]) or 1000
local ae_path, ldm_path = "checkpoints/ldm_autoencoder.safetensors", "checkpoints/ldm_unet.safetensors"
md.core.mkdir_p("out")
local train = md.data.fashion_mnist { split = "train" }

-- 1. the autoencoder, and how well it reconstructs the test split
local ae = md.autoencoder.AutoencoderKL { image_size = 28 }
local r = md.autoencoder.train { model = ae, data = train, minutes = ae_minutes, checkpoint = ae_path }
print(("autoencoder: %d parameters, %d steps, %.1f images/s, latent std %.3f"):format(ae:num_parameters(), r.steps,
  r.images_per_second, ae.config.latent_std[1]))
local test = md.data.fashion_mnist { split = "test" }
local rec, recon = md.autoencoder.evaluate(ae, test, { n = 1000 })
print(("reconstructions of 1000 test images: PSNR %.2f dB; %s"):format(rec.psnr, md.metrics.format(rec)))
md.autoencoder.save_comparison(test.images, recon, "out/ldm_reconstructions.png")

-- 2. diffusion on the scaled latents: 7 x 7 throughout, attention at 7 x 7
local unet = md.nn.UNet { in_channels = 4, out_channels = 4, model_channels = 64, channel_mult = { 1 },
                          attention_resolutions = { 1 }, num_classes = 10, image_size = 7 }
local result = md.trainer.train {
  model = unet, data = md.autoencoder.latent_data(ae, train), autoencoder = ae, minutes = diffusion_minutes,
  lr = 5e-4, sample_every = 0, checkpoint = ldm_path, resume = false, run_dir = "out/ldm-run",
}
print(("latent U-Net: %d parameters, %d steps, %.1f images/s"):format(unet:num_parameters(), result.steps,
  result.images_per_second))

-- 3. sample (DDIM 50, guidance 3): md.sample decodes through the autoencoder the checkpoint holds
local model = md.load(ldm_path)
local labels = {}
for i = 1, n do labels[i] = (i - 1) % 10 end
local images = md.sample(model, { n = n, class = labels, steps = 50, guidance = 3, seed = 1, batch_size = 250 })
local grid = {}
for c = 0, 9 do for k = 0, 9 do grid[#grid + 1] = c + 10 * k end end -- a row per class
md.image.save_grid(md.index_select(images, 1, md.tensor(grid)), "out/latent_diffusion.png", { nrow = 10 })
print("wrote out/latent_diffusion.png and out/ldm_reconstructions.png")
print(("latent diffusion, DDIM 50, guidance 3, %d samples: %s"):format(n, md.metrics.format(md.metrics.score(images, labels))))
