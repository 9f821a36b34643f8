-- A VAE on Fashion-MNIST: Gaussian encoder, reparameterization, Bernoulli
-- decoder, loss = reconstruction + KL (the negative ELBO).
--   scripts/md-lua examples/vae.lua [mlp|conv] [epochs = 5]
local md = require "moondust"

local kind = arg and arg[1] or "mlp"
local epochs = tonumber(arg and arg[2]) or 5
md.manual_seed(0)

local model = md.vae.VAE { kind = kind, latent = 16, latent_channels = 4, decoder = "bernoulli" }
local train, test = md.data.fashion_mnist { split = "train" }, md.data.fashion_mnist { split = "test" }
local loader = md.data.loader(train, { batch_size = 128, generator = md.Generator(1) })
local opt = md.optim.Adam(model, { lr = 1e-3 })
local gen = md.Generator(2)

local bar = md.progress.new { total = epochs * #loader, label = "vae-" .. kind }
local step = 0
for epoch = 1, epochs do
  for x in loader() do
    local loss = model:loss(x, { gen = gen })
    opt:zero_grad()
    loss:backward()
    opt:step()
    step = step + 1
    bar:update(step, { loss = loss:item(), epoch = epoch, images = x:size(1) })
  end
end
bar:finish()

-- The negative ELBO on the test set (nats per image; lower is better).
model:eval()
local total, recon_total, kl_total, batches = 0, 0, 0, 0
md.no_grad(function()
  for x in md.data.loader(test, { batch_size = 500, shuffle = false })() do
    local loss, recon, kl = model:loss(x, { gen = gen })
    total, recon_total, kl_total = total + loss:item(), recon_total + recon:item(), kl_total + kl:item()
    batches = batches + 1
  end
end)
print(("test negative ELBO: %.1f nats per image (reconstruction %.1f + KL %.1f)"):format(
  total / batches, recon_total / batches, kl_total / batches))

md.core.mkdir_p("out"); md.core.mkdir_p("checkpoints")
local x = test.images:narrow(1, 1, 32)
local recon = md.no_grad(function()
  local mean = model:encode(x)
  return model:to_image(model:decode(mean))
end)
-- inputs and their reconstructions in alternating rows of 8
local rows = {}
for r = 0, 3 do
  rows[#rows + 1] = x:narrow(1, r * 8 + 1, 8)
  rows[#rows + 1] = recon:narrow(1, r * 8 + 1, 8)
end
md.image.save_grid(md.cat(rows, 1), ("out/vae_%s_reconstructions.png"):format(kind), { nrow = 8 })
md.image.save_grid(model:sample(64, md.Generator(3)), ("out/vae_%s_samples.png"):format(kind), { nrow = 8 })
md.save(("checkpoints/vae_%s.safetensors"):format(kind), { model = model }, { model = "vae", config = model.config })
print(("wrote out/vae_%s_reconstructions.png and out/vae_%s_samples.png"):format(kind, kind))
