-- The diffusion process, apart from the network (guided-diffusion's
-- GaussianDiffusion, a diffusers scheduler): what the training loss and
-- the samplers need, and all of it stored in checkpoints.
--
--   d = md.diffusion{schedule = "cosine", T = 1000, prediction = "v", min_snr_gamma = 5}
--   d = md.diffusion.edm{sigma_data = 0.5}                 -- EDM (Karras et al. 2022)
--   local draw = d:draw(generator, x0)                      -- t (or sigma) and noise per image
--   local losses = d:loss(model, x0, y, draw)               -- one loss per image (reduction "none")
--   local loss = d:loss(model, x0, y, draw, "mean")         -- or "sum"
--   md.trainer.train{model = m, data = ds, diffusion = d}   -- md.load(...).diffusion comes back
--
-- DDPM family, md.diffusion{...} (defaults): schedule ("linear"; a name, a
-- schedule table or {betas = {...}}), T (1000, for a schedule by name),
-- prediction ("eps" | "x0" | "v"), variance ("small" | "large" |
-- "learned_range": the model outputs 2C channels, the prediction and then
-- v in [-1, 1] choosing the log-variance between the posterior's and beta,
-- trained with improved DDPM's hybrid loss L_simple + vlb_weight * L_vlb),
-- vlb_weight (0.001, of L_vlb summed over the T steps), loss ("mse" | "l1"
-- | function(pred, target, info) -> one loss per image), min_snr_gamma
-- (nil; e.g. 5: weights min(SNR, gamma) / SNR for eps, / (SNR + 1) for v,
-- Hang et al. 2023), offset_noise (0; e.g. 0.1 adds 0.1 * N(0, 1) per image
-- and channel to the noise), timesteps ("uniform" | "importance": t drawn
-- by improved DDPM's loss second moment once every t has 10 losses),
-- zero_terminal_snr (false; true rescales the betas to alpha-bar_T = 0,
-- Lin et al. 2024, and needs prediction v or x0).
--
-- EDM family, md.diffusion.edm{...}: sigma_data (0.5), sigma_min (0.002),
-- sigma_max (80), rho (7, of the Karras sigmas), p_mean (-1.2), p_std (1.2)
-- (training sigma log-normal), loss. The network sees c_in x and c_noise =
-- log(sigma) / 4, given as the timestep 250 (c_noise + 2) so that it lies
-- in the U-Net's range; D(x) = c_skip x + c_out F. The loss lambda(sigma)
-- ||D - x0||^2 is ||F - (x0 - c_skip x) / c_out||^2.
--
-- The samplers work in alpha-bar (ab): x = sqrt(ab) x0 + sqrt(1 - ab) eps
-- for both families (for EDM, ab = 1 / (1 + sigma^2), x = x_edm sqrt(ab)).
-- d:plan(steps, spacing) lists the noise levels, d:model_input and
-- d:to_x0_eps call the network at one of them (see sampler.lua).
local md = require "moondust"
local options = require "moondust.options"

local diffusion = {}

local VP = { family = "vp" }
VP.__index = VP
local EDM = { family = "edm" }
EDM.__index = EDM
diffusion.VP, diffusion.EDM = VP, EDM

local LOG2 = math.log(2)

-- One loss per image: the mean over everything but the first dimension.
local function per_image(x) return x:reshape(x:size(1), -1):mean(2) end

local losses = {
  mse = function(pred, target) return per_image((pred - target) ^ 2) end,
  l1 = function(pred, target) return per_image((pred - target):abs()) end,
}

local function loss_fn(where, loss)
  if type(loss) == "function" then return loss end
  return losses[options.choice(where, "loss", loss or "mse", { "mse", "l1" }, 3)]
end

-- An N x 1 x 1 x 1 tensor of per-image values, to scale images.
local function column(values)
  return md.tensor(values):reshape(#values, 1, 1, 1)
end

local vp_options = {
  schedule = true, T = "number", prediction = "string", variance = "string", loss = true, min_snr_gamma = "number",
  offset_noise = "number", vlb_weight = "number", timesteps = "string", zero_terminal_snr = "boolean",
}

local function new_vp(opts)
  local w = "diffusion"
  opts = options.check(w, opts, vp_options, 3)
  local self = setmetatable({}, VP)
  self.prediction = options.choice(w, "prediction", opts.prediction or "eps", { "eps", "x0", "v" }, 3)
  self.variance = options.choice(w, "variance", opts.variance or "small", { "small", "large", "learned_range" }, 3)
  self.min_snr_gamma = options.number(w, "min_snr_gamma", opts.min_snr_gamma, 0, nil, 3)
  self.offset_noise = options.number(w, "offset_noise", opts.offset_noise, 0, 10, 3) or 0
  self.vlb_weight = options.number(w, "vlb_weight", opts.vlb_weight, 0, nil, 3) or 0.001
  self.timesteps = options.choice(w, "timesteps", opts.timesteps or "uniform", { "uniform", "importance" }, 3)
  self.loss_name = type(opts.loss) == "string" and opts.loss or (opts.loss == nil and "mse" or "custom")
  self.loss_fn = loss_fn(w, opts.loss)
  options.integer(w, "T", opts.T, 1, nil, 3)
  local ok, sched = pcall(md.schedule.get, opts.schedule or "linear", opts.T)
  if not ok then error("diffusion: " .. tostring(sched):gsub("^[^:]*:%d+: ", ""), 3) end
  if opts.T and sched.T ~= opts.T then
    error(("diffusion: T = %d, but the schedule has T = %d (T only applies to a schedule given by name)"):format(
      opts.T, sched.T), 3)
  end
  if opts.zero_terminal_snr then sched = md.schedule.rescale_zero_terminal_snr(sched) end
  if sched.ab[sched.T] == 0 and self.prediction == "eps" then
    error("diffusion: at zero terminal SNR the noise says nothing about the image; use prediction v or x0", 3)
  end
  self.sched, self.T = sched, sched.T
  if self.timesteps == "importance" then -- the last losses at each t (a dense list, as checkpoints store it)
    self.history = {}
    for t = 1, self.T do self.history[t] = {} end
  end
  return self
end

setmetatable(diffusion, { __call = function(_, opts) return new_vp(opts) end })

---------------------------------------------------------------- training

-- Timesteps by improved DDPM's importance sampling: p_t proportional to
-- sqrt(E[L_t^2]) over the last 10 losses at t (uniform until every t has
-- 10), mixed with 0.001 of uniform; the losses are weighted 1 / (T p_t).
local HISTORY = 10
local function importance_probs(self)
  local h, T = self.history, self.T
  for t = 1, T do
    if #h[t] < HISTORY then return nil end
  end
  local p, sum = {}, 0
  for t = 1, T do
    local m = 0
    for _, l in ipairs(h[t]) do m = m + l * l end
    p[t] = math.sqrt(m / HISTORY)
    sum = sum + p[t]
  end
  for t = 1, T do p[t] = 0.999 * p[t] / sum + 0.001 / T end
  return p
end

-- Per-image randomness for a batch: {t, noise} (and the importance
-- weights). The trainer draws for the whole global batch and gives each
-- rank its rows, so every entry is a tensor with one row per image.
function VP:draw(gen, x0)
  local n = x0:size(1)
  local probs = self.history and importance_probs(self)
  local t, weight
  if probs then
    local u, ts, ws = gen:rand({ n }):flat(), {}, {}
    for i = 1, n do
      local acc, k = 0, self.T
      for j = 1, self.T do
        acc = acc + probs[j]
        if u[i] < acc then k = j; break end
      end
      ts[i], ws[i] = k - 1, 1 / (self.T * probs[k])
    end
    t, weight = md.tensor(ts), md.tensor(ws)
  else
    t = gen:randint(0, self.T, { n })
  end
  local noise = gen:randn(x0:shape())
  if self.offset_noise > 0 then noise = noise + gen:randn { n, x0:size(2), 1, 1 } * self.offset_noise end
  return { t = t, noise = noise, weight = weight }
end

-- count channels of x from the first-th (1-based); narrow shares storage
-- along the first dimension only, so this copies (with gradients).
function diffusion.channels(x, first, count)
  return md.index_select(x, 2, md.arange(first - 1, first - 1 + count))
end

-- Splits the model output into the prediction and the variance channels.
local function split_output(self, out, C)
  if self.variance == "learned_range" then
    if out:size(2) ~= 2 * C then
      error(("diffusion: variance = \"learned_range\" needs a model with %d output channels (2 x %d), "
        .. "this one gives %d (UNet{out_channels = %d})"):format(2 * C, C, out:size(2), 2 * C), 0)
    end
    return diffusion.channels(out, 1, C), diffusion.channels(out, C + 1, C)
  end
  if out:size(2) ~= C then
    error(("diffusion: the model gives %d channels for %d-channel images"):format(out:size(2), C), 0)
  end
  return out, nil
end

-- alpha-bar at each image's timestep (Lua numbers)
local function ab_at(self, t)
  local ab, out = self.sched.ab, {}
  for i, v in ipairs(t:flat()) do out[i] = ab[math.tointeger(v) + 1] end
  return out
end

-- The target the network learns for x0 and noise at t.
function VP:target(x0, t, noise)
  if self.prediction == "eps" then return noise end
  if self.prediction == "x0" then return x0 end
  return md.v_target(x0, t, noise, self.sched.alphas_cumprod)
end

-- min-SNR-gamma weights, one per image
local function snr_weights(self, abs)
  local g, w = self.min_snr_gamma, {}
  for i, a in ipairs(abs) do
    local snr = a / (1 - a)
    local m = math.min(snr, g)
    w[i] = self.prediction == "eps" and m / snr or self.prediction == "v" and m / (snr + 1) or m
  end
  return w
end

-- reduction "none" (the default: one loss per image, to weight as you
-- like), "mean" or "sum", as torch.nn losses take it.
local function reduce(per, reduction)
  if reduction == nil or reduction == "none" then return per end
  options.choice("loss", "reduction", reduction, { "none", "mean", "sum" }, 3)
  return reduction == "mean" and per:mean() or per:sum()
end

-- One loss per image for the draw (d:draw): the objective's loss, weighted
-- (min-SNR, importance), plus the VLB term of learned variance.
function VP:loss(model, x0, y, draw, reduction)
  local t, noise = draw.t, draw.noise
  local xt = md.q_sample(x0, t, noise, self.sched.alphas_cumprod)
  local pred, var_out = split_output(self, model(xt, t, y), x0:size(2))
  local target = self:target(x0, t, noise)
  local per = self.loss_fn(pred, target, { t = t, x0 = x0, xt = xt, noise = noise, diffusion = self })
  if not md.is_tensor(per) or per:dim() ~= 1 or per:size(1) ~= x0:size(1) then
    error(("diffusion: the loss function must return one loss per image (%d)"):format(x0:size(1)), 0)
  end
  local abs = (self.min_snr_gamma or var_out) and ab_at(self, t)
  if self.min_snr_gamma then per = per * md.tensor(snr_weights(self, abs)) end
  if var_out then
    -- the VLB trains the variance only: the mean comes from the detached prediction
    local vb = self:vlb_terms(x0, xt, t, pred:detach(), var_out, abs)
    per = per + vb * (self.vlb_weight * self.T)
  end
  if self.history then self:observe(t, per) end
  if draw.weight then per = per * draw.weight end
  return reduce(per, reduction)
end

-- Records the losses at their timesteps (importance sampling).
function VP:observe(t, per)
  local h, lv = self.history, per:detach():flat()
  for i, v in ipairs(t:flat()) do
    local k = math.tointeger(v) + 1
    table.insert(h[k], lv[i])
    if #h[k] > HISTORY then table.remove(h[k], 1) end
  end
end

---------------------------------------------------------------- the variational bound

-- Standard normal CDF (the tanh approximation ADM uses).
local function approx_cdf(x)
  return ((x + x ^ 3 * 0.044715) * math.sqrt(2 / math.pi)):tanh() * 0.5 + 0.5
end

-- log p(x0) under a Gaussian discretised into 256 bins on [-1, 1] (ADM).
function diffusion.discretized_gaussian_log_likelihood(x, mean, log_scale)
  local centered, inv = x - mean, (-log_scale):exp()
  local cdf_plus = approx_cdf(inv * (centered + 1 / 255))
  local cdf_min = approx_cdf(inv * (centered - 1 / 255))
  local log_cdf_plus = cdf_plus:clamp(1e-12, math.huge):log()
  local log_one_minus_cdf_min = (-cdf_min + 1):clamp(1e-12, math.huge):log()
  local log_delta = (cdf_plus - cdf_min):clamp(1e-12, math.huge):log()
  return md.where(x:lt(-0.999), log_cdf_plus, md.where(x:gt(0.999), log_one_minus_cdf_min, log_delta))
end

-- KL(N(m1, exp(lv1)) || N(m2, exp(lv2))) per element.
function diffusion.normal_kl(m1, lv1, m2, lv2)
  return ((lv2 - lv1) - 1 + (lv1 - lv2):exp() + (m1 - m2) ^ 2 * (-lv2):exp()) * 0.5
end

-- Per-image posterior coefficients at timesteps t: the mean's
-- c0 x0 + ct x_t, its log variance (clipped at t = 0 as ADM does: the
-- value at t = 1), and log beta.
local function posterior(self, abs_t, t)
  local ab, betas = self.sched.ab, self.sched.betas_list
  local c0, ct, logvar, logbeta = {}, {}, {}, {}
  local function post_var(k) -- k 1-based
    local prev = k > 1 and ab[k - 1] or 1
    return betas[k] * (1 - prev) / (1 - ab[k])
  end
  for i, v in ipairs(t:flat()) do
    local k = math.tointeger(v) + 1
    local a, prev, b = abs_t[i], k > 1 and ab[k - 1] or 1, betas[k]
    c0[i] = b * math.sqrt(prev) / (1 - a)
    ct[i] = (1 - prev) * math.sqrt(1 - b) / (1 - a)
    logvar[i] = math.log(k > 1 and post_var(k) or (self.T > 1 and post_var(2) or b))
    logbeta[i] = math.log(b)
  end
  return column(c0), column(ct), column(logvar), column(logbeta)
end

-- x0 from a prediction at per-image alpha-bars (no clipping, as in ADM's
-- VLB).
local function x0_from(self, xt, pred, abs)
  local sa, sb = {}, {}
  for i, a in ipairs(abs) do sa[i], sb[i] = math.sqrt(a), math.sqrt(1 - a) end
  sa, sb = column(sa), column(sb)
  if self.prediction == "x0" then return pred end
  if self.prediction == "v" then return sa * xt - sb * pred end
  return (xt - sb * pred) / sa
end

-- The model's log variance: learned (v in [-1, 1] between the posterior's
-- and beta), or the fixed "small" / "large" one.
local function model_logvar(self, var_out, logvar, logbeta, t, like)
  if var_out then
    local frac = (var_out + 1) * 0.5
    return frac * logbeta + (-frac + 1) * logvar
  end
  if self.variance == "large" then
    -- ADM's fixed_large: beta, with the posterior's variance at t = 0
    local zero = t:eq(0):reshape(t:size(1), 1, 1, 1)
    return md.zeros_like(like) + md.where(zero, logvar, logbeta)
  end
  return md.zeros_like(like) + logvar
end

-- The VLB terms L_t in bits per dimension, one per image: KL(q(x_{t-1} |
-- x_t, x0) || p(x_{t-1} | x_t)) for t > 0, the decoder's -log p(x0 | x_1)
-- for t = 0. pred is the model's prediction (for the mean), var_out its
-- variance channels (learned_range) or nil; abs alpha-bar per image.
function VP:vlb_terms(x0, xt, t, pred, var_out, abs)
  abs = abs or ab_at(self, t)
  local c0, ct, logvar, logbeta = posterior(self, abs, t)
  local true_mean = c0 * x0 + ct * xt
  local model_mean = c0 * x0_from(self, xt, pred, abs) + ct * xt
  local lv = model_logvar(self, var_out, logvar, logbeta, t, x0)
  local kl = per_image(diffusion.normal_kl(true_mean, md.zeros_like(x0) + logvar, model_mean, lv)) * (1 / LOG2)
  local nll = per_image(-diffusion.discretized_gaussian_log_likelihood(x0, model_mean, lv * 0.5)) * (1 / LOG2)
  return md.where(t:eq(0), nll, kl)
end

-- The variational bound in bits per dimension, one per image: the prior
-- term KL(q(x_T | x0) || N(0, I)) plus every L_t, t = T - 1 .. 0 (T model
-- calls per batch). opts: generator (the noise), progress.
function VP:bits_per_dim(model, x0, y, opts)
  opts = options.check("bits_per_dim", opts, { generator = true, progress = "boolean" })
  local gen = opts.generator or md.Generator(0)
  local n, C = x0:size(1), x0:size(2)
  local abT = self.sched.ab[self.T]
  local prior = per_image(diffusion.normal_kl(x0 * math.sqrt(abT), md.full(x0:shape(), math.log(1 - abT)),
                                              md.zeros_like(x0), md.zeros_like(x0))) * (1 / LOG2)
  local total = prior
  local bar = md.progress.new { total = self.T, label = "vlb", quiet = opts.progress == false }
  local was_training = model.training
  model:eval()
  md.no_grad(function()
    for t = self.T - 1, 0, -1 do
      local tt = md.full({ n }, t)
      local xt = md.q_sample(x0, tt, gen:randn(x0:shape()), self.sched.alphas_cumprod)
      local pred, var_out = split_output(self, model(xt, tt, y), C)
      total = total + self:vlb_terms(x0, xt, tt, pred, var_out)
      bar:update(self.T - t)
    end
  end)
  bar:finish()
  if was_training then model:train() end
  return total
end

---------------------------------------------------------------- sampling

-- sigma (VE noise level) <-> alpha-bar
local function sigma_of(ab) return math.sqrt((1 - ab) / ab) end
local function ab_of(sigma) return 1 / (1 + sigma * sigma) end
diffusion.sigma_of, diffusion.ab_of = sigma_of, ab_of

-- Karras et al.'s sigmas: n of them from sigma_max down to sigma_min,
-- evenly spaced in sigma^(1 / rho).
function diffusion.karras_sigmas(n, sigma_min, sigma_max, rho)
  rho = rho or 7
  local lo, hi, out = sigma_min ^ (1 / rho), sigma_max ^ (1 / rho), {}
  for i = 0, n - 1 do out[i + 1] = (hi + (n == 1 and 0 or i / (n - 1)) * (lo - hi)) ^ rho end
  return out
end

-- The model timestep (fractional) for a sigma between the schedule's:
-- linear in log sigma between neighbouring timesteps (k-diffusion).
local function t_of_sigma(self, sigma)
  local ab, T = self.sched.ab, self.T
  local ls = math.log(sigma)
  local prev = math.log(sigma_of(ab[1]))
  if ls <= prev then return 0 end
  for k = 2, T do
    local cur = math.log(sigma_of(ab[k]))
    if ls <= cur then return (k - 2) + (ls - prev) / (cur - prev) end
    prev = cur
  end
  return T - 1
end

-- The noise levels to sample with: {ab = {...}, t = {...}}, index 1 the
-- least noisy; the sampler walks from the last down to 1 and then to ab = 1.
-- spacing: "linspace" (even over 0..T-1, rounded; "even" is the same),
-- "leading" (every (T // steps)-th from 0; "ddim"), "trailing" (from T - 1
-- down by T / steps, Lin et al. 2024), "karras" (Karras sigmas between the
-- schedule's smallest and largest, at fractional timesteps).
function VP:plan(steps, spacing)
  spacing = spacing or "linspace"
  if spacing == "karras" then
    local ab = self.sched.ab
    if ab[self.T] == 0 then
      error("sample: Karras spacing needs a finite largest sigma; this schedule ends at zero SNR", 0)
    end
    local sigmas = diffusion.karras_sigmas(steps, sigma_of(ab[1]), sigma_of(ab[self.T]))
    local plan = { ab = {}, t = {} }
    for i, s in ipairs(sigmas) do
      plan.ab[steps - i + 1], plan.t[steps - i + 1] = ab_of(s), t_of_sigma(self, s)
    end
    return plan
  end
  local mode = ({ linspace = "even", even = "even", leading = "ddim", ddim = "ddim", trailing = "trailing" })[spacing]
  if not mode then options.choice("sample", "spacing", spacing, { "linspace", "leading", "trailing", "karras" }, 3) end
  local ts = md.schedule.spacing(self.T, steps, mode)
  local ab = {}
  for i, t in ipairs(ts) do ab[i] = self.sched.ab[t + 1] end
  return { ab = ab, t = ts }
end

-- alpha-bar at a (fractional) model timestep: the inverse of the mapping
-- the samplers use (linear in log sigma between timesteps).
function VP:alpha_bar(t)
  local ab = self.sched.ab
  local k = math.floor(t)
  if k >= self.T - 1 then return ab[self.T] end
  local w = t - k
  if w == 0 then return ab[k + 1] end
  local s0, s1 = math.log(sigma_of(ab[k + 1])), math.log(sigma_of(ab[k + 2]))
  return ab_of(math.exp(s0 + w * (s1 - s0)))
end

-- What the network is given at alpha-bar ab.
function VP:model_input(x) return x end

-- From the network's output at alpha-bar ab to x0, eps (and the variance
-- channels, for learned_range).
function VP:to_x0_eps(x, out, ab, clip)
  local pred, var_out = split_output(self, out, x:size(2))
  local x0, eps = md.pred_to_x0_eps(x, pred, ab, self.prediction, clip)
  return x0, eps, var_out
end

VP.default_sampler, VP.default_spacing = "ddim", "linspace"

-- The timesteps the network takes lie in [0, T).
function VP:num_timesteps() return self.T end

function VP:serialize()
  return { family = "vp", schedule = md.schedule.serialize(self.sched), prediction = self.prediction,
           variance = self.variance, loss = self.loss_name, min_snr_gamma = self.min_snr_gamma,
           offset_noise = self.offset_noise, vlb_weight = self.vlb_weight, timesteps = self.timesteps }
end

function VP:__tostring()
  return ("md.diffusion{schedule = %s (T = %d), prediction = %s, variance = %s%s%s}"):format(self.sched.kind, self.T,
    self.prediction, self.variance, self.min_snr_gamma and (", min_snr_gamma = " .. self.min_snr_gamma) or "",
    self.offset_noise > 0 and (", offset_noise = " .. self.offset_noise) or "")
end

---------------------------------------------------------------- EDM

local edm_options = { sigma_data = "number", sigma_min = "number", sigma_max = "number", rho = "number",
                      p_mean = "number", p_std = "number", loss = true }

function diffusion.edm(opts)
  local w = "diffusion.edm"
  opts = options.check(w, opts, edm_options, 2)
  local self = setmetatable({}, EDM)
  self.sigma_data = options.number(w, "sigma_data", opts.sigma_data, 1e-6, nil, 2) or 0.5
  self.sigma_min = options.number(w, "sigma_min", opts.sigma_min, 1e-6, nil, 2) or 0.002
  self.sigma_max = options.number(w, "sigma_max", opts.sigma_max, 1e-6, 1e6, 2) or 80
  if self.sigma_max <= self.sigma_min then
    error(("diffusion.edm: sigma_max (%g) must be above sigma_min (%g)"):format(self.sigma_max, self.sigma_min), 2)
  end
  self.rho = options.number(w, "rho", opts.rho, 1, nil, 2) or 7
  self.p_mean = options.number(w, "p_mean", opts.p_mean, -20, 20, 2) or -1.2
  self.p_std = options.number(w, "p_std", opts.p_std, 0, 20, 2) or 1.2
  self.loss_name = type(opts.loss) == "string" and opts.loss or (opts.loss == nil and "mse" or "custom")
  self.loss_fn = loss_fn(w, opts.loss)
  self.prediction = "edm"
  return self
end

-- The network's timestep input for sigma: 250 (log(sigma) / 4 + 2), in
-- [0, 1000) for sigma in [3.4e-4, 2981).
local function c_noise(sigma) return math.max(0, math.min(999.999, 250 * (math.log(sigma) / 4 + 2))) end

-- c_skip, c_out, c_in for one sigma
local function precond(self, sigma)
  local sd2, s2 = self.sigma_data ^ 2, sigma * sigma
  return sd2 / (s2 + sd2), sigma * self.sigma_data / math.sqrt(s2 + sd2), 1 / math.sqrt(s2 + sd2)
end

function EDM:draw(gen, x0)
  local n = x0:size(1)
  return { sigma = (gen:randn({ n }) * self.p_std + self.p_mean):exp(), noise = gen:randn(x0:shape()) }
end

function EDM:loss(model, x0, y, draw, reduction)
  local n = x0:size(1)
  local skip, out, cin, tn = {}, {}, {}, {}
  for i, s in ipairs(draw.sigma:flat()) do
    skip[i], out[i], cin[i] = precond(self, s)
    tn[i] = c_noise(s)
  end
  local x = x0 + draw.noise * draw.sigma:reshape(n, 1, 1, 1)
  local F = model(x * column(cin), md.tensor(tn), y)
  if F:size(2) ~= x0:size(2) then
    error(("diffusion: the model gives %d channels for %d-channel images"):format(F:size(2), x0:size(2)), 0)
  end
  local target = (x0 - x * column(skip)) / column(out)
  local per = self.loss_fn(F, target, { sigma = draw.sigma, x0 = x0, x = x, noise = draw.noise, diffusion = self })
  if not md.is_tensor(per) or per:dim() ~= 1 or per:size(1) ~= n then
    error(("diffusion: the loss function must return one loss per image (%d)"):format(n), 0)
  end
  return reduce(per, reduction)
end

-- Karras sigmas only (spacing "karras").
function EDM:plan(steps, spacing)
  if spacing and spacing ~= "karras" then
    error(("sample: the EDM diffusion samples with spacing = \"karras\", not %q"):format(spacing), 0)
  end
  local sigmas = diffusion.karras_sigmas(steps, self.sigma_min, self.sigma_max, self.rho)
  local plan = { ab = {}, t = {}, sigma = {} }
  for i, s in ipairs(sigmas) do
    local k = steps - i + 1
    plan.ab[k], plan.t[k], plan.sigma[k] = ab_of(s), c_noise(s), s
  end
  return plan
end

-- alpha-bar at the network's timestep input (the inverse of c_noise)
function EDM:alpha_bar(t) return ab_of(math.exp(4 * (t / 250 - 2))) end

-- x (ab-scaled) -> c_in x_edm, x_edm = x / sqrt(ab)
function EDM:model_input(x, ab)
  local _, _, cin = precond(self, sigma_of(ab))
  return x * (cin / math.sqrt(ab))
end

function EDM:to_x0_eps(x, out, ab, clip)
  local skip, cout = precond(self, sigma_of(ab))
  local D = x * (skip / math.sqrt(ab)) + out * cout
  return md.pred_to_x0_eps(x, D, ab, "x0", clip)
end

EDM.default_sampler, EDM.default_spacing = "heun", "karras"

function EDM:num_timesteps() return 1000 end

function EDM:serialize()
  return { family = "edm", sigma_data = self.sigma_data, sigma_min = self.sigma_min, sigma_max = self.sigma_max,
           rho = self.rho, p_mean = self.p_mean, p_std = self.p_std, loss = self.loss_name }
end

function EDM:__tostring()
  return ("md.diffusion.edm{sigma_data = %g, sigma_min = %g, sigma_max = %g, rho = %g}"):format(self.sigma_data,
    self.sigma_min, self.sigma_max, self.rho)
end

---------------------------------------------------------------- checkpoints

function diffusion.is_diffusion(d)
  local mt = getmetatable(d)
  return mt == VP or mt == EDM
end

-- nil when a and b are the same diffusion (family, betas, prediction,
-- variance; EDM's sigmas), else {what a is, what b is} for a message.
function diffusion.difference(a, b)
  if a.family ~= b.family then return { "the " .. a.family .. " diffusion", "the " .. b.family .. " one" } end
  if a.family == "edm" then
    for _, k in ipairs { "sigma_data", "sigma_min", "sigma_max" } do
      if a[k] ~= b[k] then return { ("%s = %g"):format(k, a[k]), ("%s = %g"):format(k, b[k]) } end
    end
    return nil
  end
  local same = a.T == b.T
  for i = 1, same and a.T or 0 do
    if math.abs(a.sched.betas_list[i] - b.sched.betas_list[i]) > 1e-12 then same = false; break end
  end
  local function sched(d) return ("a %s schedule of T = %d"):format(d.sched.kind, d.T) end
  if not same then return { sched(a), sched(b) } end
  for _, k in ipairs { "prediction", "variance" } do
    if a[k] ~= b[k] then return { ("%s = %s"):format(k, a[k]), ("%s = %s"):format(k, b[k]) } end
  end
  return nil
end

-- Gives the model its diffusion: model.diffusion, and for the DDPM family
-- model.schedule (the U-Net's timestep range) and model.prediction.
function diffusion.attach(model, d)
  model.diffusion = d
  model.schedule = d and d.sched or nil
  model.prediction = d and d.prediction ~= "edm" and d.prediction or nil
  return model
end

-- The diffusion a checkpoint describes: meta.diffusion (what serialize
-- wrote), or for older checkpoints meta.schedule and meta.prediction.
-- A custom loss function does not survive (sampling never needs it).
function diffusion.from_meta(meta)
  local d = meta.diffusion
  if type(d) == "table" then
    local loss = d.loss ~= "custom" and d.loss or nil
    if d.family == "edm" then
      return diffusion.edm { sigma_data = d.sigma_data, sigma_min = d.sigma_min, sigma_max = d.sigma_max, rho = d.rho,
                             p_mean = d.p_mean, p_std = d.p_std, loss = loss }
    end
    return new_vp { schedule = d.schedule, prediction = d.prediction, variance = d.variance, loss = loss,
                    min_snr_gamma = d.min_snr_gamma, offset_noise = d.offset_noise, vlb_weight = d.vlb_weight,
                    timesteps = d.timesteps }
  end
  if meta.schedule == nil and meta.prediction == nil then return nil end
  return new_vp { schedule = meta.schedule, T = type(meta.schedule) == "string" and 1000 or nil,
                  prediction = meta.prediction }
end

return diffusion
