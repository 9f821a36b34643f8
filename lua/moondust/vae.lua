-- Variational autoencoders (Kingma & Welling 2014): a Gaussian encoder
-- q(z | x) = N(mean, exp(logvar)), the reparameterization z = mean +
-- exp(logvar / 2) * eps, and a Bernoulli (logits) or Gaussian (mean)
-- decoder. The loss is reconstruction + kl_weight * KL(q(z | x) || N(0, I)),
-- both summed over an example's dimensions and averaged over the batch, so
-- with kl_weight = 1 it is the negative ELBO in nats per example.
--
--   md.vae.VAE{kind = "mlp" | "conv", latent = 16 (mlp) or latent_channels = 4 (conv),
--              hidden = 400, decoder = "bernoulli" | "gaussian", sigma = 1, in_channels = 1,
--              image_size = 28}
-- kind = "conv" maps 1 x 28 x 28 to latent_channels x 7 x 7: the autoencoder
-- of latent diffusion.
local md = require "moondust"
local nn = md.nn
local options = require "moondust.options"

local vae = {}

local VAE = nn.Module:extend("VAE")
vae.VAE = VAE

local defaults = { kind = "mlp", latent = 16, latent_channels = 4, hidden = 400, decoder = "bernoulli", sigma = 1,
                   in_channels = 1, image_size = 28, width = 32 }

-- The config with defaults, every value checked by name.
function vae.config(cfg)
  local known = {}
  for k, v in pairs(defaults) do known[k] = type(v) end
  options.check("VAE", cfg, known, 2)
  local c = {}
  for k, v in pairs(defaults) do c[k] = v end
  for k, v in pairs(cfg or {}) do c[k] = v end
  options.choice("VAE", "kind", c.kind, { "mlp", "conv" }, 2)
  options.choice("VAE", "decoder", c.decoder, { "bernoulli", "gaussian" }, 2)
  for _, name in ipairs { "latent", "latent_channels", "hidden", "in_channels", "image_size", "width" } do
    options.size("VAE", name, c[name], 1, 65536, 2)
  end
  options.number("VAE", "sigma", c.sigma, 1e-6, nil, 2)
  if c.kind == "conv" and c.image_size % 4 ~= 0 then
    error(("VAE: kind 'conv' halves the image twice: image_size must be a multiple of 4, got %d"):format(c.image_size), 3)
  end
  return c
end

function VAE:init(cfg)
  local c = vae.config(cfg)
  self.config = c
  local ch, size = c.in_channels, c.image_size
  if c.kind == "mlp" then
    local d = ch * size * size
    self:add_module("encoder", nn.Sequential(nn.Flatten(), nn.Linear(d, c.hidden), nn.ReLU()))
    self:add_module("to_mean", nn.Linear(c.hidden, c.latent))
    self:add_module("to_logvar", nn.Linear(c.hidden, c.latent))
    self:add_module("decoder", nn.Sequential(nn.Linear(c.latent, c.hidden), nn.ReLU(), nn.Linear(c.hidden, d)))
  else -- "conv"
    local w = c.width
    local function conv(i, o, stride) return nn.Conv2d(i, o, 3, { stride = stride or 1, padding = 1 }) end
    self:add_module("encoder", nn.Sequential(conv(ch, w, 2), nn.SiLU(), conv(w, 2 * w, 2), nn.SiLU(),
                                             conv(2 * w, 2 * w), nn.SiLU()))
    self:add_module("to_mean", nn.Conv2d(2 * w, c.latent_channels, 1))
    self:add_module("to_logvar", nn.Conv2d(2 * w, c.latent_channels, 1))
    self:add_module("decoder", nn.Sequential(conv(c.latent_channels, 2 * w), nn.SiLU(), vae.Upsample2(),
                                             conv(2 * w, w), nn.SiLU(), vae.Upsample2(), conv(w, w), nn.SiLU(),
                                             conv(w, ch)))
  end
end

-- Upsample2(): nearest-neighbour x2, no parameters.
vae.Upsample2 = nn.Module:extend("Upsample2")
function vae.Upsample2:forward(x) return md.upsample_nearest(x, 2) end

-- -> mean, logvar of q(z | x)
function VAE:encode(x)
  local h = self.encoder(x)
  return self.to_mean(h), self.to_logvar(h)
end

-- z = mean + exp(logvar / 2) * eps, eps from gen (default: the global generator)
function VAE:reparameterize(mean, logvar, gen)
  local eps = gen and gen:randn(mean:shape()) or md.randn(mean:shape())
  return mean + (logvar * 0.5):exp() * eps
end

-- Decoder output: Bernoulli logits or the Gaussian mean, shaped like x.
function VAE:decode(z)
  local c = self.config
  local out = self.decoder(z)
  return out:reshape(z:size(1), c.in_channels, c.image_size, c.image_size)
end

-- Images in [-1, 1] from the decoder output.
function VAE:to_image(out)
  if self.config.decoder == "bernoulli" then return out:sigmoid() * 2 - 1 end
  return out:clamp(-1, 1)
end

-- Reconstruction negative log-likelihood per example (nats, summed over
-- pixels, averaged over the batch). Bernoulli targets are pixels mapped
-- from [-1, 1] to [0, 1].
function VAE:reconstruction_nll(out, x)
  local per = x:numel() // x:size(1)
  if self.config.decoder == "bernoulli" then
    return md.binary_cross_entropy_with_logits(out, (x + 1) * 0.5) * per
  end
  local s2 = self.config.sigma ^ 2
  return md.mse_loss(out, x) * (per / (2 * s2)) + per * 0.5 * math.log(2 * math.pi * s2)
end

-- -> loss, reconstruction, KL (0-dim tensors); opts.kl_weight (default 1), opts.gen
function VAE:loss(x, opts)
  opts = options.check("VAE:loss", opts, { kl_weight = "number", gen = true })
  options.number("VAE:loss", "kl_weight", opts.kl_weight, 0)
  local mean, logvar = self:encode(x)
  local z = self:reparameterize(mean, logvar, opts.gen)
  local recon = self:reconstruction_nll(self:decode(z), x)
  local kl = md.gaussian_kl(mean, logvar)
  return recon + kl * (opts.kl_weight or 1), recon, kl
end

-- Samples from the prior, as images.
function VAE:sample(n, gen)
  options.size("VAE:sample", "n", n)
  local c = self.config
  local shape = c.kind == "mlp" and { n, c.latent } or { n, c.latent_channels, c.image_size // 4, c.image_size // 4 }
  local z = gen and gen:randn(shape) or md.randn(shape)
  return md.no_grad(function() return self:to_image(self:decode(z)) end)
end


return vae
