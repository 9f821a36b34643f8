-- md.autoencoder: the KL autoencoder's shapes, scaling and checkpoints, each
-- loss term against a naive reference written out here, and latent
-- diffusion through the trainer, md.load and md.sample.
local T = require "harness"
local md = require "moondust"
local A = md.autoencoder

local function tiny_ae(extra)
  local cfg = { image_size = 8, channels = 8, channel_mult = { 1, 2 }, z_channels = 2 }
  for k, v in pairs(extra or {}) do cfg[k] = v end
  md.manual_seed(0)
  return A.AutoencoderKL(cfg)
end
local function tiny_net() md.manual_seed(1); return md.metrics.FeatureNet { height = 8, width = 8, channels = 8, features = 4 } end
local function images(n, seed) return md.Generator(seed or 1):rand { n, 1, 8, 8 } * 2 - 1 end

T.test("AutoencoderKL: latent shape, posterior, and encode/decode at any batch size", function()
  local ae = tiny_ae()
  T.eq(table.concat(ae:latent_shape(), "x"), "2x4x4")
  local x = images(5)
  local mean, logvar = ae:posterior(x)
  T.eq(table.concat(mean:shape(), "x"), "5x2x4x4")
  T.eq(table.concat(logvar:shape(), "x"), "5x2x4x4")
  local z_all, z_small = ae:encode(x), ae:encode(x, { batch_size = 2 })
  T.near(z_small, z_all, 1e-5, "batched encode")
  T.near(z_all, mean:detach(), 1e-6, "encode is the posterior mean before fit_scale")
  local out = ae:decode(z_all)
  T.eq(table.concat(out:shape(), "x"), "5x1x8x8")
  T.near(ae:decode(z_all, { batch_size = 3 }), out, 1e-5, "batched decode")
  T.truthy(out:abs():max():item() <= 1, "decoded images are in [-1, 1]")
  T.errors(function() ae:decode(md.zeros { 2, 3, 4, 4 }) end, "expects N x 2 x 4 x 4 latents")
  T.errors(function() ae:posterior(md.zeros { 2, 1, 6, 6 }) end, "expects N x 1 x 8 x 8 images")
end)

T.test("AutoencoderKL: config errors name the field", function()
  T.errors(function() A.AutoencoderKL { image_size = 30 } end, "not a multiple of 4")
  T.errors(function() A.AutoencoderKL { chanels = 8 } end, "did you mean 'channels'")
  T.errors(function() A.AutoencoderKL { channels = 12 } end, "norm groups")
  T.errors(function() A.AutoencoderKL { latent_mean = { 0 } } end, "list of 4 finite numbers")
  T.errors(function() A.AutoencoderKL { latent_std = { 1, 1, 0, 1 } } end, "finite numbers > 0")
  T.errors(function() A.AutoencoderKL { latent_mean = { 0, "a", 0, 0 } } end, "finite numbers")
  T.errors(function() tiny_ae():encode(images(1), { generator = 5 }) end, "md.Generator")
  T.errors(function() A.PatchDiscriminator { channels = 18 } end, "multiple of 4")
end)

T.test("fit_scale gives latents of unit std (one scale, or a mean and std per channel)", function()
  local ae = tiny_ae()
  local x = images(64, 2)
  ae:fit_scale(x)
  local z = ae:encode(x)
  T.near(z:std():item(), 1, 1e-3, "one std")
  T.eq(ae.config.latent_mean[1], 0)
  ae:fit_scale(x, { per_channel = true })
  local per = ae:encode(x):transpose(1, 2):reshape(2, -1)
  for c = 1, 2 do
    T.near(per[c]:mean():item(), 0, 1e-4, "channel mean")
    T.near(per[c]:std():item(), 1, 1e-3, "channel std")
  end
  -- decode undoes the scaling: the same images as the raw decoder on the raw latents
  local raw = md.no_grad(function() return ae:decoder_forward((ae:posterior(x:narrow(1, 1, 4)))):clamp(-1, 1) end)
  T.near(ae:decode(ae:encode(x:narrow(1, 1, 4))), raw, 1e-4)
end)

T.test("an autoencoder saves and loads with its scaling", function()
  local _, path = T.tempdir()
  local ae = tiny_ae()
  ae:fit_scale(images(16), { per_channel = true })
  A.save(ae, path("ae.safetensors"))
  local back = md.load(path("ae.safetensors"))
  T.near(back.config.latent_std, ae.config.latent_std, 1e-12)
  local x = images(3, 5)
  T.near(back:decode(back:encode(x)), ae:decode(ae:encode(x)), 1e-6)
end)

T.test("reconstruction and KL losses match naive sums", function()
  local a, b = images(3, 1), images(3, 2)
  local fa, fb = T.flat(a), T.flat(b)
  local l1, l2 = 0, 0
  for i = 1, #fa do l1, l2 = l1 + math.abs(fa[i] - fb[i]), l2 + (fa[i] - fb[i]) ^ 2 end
  T.near(A.reconstruction_loss(a, b, "l1"):item(), l1 / #fa, 1e-5)
  T.near(A.reconstruction_loss(a, b, "l2"):item(), l2 / #fa, 1e-5)
  T.errors(function() A.reconstruction_loss(a, b, "l3") end, "must be one of l1, l2")
  local g = md.Generator(4)
  local mean, logvar = g:randn { 3, 2, 2, 2 }, g:randn { 3, 2, 2, 2 } * 0.5
  local m, lv = T.flat(mean), T.flat(logvar)
  local kl = 0
  for i = 1, #m do kl = kl + 0.5 * (m[i] ^ 2 + math.exp(lv[i]) - 1 - lv[i]) end
  T.near(A.kl_loss(mean, logvar, 64):item(), kl / 3 / 64, 1e-5, "summed per image, mean over images, per pixel")
end)

-- The feature maps after each ReLU, by running the body's modules one by one.
local function maps_of(net, x)
  local out, h = {}, x
  for i = 1, net.body.n do
    local m = net.body:get(i)
    if m.__name == "Flatten" then break end
    h = m(h)
    if m.__name == "ReLU" then out[#out + 1] = h:totable() end
  end
  return out
end

T.test("the perceptual loss matches LPIPS's arithmetic written out, is 0 on equal images, and has true gradients", function()
  local net = tiny_net()
  local a, b = images(2, 7), images(2, 8)
  local ma, mb = maps_of(net, a), maps_of(net, b)
  local total = 0
  for l = 1, #ma do
    local fa, fb = ma[l], mb[l]
    for n = 1, #fa do
      local sum = 0
      local C, H, W = #fa[n], #fa[n][1], #fa[n][1][1]
      for y = 1, H do
        for x = 1, W do
          local na, nb = 0, 0
          for c = 1, C do na, nb = na + fa[n][c][y][x] ^ 2, nb + fb[n][c][y][x] ^ 2 end
          na, nb = math.sqrt(na + 1e-10), math.sqrt(nb + 1e-10)
          for c = 1, C do sum = sum + (fa[n][c][y][x] / na - fb[n][c][y][x] / nb) ^ 2 end
        end
      end
      total = total + sum / (H * W) / #fa
    end
  end
  T.near(A.perceptual_loss(net, a, b):item(), total, 1e-4)
  T.near(A.perceptual_loss(net, a, a):item(), 0, 1e-7)
  T.gradcheck(function(x) return A.perceptual_loss(net, x, b) end, { images(1, 9) }, { eps = 1e-2, tol = 5e-2, max_points = 16 })
end)

T.test("hinge and generator losses match their definitions", function()
  local real, fake = md.tensor { { 2, 0.5 }, { -1, 1 } }, md.tensor { { -2, 0 }, { 0.5, -0.5 } }
  local r = (0 + 0.5 + 2 + 0) / 4       -- relu(1 - real)
  local f = (0 + 1 + 1.5 + 0.5) / 4     -- relu(1 + fake)
  T.near(A.hinge_d_loss(real, fake):item(), 0.5 * (r + f), 1e-6)
  T.near(A.generator_loss(fake):item(), -(-2 + 0 + 0.5 - 0.5) / 4, 1e-6)
end)

T.test("the adaptive GAN weight is the ratio of the two losses' gradient norms at the last layer", function()
  local ae, net = tiny_ae(), tiny_net()
  local disc = A.PatchDiscriminator { channels = 8, layers = 1 }
  local x = images(2, 3)
  local function losses()
    local recon = ae:decoder_forward((ae:posterior(x)))
    return A.reconstruction_loss(recon, x, "l1") + A.perceptual_loss(net, recon, x), A.generator_loss(disc(recon))
  end
  local rec, g = losses()
  local w = A.adaptive_weight(rec, g, ae:last_layer())
  local function norm_of(loss)
    ae:zero_grad()
    loss:backward()
    local gr = ae:last_layer().grad
    return math.sqrt((gr * gr):sum():item())
  end
  local nr = norm_of((losses()))
  local ng = norm_of(select(2, losses()))
  T.near(w, nr / (ng + 1e-4), 1e-4)
  T.truthy(w > 0)
end)

T.test("PatchDiscriminator gives one logit per patch", function()
  local d = A.PatchDiscriminator { channels = 8 }
  local out = d(md.zeros { 3, 1, 28, 28 })
  T.eq(table.concat(out:shape(), "x"), "3x1x5x5")
  T.errors(function() A.PatchDiscriminator { layers = 9 } end, "layers")
end)

T.test("md.autoencoder.train fits a small set, with the discriminator from the first step", function()
  local ae, net = tiny_ae(), tiny_net()
  local x = images(16, 11)
  local data = { images = x, labels = md.zeros { 16 }, n = 16, classes = { "a" } }
  local before = A.evaluate(ae, x, { metrics = false })
  local net_weights = net:state_dict()
  for k, v in pairs(net_weights) do net_weights[k] = v:clone() end
  local r = A.train { model = ae, data = data, steps = 60, batch_size = 8, lr = 3e-3, net = net, progress = false,
                      loss = { disc_start = 0, kl_weight = 1e-4 },
                      discriminator = A.PatchDiscriminator { channels = 8, layers = 1 } }
  T.eq(r.steps, 60)
  T.truthy(r.figures.d_weight and r.figures.d and r.figures.g, "the adversarial terms ran")
  local after = A.evaluate(ae, x, { metrics = false })
  T.truthy(after.l1 < 0.7 * before.l1, ("reconstruction L1 fell: %.4f -> %.4f"):format(before.l1, after.l1))
  T.truthy(after.psnr > before.psnr)
  T.near(ae:encode(x):std():item(), 1, 0.05, "the scaling was fitted at the end")
  T.truthy(net.body:get(1).weight:requires_grad(), "the perceptual network's weights are trainable again afterwards")
  for k, v in pairs(net:state_dict()) do T.near(v, net_weights[k], 0, "the perceptual network is not trained: " .. k) end
  T.truthy(net.body:get(1).weight.grad == nil, "and gets no gradients")
  T.errors(function() A.train { model = ae, data = data, steps = 1, loss = { kl_wieght = 1 } } end, "kl_weight")
  T.errors(function() A.train { model = ae, data = data, steps = 1, net = net, loss = { disc_weight = 1 } } end,
    "disc_weight needs loss.disc_start")
  T.errors(function() A.train { model = ae, data = data, steps = 1, net = net, discriminator = A.PatchDiscriminator {} } end,
    "discriminator needs loss.disc_start")
  T.errors(function() A.train { model = ae, data = data, steps = 1, net = net, loss = { perceptual_weight = 0 } } end,
    "perceptual_weight is 0")
  T.errors(function() A.train { model = ae, data = data, steps = 1, progress = false } end, "perceptual network takes")
end)

T.test("latent diffusion: the trainer keeps the autoencoder, md.load + md.sample return decoded images", function()
  local dir, path = T.tempdir()
  local ae = tiny_ae()
  ae:fit_scale(images(32))
  local x = images(32, 12)
  local data = A.latent_data(ae, { images = x, labels = md.zeros { 32 }, n = 32, classes = { "a", "b" } })
  T.eq(table.concat(data.images:shape(), "x"), "32x2x4x4")
  local cfg = { in_channels = 2, out_channels = 2, model_channels = 16, channel_mult = { 1 }, num_res_blocks = 1,
                attention_resolutions = { 1 }, num_head_channels = 16, num_classes = 2, image_size = 4 }
  local unet = md.nn.UNet(cfg)
  md.trainer.train { model = unet, data = data, steps = 2, batch_size = 8, checkpoint = path("ldm.safetensors"),
                     autoencoder = ae, progress = false, sample_every = 0, run_dir = dir .. "/run" }
  T.truthy(unet.autoencoder == ae, "the trained model samples through its autoencoder")
  local model = md.load(path("ldm.safetensors"))
  T.truthy(model.autoencoder, "md.load attaches the autoencoder")
  local imgs = md.sample(model, { n = 3, class = 1, steps = 4, seed = 5, progress = false })
  T.eq(table.concat(imgs:shape(), "x"), "3x1x8x8")
  local z = md.sample(model, { n = 3, class = 1, steps = 4, seed = 5, progress = false, decode = false })
  T.eq(table.concat(z:shape(), "x"), "3x2x4x4")
  T.near(imgs, model.autoencoder:decode(z), 1e-5, "the images are the decoded latents")
  local clipped = md.sample(model, { n = 3, class = 1, steps = 4, seed = 5, progress = false, decode = false, clip = true })
  T.near(md.sample(model, { n = 3, class = 1, steps = 4, seed = 5, progress = false, decode = false, clip = false }), z, 0,
    "latents are sampled without the x0 clip by default")
  T.truthy((clipped - z):abs():max():item() > 1e-3, "and the clip would change them")
  -- img2img takes images and starts from their latents; inpainting is refused
  local edited = md.edit.img2img(model, x:narrow(1, 1, 2), { strength = 0.5, steps = 4, class = 1, progress = false })
  T.eq(table.concat(edited:shape(), "x"), "2x1x8x8")
  T.errors(function() md.edit.inpaint(model, x:narrow(1, 1, 2), md.ones { 2, 1, 8, 8 }, { steps = 4, progress = false }) end,
    "inpainting a latent diffusion model")
  T.errors(function() md.sample(model, { n = 1, steps = 2, shape = { 1, 8, 8 }, class = 0, progress = false }) end,
    "its autoencoder decodes 2x4x4 latents")
  -- a resumed run must see the same autoencoder
  T.errors(function()
    md.trainer.train { model = unet, data = data, steps = 3, batch_size = 8, checkpoint = path("ldm.safetensors"),
                       autoencoder = tiny_ae { z_channels = 2, latent_std = { 2, 2 }, latent_mean = { 0, 0 } },
                       progress = false, sample_every = 0, run_dir = dir .. "/run" }
  end, "gives another autoencoder")
  md.save(path("again.safetensors"), model) -- md.save of a loaded latent model keeps its autoencoder
  local again = md.load(path("again.safetensors"))
  T.near(md.sample(again, { n = 3, class = 1, steps = 4, seed = 5, progress = false }), imgs, 1e-6)
  local plain = md.nn.UNet(cfg)
  T.errors(function() md.sample(plain, { n = 1, steps = 2, decode = true, progress = false, class = 0 }) end, "no autoencoder")
  T.errors(function()
    md.trainer.train { model = plain, data = { images = x, labels = md.zeros { 32 }, n = 32 }, steps = 1,
                       autoencoder = ae, progress = false, checkpoint = path("x.safetensors") }
  end, "latents are 2x4x4")
end)

T.test("CLI: autoencoder, train --latent and sample on a folder of images", function()
  local cli = require "moondust.cli"
  local dir, path = T.tempdir()
  md.manual_seed(3)
  for _, class in ipairs { "dark", "light" } do
    md.core.mkdir_p(path("set/" .. class))
    for i = 1, 6 do
      local base = class == "dark" and -0.6 or 0.6
      md.image.save((md.rand { 3, 16, 16 } * 0.3 + base):clamp(-1, 1), path(("set/%s/%d.png"):format(class, i)))
    end
  end
  local ae, ldm = path("ae.safetensors"), path("ldm.safetensors")
  T.eq(cli.run { "autoencoder", "--data", path("set"), "--steps", "2", "--batch-size", "4", "--channels", "8",
                 "--perceptual-weight", "0", "--out", ae }, 0)
  T.eq(cli.run { "autoencoder", "--data", path("set"), "--steps", "1", "--out", ae }, 1) -- perceptual net is Fashion's
  T.eq(cli.run { "autoencoder", "--steps", "1", "--kl-wieght", "1" }, 2)
  T.eq(cli.run { "train", "--data", path("set"), "--latent", ae, "--steps", "2", "--batch-size", "4", "--channels", "16",
                 "--checkpoint", ldm, "--run-dir", dir .. "/run", "--sample-every", "0" }, 0)
  local model = md.load(ldm)
  T.eq(table.concat(model.config.channel_mult, ","), "1")
  T.eq(table.concat(md.sample(model, { n = 2, steps = 2, class = { 0, 1 }, progress = false }):shape(), "x"), "2x3x16x16")
  T.eq(cli.run { "sample", "--checkpoint", ldm, "--n", "2", "--steps", "2", "--class", "light", "--out",
                 path("s.png") }, 0)
  local img = md.image.load(path("s.png"))
  T.eq(img:size(1), 3, "the grid holds decoded RGB images")
  T.eq(cli.run { "train", "--data", path("set"), "--latent", path("missing.safetensors"), "--steps", "1" }, 1)
end)

T.finish()
