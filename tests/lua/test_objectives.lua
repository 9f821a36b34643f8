-- The training objectives of md.diffusion against naive references written
-- out here in double precision, and the diffusion's trip through
-- checkpoints and the trainer.
local T = require "harness"
local md = require "moondust"

-- A fixed "network": out = a x + b t / 1000 (+ c on the variance channels).
local function affine(out_channels)
  local M = md.nn.Module:extend("Affine")
  function M:init() self.config = { in_channels = 1 } end
  function M:forward(x, t)
    local n = x:size(1)
    local base = x * 0.7 + (t / 1000):reshape(n, 1, 1, 1) * 0.3
    if out_channels == 2 then return md.cat({ base, (x * 0.5):tanh() }, 2) end
    return base
  end
  return M()
end

local function values(t) return T.flat(t) end

T.test("eps, x0 and v objectives with min-SNR weights, per image, match the closed forms", function()
  local g = md.Generator(3)
  local x0 = g:randn { 3, 1, 2, 2 }:clamp(-1, 1)
  for _, pred in ipairs { "eps", "x0", "v" } do
    for _, gamma in ipairs { false, 5 } do
      local d = md.diffusion { schedule = "cosine", T = 100, prediction = pred, min_snr_gamma = gamma or nil }
      local draw = d:draw(md.Generator(1), x0)
      local per = d:loss(affine(), x0, nil, draw)
      T.eq(per:dim(), 1)
      T.eq(per:size(1), 3, "one loss per image")
      local X, E, ts = values(x0), values(draw.noise), values(draw.t)
      for i = 1, 3 do
        local ab = d.sched.ab[ts[i] + 1]
        local sa, sb = math.sqrt(ab), math.sqrt(1 - ab)
        local sum = 0
        for j = 1, 4 do
          local k = (i - 1) * 4 + j
          local xt = sa * X[k] + sb * E[k]
          local out = 0.7 * xt + 0.3 * ts[i] / 1000
          local target = pred == "eps" and E[k] or pred == "x0" and X[k] or sa * E[k] - sb * X[k]
          sum = sum + (out - target) ^ 2
        end
        local w = 1
        if gamma then
          local snr = ab / (1 - ab)
          w = math.min(snr, gamma) / (pred == "eps" and snr or pred == "v" and snr + 1 or 1)
        end
        T.near(per[i], w * sum / 4, 1e-4, ("%s, gamma %s, image %d"):format(pred, tostring(gamma), i))
      end
    end
  end
  -- l1 and a user loss function
  local d = md.diffusion { loss = "l1" }
  local draw = d:draw(md.Generator(1), x0)
  local l1 = d:loss(affine(), x0, nil, draw)
  local custom = md.diffusion { loss = function(p, target) return ((p - target):abs()):reshape(3, -1):mean(2) end }
  T.near(custom:loss(affine(), x0, nil, draw), l1, 1e-6)
  local bad = md.diffusion { loss = function(p, target) return ((p - target) ^ 2):mean() end }
  T.errors(function() bad:loss(affine(), x0, nil, draw) end, "one loss per image")
  T.near(d:loss(affine(), x0, nil, draw, "mean"), l1:mean(), 1e-6, "reduction mean")
  T.near(d:loss(affine(), x0, nil, draw, "sum"), l1:sum(), 1e-6, "reduction sum")
  T.errors(function() d:loss(affine(), x0, nil, draw, "avg") end, "reduction must be one of")
  T.errors(function() md.diffusion { predicton = "v" } end, "did you mean 'prediction'")
  T.errors(function() md.diffusion { loss = "huber" } end, "loss must be one of")
end)

T.test("offset noise adds one offset per image and channel", function()
  local d = md.diffusion { offset_noise = 0.5 }
  local x0 = md.zeros { 400, 2, 8, 8 }
  local noise = d:draw(md.Generator(2), x0).noise
  -- the mean of each image-channel: variance 1/64 from the pixels, 0.25 from the offset
  local means = noise:reshape(800, 64):mean(2)
  local var = means:var(1):item()
  T.truthy(math.abs(var - (0.25 + 1 / 64)) < 0.05, ("per-channel mean variance %.3f"):format(var))
  local plain = md.diffusion {}:draw(md.Generator(2), x0).noise:reshape(800, 64):mean(2):var(1):item()
  T.truthy(plain < 0.03, "without offset the channel means barely vary")
end)

-- Naive double-precision Gaussian KL and ADM's discretised log-likelihood.
local function kl(m1, lv1, m2, lv2) return 0.5 * (-1 + lv2 - lv1 + math.exp(lv1 - lv2) + (m1 - m2) ^ 2 * math.exp(-lv2)) end
local function cdf(x) return 0.5 * (1 + math.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ^ 3))) end
local function disc_loglik(x, mean, log_scale)
  local inv = math.exp(-log_scale)
  local plus, minus = cdf(inv * (x - mean + 1 / 255)), cdf(inv * (x - mean - 1 / 255))
  if x < -0.999 then return math.log(math.max(plus, 1e-12)) end
  if x > 0.999 then return math.log(math.max(1 - minus, 1e-12)) end
  return math.log(math.max(plus - minus, 1e-12))
end

T.test("learned variance: the VLB terms are the closed-form Gaussian KLs and the decoder likelihood", function()
  local d = md.diffusion { schedule = "linear", T = 50, variance = "learned_range", prediction = "eps" }
  local x0 = md.tensor { -1, -0.2, 0.5, 1, 0.1, -0.7, 0.3, 0.9 }:reshape(2, 1, 2, 2)
  local noise = md.Generator(4):randn { 2, 1, 2, 2 }
  local var_out = md.tensor { -0.5, 0, 0.5, 0.9, -0.9, 0.2, 0.4, -0.1 }:reshape(2, 1, 2, 2)
  local eps_pred = noise * 0.8
  local ab, betas = d.sched.ab, d.sched.betas_list
  for _, tv in ipairs { 0, 1, 17, 49 } do
    local t = md.full({ 2 }, tv)
    local xt = md.q_sample(x0, t, noise, d.sched.alphas_cumprod)
    local terms = d:vlb_terms(x0, xt, t, eps_pred, var_out)
    local X, XT, EP, V = values(x0), values(xt), values(eps_pred), values(var_out)
    local k = tv + 1
    local a, prev, b = ab[k], k > 1 and ab[k - 1] or 1, betas[k]
    local post = function(j) return betas[j] * (1 - (j > 1 and ab[j - 1] or 1)) / (1 - ab[j]) end
    local logpost = math.log(k > 1 and post(k) or post(2))
    local c0, ct = b * math.sqrt(prev) / (1 - a), (1 - prev) * math.sqrt(1 - b) / (1 - a)
    for i = 1, 2 do
      local sum = 0
      for j = 1, 4 do
        local e = (i - 1) * 4 + j
        local x0hat = (XT[e] - math.sqrt(1 - a) * EP[e]) / math.sqrt(a)
        local mean_true, mean_model = c0 * X[e] + ct * XT[e], c0 * x0hat + ct * XT[e]
        local frac = (V[e] + 1) / 2
        local lv = frac * math.log(b) + (1 - frac) * logpost
        if tv == 0 then sum = sum - disc_loglik(X[e], mean_model, 0.5 * lv)
        else sum = sum + kl(mean_true, logpost, mean_model, lv) end
      end
      T.near(terms[i], sum / 4 / math.log(2), 2e-4, ("t = %d, image %d"):format(tv, i))
    end
  end
end)

T.test("the hybrid loss trains the variance channels by the VLB: finite differences agree", function()
  local d = md.diffusion { schedule = "linear", T = 20, variance = "learned_range" }
  local x0 = md.Generator(5):randn { 2, 1, 2, 2 }:clamp(-1, 1)
  local xt = md.q_sample(x0, md.tensor { 3, 11 }, md.Generator(6):randn { 2, 1, 2, 2 }, d.sched.alphas_cumprod)
  local t, eps = md.tensor { 3, 11 }, md.Generator(7):randn { 2, 1, 2, 2 }
  local v = md.Generator(8):rand { 2, 1, 2, 2 } * 1.6 - 0.8
  local function f(vv) return d:vlb_terms(x0, xt, t, eps, vv):sum() end
  v:requires_grad(true)
  local g = md.grad(f(v), { v })[1]
  local V, G, h = values(v:detach()), values(g), 1e-2
  for e = 1, 8 do
    local up, down = {}, {}
    for j = 1, 8 do up[j], down[j] = V[j], V[j] end
    up[e], down[e] = V[e] + h, V[e] - h
    local fd = md.no_grad(function()
      return (f(md.tensor(up):reshape(2, 1, 2, 2)):item() - f(md.tensor(down):reshape(2, 1, 2, 2)):item()) / (2 * h)
    end)
    T.near(G[e], fd, 2e-2, "element " .. e)
  end
  -- the loss of a 2C-channel model: L_simple + vlb_weight T L_vlb, the mean channels seeing only L_simple
  local draw = d:draw(md.Generator(1), x0)
  local per = d:loss(affine(2), x0, nil, draw)
  local simple = md.diffusion { schedule = "linear", T = 20 }
  local xt2 = md.q_sample(x0, draw.t, draw.noise, d.sched.alphas_cumprod)
  local out = affine(2)(xt2, draw.t)
  local vb = d:vlb_terms(x0, xt2, draw.t, md.diffusion.channels(out, 1, 1), md.diffusion.channels(out, 2, 1))
  T.near(per, simple:loss(affine(), x0, nil, draw) + vb * (0.001 * 20), 1e-5)
  T.errors(function() d:loss(affine(), x0, nil, draw) end, "needs a model with 2 output channels")
end)

T.test("bits per dimension of a perfect model of Gaussian pixels", function()
  -- for a model that predicts eps exactly from x0 (cheating), every KL is 0 with the
  -- posterior's variance; the bound is then the prior term plus the decoder's term
  local d = md.diffusion { schedule = "linear", T = 10, variance = "small" }
  local x0 = md.Generator(2):rand { 2, 1, 2, 2 } * 1.6 - 0.8
  local Cheat = md.nn.Module:extend("Cheat")
  function Cheat:init() self.config = { in_channels = 1 } end
  function Cheat:forward(x, t)
    local ab = d.sched.ab[math.tointeger(t[1]) + 1]
    return (x - x0 * math.sqrt(ab)) / math.sqrt(1 - ab)
  end
  local bpd = d:bits_per_dim(Cheat(), x0, nil, { progress = false })
  local abT = d.sched.ab[10]
  local X = values(x0)
  local post1 = d.sched.betas_list[2] * (1 - d.sched.ab[1]) / (1 - d.sched.ab[2])
  for i = 1, 2 do
    local want = 0
    for j = 1, 4 do
      local x = X[(i - 1) * 4 + j]
      want = want + kl(x * math.sqrt(abT), math.log(1 - abT), 0, 0) - disc_loglik(x, x, 0.5 * math.log(post1))
    end
    T.near(bpd[i], want / 4 / math.log(2), 1e-3, "image " .. i)
  end
end)

T.test("EDM: the preconditioned loss is lambda(sigma) ||D - x0||^2", function()
  local d = md.diffusion.edm { sigma_data = 0.5 }
  local x0 = md.Generator(3):randn { 4, 1, 2, 2 }:clamp(-1, 1)
  local draw = d:draw(md.Generator(9), x0)
  local m = affine()
  local per = d:loss(m, x0, nil, draw)
  local S, X, E = values(draw.sigma), values(x0), values(draw.noise)
  for i = 1, 4 do
    local s, sd = S[i], 0.5
    local cskip, cout, cin = sd ^ 2 / (s ^ 2 + sd ^ 2), s * sd / math.sqrt(s ^ 2 + sd ^ 2), 1 / math.sqrt(s ^ 2 + sd ^ 2)
    local cnoise = math.max(0, math.min(999.999, 250 * (math.log(s) / 4 + 2)))
    local lambda = (s ^ 2 + sd ^ 2) / (s * sd) ^ 2
    local sum = 0
    for j = 1, 4 do
      local e = (i - 1) * 4 + j
      local x = X[e] + s * E[e]
      local F = 0.7 * (cin * x) + 0.3 * cnoise / 1000
      local D = cskip * x + cout * F
      sum = sum + lambda * (D - X[e]) ^ 2
    end
    T.near(per[i], sum / 4, 1e-4, "image " .. i)
  end
  -- log-normal sigma: log sigma ~ N(-1.2, 1.2^2)
  local many = d:draw(md.Generator(1), md.zeros { 4000, 1, 1, 1 }).sigma:log()
  T.truthy(math.abs(many:mean():item() + 1.2) < 0.06 and math.abs(many:std(1):item() - 1.2) < 0.06, "log sigma")
  T.errors(function() md.diffusion.edm { sigma_min = 5, sigma_max = 1 } end, "must be above sigma_min")
end)

T.test("importance sampling of t follows the loss second moment once every t has 10 losses", function()
  local d = md.diffusion { T = 4, timesteps = "importance" }
  local x0 = md.zeros { 8, 1, 1, 1 }
  T.eq(d:draw(md.Generator(1), x0).weight, nil, "uniform until the history is full")
  for _ = 1, 10 do d:observe(md.tensor { 0, 1, 2, 3 }, md.tensor { 1, 1, 1, 5 }) end
  local draw = d:draw(md.Generator(1), md.zeros { 4000, 1, 1, 1 })
  local ts, count3 = values(draw.t), 0
  for _, t in ipairs(ts) do if t == 3 then count3 = count3 + 1 end end
  -- p = 0.999 * {1, 1, 1, 5} / 8 + 0.001 / 4
  local p3 = 0.999 * 5 / 8 + 0.00025
  T.truthy(math.abs(count3 / 4000 - p3) < 0.03, ("t = 3 drawn %.3f of the time, p = %.3f"):format(count3 / 4000, p3))
  for i, t in ipairs(ts) do
    local p = t == 3 and p3 or 0.999 / 8 + 0.00025
    T.near(draw.weight[i], 1 / (4 * p), 1e-5)
    if i > 20 then break end
  end
end)

T.test("the diffusion survives md.save / md.load and the trainer; a resumed run must keep it", function()
  local dir = os.tmpname(); os.remove(dir); md.core.mkdir_p(dir)
  local ds = { images = md.Generator(1):randn { 16, 1, 8, 8 }:clamp(-1, 1), labels = md.randint(0, 2, { 16 }), n = 16,
               classes = { "a", "b" } }
  local cfg = { image_size = 8, model_channels = 8, channel_mult = { 1, 2 }, num_res_blocks = 1,
                attention_resolutions = {}, num_classes = 2, norm_groups = 4, num_head_channels = 4 }
  local cases = {
    { name = "v_minsnr", d = md.diffusion { schedule = "cosine", T = 300, prediction = "v", min_snr_gamma = 5,
                                             offset_noise = 0.05 } },
    { name = "learned", d = md.diffusion { T = 200, variance = "learned_range" }, out_channels = 2 },
    { name = "edm", d = md.diffusion.edm { sigma_max = 40 } },
  }
  for _, c in ipairs(cases) do
    local c2 = {}
    for k, v in pairs(cfg) do c2[k] = v end
    c2.out_channels = c.out_channels
    local path = dir .. "/" .. c.name .. ".safetensors"
    local r = md.trainer.train { model = md.nn.UNet(c2), data = ds, steps = 2, batch_size = 8, diffusion = c.d,
                                 checkpoint = path, progress = false, sample_every = 0, warmup = 1 }
    T.eq(r.steps, 2)
    local m = md.load(path)
    T.eq(tostring(m.diffusion), tostring(c.d), c.name .. ": the diffusion comes back")
    T.near(m.diffusion:plan(7).ab, c.d:plan(7).ab, 1e-12)
    local opts = { n = 2, steps = 4, seed = 3, progress = false, class = 1 }
    local a = md.sample(m, opts)
    opts.diffusion = c.d
    T.near(a, md.sample(m, opts), 0, c.name .. ": md.sample uses the loaded diffusion")
  end
  -- a different objective on resume is an error; so is mixing diffusion with schedule
  T.errors(function()
    md.trainer.train { model = md.nn.UNet(cfg), data = ds, steps = 3, batch_size = 8, checkpoint = dir .. "/v_minsnr.safetensors",
                       diffusion = md.diffusion { schedule = "cosine", T = 300, prediction = "eps" }, progress = false,
                       sample_every = 0 }
  end, "prediction = v")
  T.errors(function()
    md.trainer.train { model = md.nn.UNet(cfg), data = ds, steps = 1, diffusion = md.diffusion {}, schedule = "cosine" }
  end, "give them to md.diffusion")
  -- any loss function
  local seen = 0
  md.trainer.train { model = md.nn.UNet(cfg), data = ds, steps = 2, batch_size = 8, checkpoint = dir .. "/custom.safetensors",
                     progress = false, sample_every = 0,
                     loss = function(model, x0, y, draw, d) seen = seen + 1; return d:loss(model, x0, y, draw):sum() end }
  T.eq(seen, 2, "the trainer calls the loss function each step")
  os.execute("rm -rf '" .. dir .. "'")
end)

T.finish()
