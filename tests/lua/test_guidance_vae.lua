-- Classifier guidance gradients, the VAE's loss terms and the latent
-- autoencoder's shapes.
local T = require "harness"
local md = require "moondust"

T.test("classifier guidance gradient matches finite differences", function()
  md.manual_seed(1)
  local clf = md.nn.EncoderUNet { model_channels = 8, channel_mult = { 1, 2 }, num_res_blocks = 1,
                                  attention_resolutions = { 2 }, num_head_channels = 8, norm_groups = 4,
                                  out_channels = 3 }
  -- the output layer is zero-initialised (as in ADM): give it weights
  md.no_grad(function() for _, p in ipairs(clf:parameters()) do p:add_(md.randn(p:shape()) * 0.1) end end)
  clf:eval()
  local x, t, y = md.randn { 2, 1, 8, 8 }, md.tensor { 10, 500 }, md.tensor { 2, 0 }
  local g = md.guidance.classifier(clf, 2.5)(x, t, y)
  T.eq(table.concat(g:shape(), "x"), "2x1x8x8")
  for _, p in ipairs(clf:parameters()) do T.truthy(p.grad == nil, "parameter gradients untouched") end
  local function objective(xx)
    return md.no_grad(function()
      local logp = md.log_softmax(clf(xx, t), 2)
      return (logp * md.one_hot(y, 3)):sum():item() * 2.5
    end)
  end
  local flat = x:view(-1)
  for _, i in ipairs { 1, 17, 64, 100, 128 } do
    local orig = flat[i]
    flat[i] = orig + 1e-2
    local fp = objective(x)
    flat[i] = orig - 1e-2
    local fm = objective(x)
    flat[i] = orig
    T.near(g:view(-1)[i], (fp - fm) / 2e-2, 2e-2)
  end
end)

T.test("KL and ELBO terms against closed forms", function()
  -- KL(N(m, s^2) || N(0, 1)) = 0.5 (s^2 + m^2 - 1 - log s^2), summed per example
  local mean, logvar = md.tensor { { 0.5, -1 }, { 0, 0 } }, md.tensor { { 0.2, -0.3 }, { 0, 0 } }
  local want = 0
  for i, m in ipairs { 0.5, -1 } do
    local lv = ({ 0.2, -0.3 })[i]
    want = want + 0.5 * (math.exp(lv) + m * m - 1 - lv)
  end
  T.near(md.gaussian_kl(mean, logvar), want / 2, 1e-6)
  -- Bernoulli reconstruction: the BCE of the logits against (x + 1) / 2, summed per example
  local model = md.vae.VAE { kind = "mlp", latent = 2, hidden = 8, image_size = 2 }
  local x = md.tensor { { { { -1, 1 }, { 0, 1 } } } }
  local logits = md.tensor { { { { 0, 2 }, { -1, 3 } } } }
  local p = { 0.5, 1 / (1 + math.exp(-2)), 1 / (1 + math.exp(1)), 1 / (1 + math.exp(-3)) }
  local target = { 0, 1, 0.5, 1 }
  local nll = 0
  for i = 1, 4 do nll = nll - (target[i] * math.log(p[i]) + (1 - target[i]) * math.log(1 - p[i])) end
  T.near(model:reconstruction_nll(logits, x), nll, 1e-5)
  -- Gaussian reconstruction with sigma: 0.5 ||x - mu||^2 / sigma^2 + d/2 log(2 pi sigma^2)
  local g = md.vae.VAE { kind = "mlp", latent = 2, hidden = 8, image_size = 2, decoder = "gaussian", sigma = 0.5 }
  local mu = md.zeros { 1, 1, 2, 2 }
  T.near(g:reconstruction_nll(mu, x), 0.5 * 3 / 0.25 + 2 * math.log(2 * math.pi * 0.25), 1e-5)
  -- the loss is reconstruction + KL, and it trains
  local loss, recon, kl = model:loss(md.rand { 4, 1, 2, 2 } * 2 - 1, { gen = md.Generator(1) })
  T.near(loss, recon:item() + kl:item(), 1e-5)
  loss:backward()
  T.truthy(model.to_mean.weight.grad, "gradients reach the encoder through the reparameterization")
end)

T.test("the convolutional autoencoder maps 28 x 28 to 4 x 7 x 7 and back", function()
  local ae = md.vae.VAE { kind = "conv", latent_channels = 4, decoder = "gaussian", width = 8 }
  local x = md.rand { 3, 1, 28, 28 } * 2 - 1
  local mean, logvar = ae:encode(x)
  T.eq(table.concat(mean:shape(), "x"), "3x4x7x7")
  T.eq(table.concat(logvar:shape(), "x"), "3x4x7x7")
  T.eq(table.concat(ae:decode(mean):shape(), "x"), "3x1x28x28")
  T.eq(table.concat(ae:sample(2):shape(), "x"), "2x1x28x28")
  -- the scale factor makes the latents unit-variance
  local scale = 1 / mean:std():item()
  T.near((mean * scale):std(), 1, 1e-4)
end)

T.finish()
