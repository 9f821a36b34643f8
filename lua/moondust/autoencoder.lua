-- md.autoencoder: the KL autoencoder of latent diffusion (latent-diffusion's
-- AutoencoderKL, Rombach et al. 2022) and the losses it trains with (the
-- terms of its LPIPSWithDiscriminator; the perceptual term is computed on
-- the md.metrics feature network, since LPIPS weights cannot be fetched).
--
--   local ae = md.autoencoder.AutoencoderKL{image_size = 28, channels = 16, channel_mult = {1, 2, 4}}
--   md.autoencoder.train{model = ae, data = md.data.fashion_mnist{}, minutes = 6}
--   local z = ae:encode(images)   -- scaled latents, 4 x 7 x 7 each, any number of images
--   local x = ae:decode(z)        -- images in [-1, 1]
--
-- encode/decode work without grad in batches and apply the latent scaling
-- (ae:fit_scale: LDM's scale_factor 1/std, or a mean and std per channel),
-- so the diffusion model sees latents of unit variance. Training uses
-- ae:posterior and ae:decoder_forward, which record for backward.
local md = require "moondust"
local nn = md.nn
local options = require "moondust.options"

local A = {}

local function conv3(cin, cout, stride) return nn.Conv2d(cin, cout, 3, { stride = stride or 1, padding = 1 }) end

-- ResnetBlock(cin, cout, groups, dropout): latent-diffusion's block, which
-- has no timestep: GroupNorm -> SiLU -> conv, GroupNorm -> SiLU -> dropout
-- -> conv, plus the input (through a 1x1 conv when the channels change).
A.ResnetBlock = nn.Module:extend("ResnetBlock")
function A.ResnetBlock:init(cin, cout, groups, dropout)
  self:add_module("norm1", nn.GroupNorm(groups, cin))
  self:add_module("conv1", conv3(cin, cout))
  self:add_module("norm2", nn.GroupNorm(groups, cout))
  self:add_module("dropout", nn.Dropout(dropout or 0))
  self:add_module("conv2", conv3(cout, cout))
  if cin ~= cout then self:add_module("nin_shortcut", nn.Conv2d(cin, cout, 1)) end
end
function A.ResnetBlock:forward(x)
  local h = self.conv1(nn.norm_silu(self.norm1, x))
  h = self.conv2(self.dropout(nn.norm_silu(self.norm2, h)))
  return (self.nin_shortcut and self.nin_shortcut(x) or x) + h
end

local defaults = { in_channels = 1, image_size = 28, channels = 16, channel_mult = { 1, 2, 4 }, num_res_blocks = 1,
                   z_channels = 4, attention = true, norm_groups = 8, dropout = 0, latent_mean = false,
                   latent_std = false }

-- The config with defaults, every value checked (image_size is a number or
-- {H, W}) -> config, height, width.
function A.config(cfg)
  local where = "AutoencoderKL"
  options.check(where, cfg, { in_channels = "number", image_size = true, channels = "number", channel_mult = "table",
                              num_res_blocks = "number", z_channels = "number", attention = "boolean",
                              norm_groups = "number", dropout = "number", latent_mean = true, latent_std = true }, 2)
  local c = {}
  for k, v in pairs(defaults) do c[k] = v end
  for k, v in pairs(cfg or {}) do c[k] = v end
  for _, name in ipairs { "in_channels", "channels", "num_res_blocks", "z_channels", "norm_groups" } do
    options.size(where, name, c[name], 1, 65536, 2)
  end
  options.number(where, "dropout", c.dropout, 0, 0.99, 2)
  if #c.channel_mult == 0 then error("AutoencoderKL: channel_mult needs at least one level", 3) end
  for i, m in ipairs(c.channel_mult) do options.size(where, ("channel_mult[%d]"):format(i), m, 1, 64, 2) end
  local h, w = c.image_size, c.image_size
  if type(h) == "table" then h, w = h[1], h[2] end
  options.size(where, "image height", h, 1, 65536, 2)
  options.size(where, "image width", w, 1, 65536, 2)
  local f = 1 << (#c.channel_mult - 1)
  if h % f ~= 0 or w % f ~= 0 then
    error(("AutoencoderKL: %d levels halve the image %d times: %dx%d is not a multiple of %d"):format(
      #c.channel_mult, #c.channel_mult - 1, h, w, f), 3)
  end
  for _, m in ipairs(c.channel_mult) do
    if (c.channels * m) % c.norm_groups ~= 0 then
      error(("AutoencoderKL: %d channels do not split into %d norm groups"):format(c.channels * m, c.norm_groups), 3)
    end
  end
  for _, name in ipairs { "latent_mean", "latent_std" } do
    local v = c[name]
    if v ~= false then
      local ok = type(v) == "table" and #v == c.z_channels
      for i = 1, ok and #v or 0 do
        ok = ok and type(v[i]) == "number" and v[i] == v[i] and math.abs(v[i]) < math.huge
          and (name == "latent_mean" or v[i] > 0)
      end
      if not ok then
        error(("AutoencoderKL: %s must be a list of %d finite numbers%s (one per latent channel)"):format(name,
          c.z_channels, name == "latent_std" and " > 0" or ""), 3)
      end
    end
  end
  return c, h, w
end

-- The middle of both halves: ResnetBlock, self-attention (when asked), ResnetBlock.
local function append_middle(seq, ch, c)
  seq:append(A.ResnetBlock(ch, ch, c.norm_groups, c.dropout))
  if c.attention then seq:append(nn.AttentionBlock(ch, ch, { norm_groups = c.norm_groups })) end
  seq:append(A.ResnetBlock(ch, ch, c.norm_groups, c.dropout))
end

-- AutoencoderKL{...}: see the file's head for the fields (defaults: 1 channel,
-- 28 x 28, 16 channels, channel_mult {1, 2, 4}: 16 at 28 x 28, 32 at 14 x 14,
-- 64 at 7 x 7, one ResnetBlock per level in the encoder and two in the
-- decoder, 4 latent channels, attention in the middle, 8 norm groups). On
-- 2 cores it trains at about 140 images/s with the perceptual term; 32
-- channels at {1, 2, 2} at about 75.
A.AutoencoderKL = nn.Module:extend("AutoencoderKL")
function A.AutoencoderKL:init(cfg)
  local c, h, w = A.config(cfg)
  self.config, self.height, self.width = c, h, w
  local g, p, mult = c.norm_groups, c.dropout, c.channel_mult
  local enc = self:add_module("encoder", nn.Sequential(conv3(c.in_channels, c.channels)))
  local ch = c.channels
  for level, m in ipairs(mult) do
    for _ = 1, c.num_res_blocks do
      enc:append(A.ResnetBlock(ch, c.channels * m, g, p))
      ch = c.channels * m
    end
    if level < #mult then enc:append(conv3(ch, ch, 2)) end
  end
  append_middle(enc, ch, c)
  enc:append(nn.GroupNorm(g, ch))
  enc:append(nn.SiLU())
  enc:append(conv3(ch, 2 * c.z_channels)) -- the posterior's mean and log-variance
  local dec = self:add_module("decoder", nn.Sequential(conv3(c.z_channels, ch)))
  append_middle(dec, ch, c)
  for level = #mult, 1, -1 do
    for _ = 1, c.num_res_blocks + 1 do
      dec:append(A.ResnetBlock(ch, c.channels * mult[level], g, p))
      ch = c.channels * mult[level]
    end
    if level > 1 then dec:append(nn.Upsample(ch)) end
  end
  dec:append(nn.GroupNorm(g, ch))
  dec:append(nn.SiLU())
  dec:append(conv3(ch, c.in_channels))
end

-- {z_channels, H / f, W / f}: the shape of one image's latent.
function A.AutoencoderKL:latent_shape()
  local c = self.config
  local f = 1 << (#c.channel_mult - 1)
  return { c.z_channels, self.height // f, self.width // f }
end

-- The last decoder convolution's weight (the adaptive GAN weight compares gradients there).
function A.AutoencoderKL:last_layer()
  local dec = self.decoder
  return dec:get(dec.n).weight
end

function A.AutoencoderKL:forward(x) return self:decoder_forward((self:posterior(x))) end

-- -> mean, logvar of q(z | x) (unscaled; logvar clamped to [-30, 20] as in LDM), recording for backward.
function A.AutoencoderKL:posterior(x)
  local c = self.config
  if not md.is_tensor(x) or x:dim() ~= 4 or x:size(2) ~= c.in_channels or x:size(3) ~= self.height
    or x:size(4) ~= self.width then
    error(("AutoencoderKL: expects N x %d x %d x %d images, got %s"):format(c.in_channels, self.height, self.width,
      md.is_tensor(x) and table.concat(x:shape(), " x ") or type(x)), 3)
  end
  local h = self.encoder(x)
  local n, z, hh, ww = h:size(1), c.z_channels, h:size(3), h:size(4)
  local halves = h:reshape(n, 2, z * hh * ww):transpose(1, 2) -- [2, N, z*h*w]
  return halves[1]:reshape(n, z, hh, ww), halves[2]:reshape(n, z, hh, ww):clamp(-30, 20)
end

-- Unscaled latents -> the decoder's output (not clamped), recording for backward.
function A.AutoencoderKL:decoder_forward(z) return self.decoder(z) end

-- The per-channel scaling as [1, C, 1, 1] tensors (identity before fit_scale).
local function scaling(c)
  local mean, std = {}, {}
  for i = 1, c.z_channels do
    mean[i] = c.latent_mean and c.latent_mean[i] or 0
    std[i] = c.latent_std and c.latent_std[i] or 1
  end
  return md.tensor(mean):reshape(1, c.z_channels, 1, 1), md.tensor(std):reshape(1, c.z_channels, 1, 1)
end

local code_options = { batch_size = "number", sample = "boolean", generator = true }

-- Each batch of a tensor (or data set) through fn, without grad, in eval mode, joined.
local function batched(self, src, n, bs, fn)
  local was_training = self.training
  self:eval()
  local parts = {}
  local ok, err = pcall(md.no_grad, function()
    for first = 1, n, bs do parts[#parts + 1] = fn(md.data.rows(src, first, math.min(bs, n - first + 1))) end
  end)
  if was_training then self:train() end
  if not ok then error(err, 0) end
  return #parts == 1 and parts[1] or md.cat(parts, 1)
end

-- Images (an N x C x H x W tensor in [-1, 1] or a data set) -> scaled
-- latents, without grad. opts: batch_size (256), sample (false: the
-- posterior mean; true: a draw from it, with opts.generator).
function A.AutoencoderKL:encode(images, opts)
  opts = options.check("AutoencoderKL:encode", opts, code_options)
  if opts.generator ~= nil and not (type(opts.generator) == "userdata" and opts.generator.randn) then
    error("AutoencoderKL:encode: generator must be an md.Generator", 2)
  end
  if opts.generator and not opts.sample then error("AutoencoderKL:encode: generator is for sample = true", 2) end
  local bs = options.integer("AutoencoderKL:encode", "batch_size", opts.batch_size, 1) or 256
  local n = md.is_tensor(images) and images:size(1) or images.n
  local shift, scale = scaling(self.config)
  return batched(self, images, n, bs, function(x)
    local mean, logvar = self:posterior(x)
    if opts.sample then
      local eps = opts.generator and opts.generator:randn(mean:shape()) or md.randn(mean:shape())
      mean = mean + (logvar * 0.5):exp() * eps
    end
    return (mean - shift) / scale
  end)
end

-- Scaled latents (N x z x h x w) -> images in [-1, 1], without grad; opts.batch_size (256).
function A.AutoencoderKL:decode(z, opts)
  opts = options.check("AutoencoderKL:decode", opts, { batch_size = "number" })
  local bs = options.integer("AutoencoderKL:decode", "batch_size", opts.batch_size, 1) or 256
  local want = self:latent_shape()
  if not md.is_tensor(z) or z:dim() ~= 4 or z:size(2) ~= want[1] or z:size(3) ~= want[2] or z:size(4) ~= want[3] then
    error(("AutoencoderKL:decode: expects N x %d x %d x %d latents, got %s"):format(want[1], want[2], want[3],
      md.is_tensor(z) and table.concat(z:shape(), " x ") or type(z)), 2)
  end
  local shift, scale = scaling(self.config)
  return batched(self, z, z:size(1), bs, function(b) return self:decoder_forward(b * scale + shift):clamp(-1, 1) end)
end

-- Sets the latent scaling from the posterior means of up to opts.n images
-- of a data set (default all; spread evenly over it, since folders come
-- sorted by class): per_channel = false (LDM's scale_factor: 1/std over
-- everything, no shift) or true (a mean and std per channel).
function A.AutoencoderKL:fit_scale(data, opts)
  local where = "AutoencoderKL:fit_scale"
  opts = options.check(where, opts, { per_channel = "boolean", n = "number" })
  local c = self.config
  local total = md.is_tensor(data) and data:size(1) or data.n
  local n = math.min(options.integer(where, "n", opts.n, 2) or math.huge, total)
  local im = md.is_tensor(data) and data or data.images
  local _, h, w = md.data.image_shape(md.is_tensor(data) and { images = data } or data)
  c.latent_mean, c.latent_std = false, false
  local parts = {}
  for first = 0, n - 1, 256 do -- image floor(i * total / n) for i = first .. first + 255, a batch at a time
    local idx = {}
    for i = first, math.min(first + 255, n - 1) do idx[#idx + 1] = i * total // n end
    local rows = md.tensor(idx)
    parts[#parts + 1] = self:encode(md.is_tensor(im) and md.index_select(im, 1, rows) or im:gather(rows, h, w))
  end
  local z = #parts == 1 and parts[1] or md.cat(parts, 1)
  local per = z:transpose(1, 2):reshape(c.z_channels, -1) -- [C, N*h*w]
  local mean, std = {}, {}
  local all_std = z:std():item()
  for i = 1, c.z_channels do
    mean[i] = opts.per_channel and per[i]:mean():item() or 0
    std[i] = opts.per_channel and per[i]:std():item() or all_std
    if not (std[i] > 0 and std[i] < math.huge) then
      error(("%s: latent channel %d has std %s; the encoder has collapsed (or the images are all alike)"):format(
        where, i, tostring(std[i])), 2)
    end
  end
  c.latent_mean, c.latent_std = mean, std
  return mean, std
end

-- Loss terms --------------------------------------------------------------
-- Each is a plain function, tested against a naive reference.

-- Mean absolute ("l1") or squared ("l2") error per pixel.
function A.reconstruction_loss(recon, x, kind)
  options.choice("reconstruction_loss", "kind", kind, { "l1", "l2" })
  if kind == "l2" then return md.mse_loss(recon, x) end
  return (recon - x):abs():mean()
end

-- KL(q(z | x) || N(0, I)) summed over an image's latent, averaged over the
-- batch and divided by the pixels per image (so a weight means what LDM's
-- kl_weight means against its summed reconstruction loss).
function A.kl_loss(mean, logvar, pixels)
  return md.gaussian_kl(mean, logvar) * (1 / pixels)
end

-- The feature network's maps after each ReLU of its body (LPIPS's layers).
local function feature_maps(net, x)
  local maps, h = {}, x
  local body = net.body
  for i = 1, body.n do
    local m = body:get(i)
    if m.__name == "Flatten" then break end
    h = m(h)
    if m.__name == "ReLU" then maps[#maps + 1] = h end
  end
  return maps
end

-- LPIPS with unit weights on another network: for each layer, features
-- normalised to unit length over channels at each position, squared
-- differences summed over channels and averaged over positions; summed over
-- layers, averaged over the batch. net is a md.metrics.FeatureNet.
function A.perceptual_loss(net, recon, x)
  local a = feature_maps(net, recon)
  local b = md.no_grad(feature_maps, net, x:detach()) -- the target needs no graph
  local total
  for l = 1, #a do
    local fa = a[l] / ((a[l] * a[l]):sum(2, true) + 1e-10):sqrt()
    local fb = b[l] / ((b[l] * b[l]):sum(2, true) + 1e-10):sqrt()
    local d = fa - fb
    local term = (d * d):sum(2):mean()
    total = total and total + term or term
  end
  return total
end

-- The discriminator's hinge loss: (mean relu(1 - D(x)) + mean relu(1 + D(recon))) / 2.
function A.hinge_d_loss(real_logits, fake_logits)
  return ((1 - real_logits):relu():mean() + (fake_logits + 1):relu():mean()) * 0.5
end

-- The generator's adversarial loss: -mean D(recon).
function A.generator_loss(fake_logits) return -fake_logits:mean() end

-- LDM's adaptive weight: the ratio of the gradient norms that the
-- reconstruction loss and the adversarial loss put on the decoder's last
-- layer, clamped to [0, 1e4]; a plain number (no gradient flows through it).
function A.adaptive_weight(rec_loss, g_loss, last_layer)
  local gr = md.grad(rec_loss, { last_layer }, nil, true)[1]
  local gg = md.grad(g_loss, { last_layer }, nil, true)[1]
  local nr, ng = math.sqrt((gr * gr):sum():item()), math.sqrt((gg * gg):sum():item())
  return math.max(0, math.min(1e4, nr / (ng + 1e-4)))
end

-- The discriminator -----------------------------------------------------------

local function leaky_relu(x) return md.maximum(x, x * 0.2) end

-- PatchDiscriminator{in_channels = 1, channels = 32, layers = 2}: pix2pix's
-- NLayerDiscriminator (4x4 convolutions, stride 2 for `layers` levels, then
-- stride 1; LeakyReLU 0.2; GroupNorm instead of BatchNorm), one logit per patch.
A.PatchDiscriminator = nn.Module:extend("PatchDiscriminator")
function A.PatchDiscriminator:init(cfg)
  local where = "PatchDiscriminator"
  options.check(where, cfg, { in_channels = "number", channels = "number", layers = "number" }, 2)
  cfg = cfg or {}
  local c = { in_channels = options.integer(where, "in_channels", cfg.in_channels, 1) or 1,
              channels = options.integer(where, "channels", cfg.channels, 8) or 32,
              layers = options.integer(where, "layers", cfg.layers, 1, 6) or 2 }
  if c.channels % 4 ~= 0 then error(("%s: channels must be a multiple of 4 (its norms have 8 groups), got %d"):format(
    where, c.channels), 3) end
  self.config = c
  local convs, norms = self:add_module("convs", nn.Sequential()), self:add_module("norms", nn.Sequential())
  local ch = c.channels
  convs:append(nn.Conv2d(c.in_channels, ch, 4, { stride = 2, padding = 1 }))
  for i = 1, c.layers do
    local out = c.channels * math.min(1 << i, 8)
    convs:append(nn.Conv2d(ch, out, 4, { stride = i < c.layers and 2 or 1, padding = 1, bias = false }))
    norms:append(nn.GroupNorm(8, out))
    ch = out
  end
  convs:append(nn.Conv2d(ch, 1, 4, { stride = 1, padding = 1 }))
end
function A.PatchDiscriminator:forward(x)
  local convs, norms = self.convs, self.norms
  local h = leaky_relu(convs:get(1)(x))
  for i = 1, norms.n do h = leaky_relu(norms:get(i)(convs:get(i + 1)(h))) end
  return convs:get(convs.n)(h)
end

-- Training ------------------------------------------------------------------------

local loss_defaults = { reconstruction = "l1", perceptual_weight = 1, kl_weight = 1e-6, disc_weight = 0.5,
                        disc_start = false, disc_lr = false }

-- The loss settings with defaults, checked: reconstruction ("l1" | "l2"),
-- perceptual_weight (1; 0 = none), kl_weight (1e-6), disc_start (false = no
-- discriminator; else the step the adversarial term starts at), disc_weight
-- (0.5, times the adaptive weight), disc_lr (the autoencoder's lr).
function A.loss_config(cfg)
  local where = "md.autoencoder loss"
  local known = {}
  for k in pairs(loss_defaults) do known[k] = true end
  options.check(where, cfg, known, 2)
  local c = {}
  for k, v in pairs(loss_defaults) do c[k] = v end
  for k, v in pairs(cfg or {}) do c[k] = v end
  options.choice(where, "reconstruction", c.reconstruction, { "l1", "l2" }, 2)
  options.number(where, "perceptual_weight", c.perceptual_weight, 0, nil, 2)
  options.number(where, "kl_weight", c.kl_weight, 0, nil, 2)
  options.number(where, "disc_weight", c.disc_weight, 0, nil, 2)
  if c.disc_start ~= false then options.integer(where, "disc_start", c.disc_start, 0, nil, 2) end
  if c.disc_lr ~= false then options.number(where, "disc_lr", c.disc_lr, 0, 1, 2) end
  return c
end

-- One step's generator-side loss: -> total (a tensor), figures (numbers:
-- rec, perceptual, kl, g, d_weight), recon (the reconstructions, for the discriminator).
function A.autoencoder_loss(ae, x, lc, net, disc, step, gen)
  local mean, logvar = ae:posterior(x)
  local z = mean + (logvar * 0.5):exp() * gen:randn(mean:shape())
  local recon = ae:decoder_forward(z)
  local rec = A.reconstruction_loss(recon, x, lc.reconstruction)
  local fig = { rec = rec:item() }
  if lc.perceptual_weight > 0 then
    local p = A.perceptual_loss(net, recon, x)
    fig.perceptual = p:item()
    rec = rec + p * lc.perceptual_weight
  end
  local kl = A.kl_loss(mean, logvar, x:numel() // x:size(1))
  fig.kl = kl:item()
  local total = rec + kl * lc.kl_weight
  if disc and step >= lc.disc_start then
    local g = A.generator_loss(disc(recon))
    local w = A.adaptive_weight(rec, g, ae:last_layer()) * lc.disc_weight
    fig.g, fig.d_weight = g:item(), w
    total = total + g * w
  end
  return total, fig, recon
end

local train_options = { model = "table", data = "table", steps = "number", minutes = "number", batch_size = "number",
                        lr = "number", loss = "table", seed = "number", checkpoint = "string", progress = "boolean",
                        per_channel = "boolean", net = "table", discriminator = "table" }

-- md.autoencoder.train{model = ae, data = ds, steps or minutes, batch_size
-- (64), lr (1e-3; Adam with LDM's betas 0.5, 0.9), loss ({...} as in
-- loss_config), seed (0), checkpoint (a path: saved at the end with the
-- scaling), per_channel (false), net (the perceptual network: the shipped
-- md.metrics one), discriminator (a PatchDiscriminator{} when disc_start is given),
-- progress (true)} -> {steps, images_per_second, figures (the last step's)}.
-- After the last step it fits the latent scaling on up to 10,000 training images.
function A.train(opts)
  local where = "md.autoencoder.train"
  options.check(where, opts, train_options, 2)
  if not opts.model or not opts.data then error(where .. ": needs model and data", 2) end
  if not opts.steps and not opts.minutes then error(where .. ": give steps or minutes (training is always bounded)", 2) end
  local steps = options.integer(where, "steps", opts.steps, 1) or math.huge
  options.number(where, "minutes", opts.minutes, 1e-6)
  local bs = options.integer(where, "batch_size", opts.batch_size, 1) or 64
  local lr = options.number(where, "lr", opts.lr, 0, 1) or 1e-3
  local lc = A.loss_config(opts.loss)
  local ae, data = opts.model, opts.data
  local c = ae.config
  local dc, dh, dw = md.data.image_shape(data)
  if dc ~= c.in_channels or dh ~= ae.height or dw ~= ae.width then
    error(("%s: the autoencoder takes %dx%dx%d images, the data holds %dx%dx%d"):format(where, c.in_channels,
      ae.height, ae.width, dc, dh, dw), 2)
  end
  local net = opts.net
  if lc.perceptual_weight > 0 then
    net = net or md.metrics.default_net()
    local nc = net.config
    if nc.in_channels ~= dc or nc.height ~= dh or nc.width ~= dw then
      error(("%s: the perceptual network takes %dx%dx%d images, the data holds %dx%dx%d (pass net, or "
        .. "perceptual_weight = 0)"):format(where, nc.in_channels, nc.height, nc.width, dc, dh, dw), 2)
    end
    net:eval()
  end
  -- what only the discriminator reads is an error without it, not ignored
  if not lc.disc_start then
    for _, name in ipairs { "disc_weight", "disc_lr" } do
      if opts.loss and opts.loss[name] ~= nil then error(("%s: loss.%s needs loss.disc_start"):format(where, name), 2) end
    end
    if opts.discriminator then error(where .. ": discriminator needs loss.disc_start (the step it starts at)", 2) end
  end
  if opts.net and lc.perceptual_weight == 0 then error(where .. ": net is the perceptual loss's; perceptual_weight is 0", 2) end
  local disc = lc.disc_start and (opts.discriminator or A.PatchDiscriminator { in_channels = dc }) or nil
  local seed = options.integer(where, "seed", opts.seed) or 0
  md.manual_seed(seed)
  local loader = md.data.loader(data, { batch_size = bs, drop_last = true, generator = md.Generator(seed + 1) })
  local gen = md.Generator(seed + 2)
  local opt = md.optim.Adam(ae, { lr = lr, betas = { 0.5, 0.9 } })
  local dopt = disc and md.optim.Adam(disc, { lr = lc.disc_lr or lr, betas = { 0.5, 0.9 } })
  -- the perceptual network stays fixed: no weight gradients for it while this runs
  local frozen = {}
  for _, p in ipairs(net and net:parameters() or {}) do
    if p:requires_grad() then frozen[#frozen + 1] = p; p:requires_grad(false) end
  end
  local _ <close> = setmetatable({}, { __close = function() for _, p in ipairs(frozen) do p:requires_grad(true) end end })
  ae:train()
  local bar = md.progress.new { total = opts.steps, label = "autoencoder", quiet = opts.progress == false }
  local start = md.progress.now()
  local deadline = opts.minutes and start + 60 * opts.minutes or math.huge
  local step, fig = 0, nil
  while step < steps and md.progress.now() < deadline do
    local x = loader:next()
    local total, f, recon = A.autoencoder_loss(ae, x, lc, net, disc, step, gen)
    local lv = total:item()
    if lv ~= lv or lv == math.huge or lv == -math.huge then
      bar:finish()
      error(("%s: the loss became %s at step %d; stopped"):format(where, tostring(lv), step + 1), 0)
    end
    opt:zero_grad()
    total:backward()
    opt:step()
    if disc and step >= lc.disc_start then
      local d_loss = A.hinge_d_loss(disc(x), disc(recon:detach()))
      f.d = d_loss:item()
      dopt:zero_grad()
      d_loss:backward()
      dopt:step()
    end
    step, fig = step + 1, f
    bar:update(step, { loss = lv, images = x:size(1) })
  end
  bar:finish()
  local seconds = md.progress.now() - start
  ae:eval()
  ae:fit_scale(data, { n = 10000, per_channel = opts.per_channel })
  if opts.checkpoint then A.save(ae, opts.checkpoint, { steps = step, loss = lc }) end
  return { steps = step, images_per_second = step * bs / math.max(seconds, 1e-9), figures = fig }
end

-- Saves an autoencoder (with its latent scaling) so md.load rebuilds it.
function A.save(ae, path, meta)
  md.core.mkdir_p(path:match("^(.*)/[^/]*$") or ".")
  return md.save(path, ae, meta)
end

-- Reconstruction quality on up to opts.n (1000) images of a data set:
-- {psnr (dB, on [0, 1] pixels, the mean over images), l1, mse, and md.metrics'
-- figures of the reconstructions (fid, kid, precision, recall, ...)}; opts.metrics = false skips those.
function A.evaluate(ae, data, opts)
  opts = options.check("md.autoencoder.evaluate", opts, { n = "number", metrics = "boolean" })
  local n = math.min(options.integer("md.autoencoder.evaluate", "n", opts.n, 1) or 1000,
    md.is_tensor(data) and data:size(1) or data.n)
  local x = md.is_tensor(data) and data:narrow(1, 1, n) or md.data.rows(data, 1, n)
  local recon = ae:decode(ae:encode(x))
  local d = recon - x
  local per_mse = (d * d):reshape(n, -1):mean(2) * 0.25 -- on [0, 1] pixels
  local psnr = (per_mse:clamp(1e-10, 1):log() * (-10 / math.log(10))):mean():item()
  local out = { psnr = psnr, l1 = d:abs():mean():item(), mse = (d * d):mean():item(), n = n }
  if opts.metrics ~= false then
    local labels = data.labels and data.labels:narrow(1, 1, n) or nil
    local m = md.metrics.score(recon, labels)
    for k, v in pairs(m) do out[k] = v end
  end
  return out, recon
end

-- A PNG of `rows` rows of 10 images, each followed by a row of their reconstructions.
function A.save_comparison(images, recon, path, rows)
  local n = recon:size(1)
  rows = math.min(rows or 5, n // 10)
  if rows < 1 then error("save_comparison: needs at least 10 reconstructions", 2) end
  local pick = {}
  for r = 0, rows - 1 do
    for k = 0, 9 do pick[#pick + 1] = r * 10 + k end
    for k = 0, 9 do pick[#pick + 1] = n + r * 10 + k end
  end
  md.core.mkdir_p(path:match("^(.*)/[^/]*$") or ".")
  local both = md.cat({ md.data.rows(images, 1, n), recon }, 1)
  md.image.save_grid(md.index_select(both, 1, md.tensor(pick)), path, { nrow = 10 })
  return path
end

-- A data set of scaled latents of `data` (posterior means) for the
-- diffusion trainer: {images = N x z x h x w, labels, n, classes}.
function A.latent_data(ae, data)
  local z = ae:encode(data)
  return { images = z, labels = data.labels, n = data.n, classes = data.classes }
end

return A
