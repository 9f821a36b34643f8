-- Schedules, the diffusion kernels against closed forms, samplers
-- (determinism, batch-size independence, guidance) and exact resume.
local T = require "harness"
local md = require "moondust"

T.test("linear and cosine schedules", function()
  local s = md.schedule.linear {}
  T.eq(s.T, 1000)
  T.near(s.betas[1], 1e-4, 1e-6)
  T.near(s.betas[1000], 0.02, 1e-6)
  local prod = 1
  for i = 1, 1000 do prod = prod * (1 - (1e-4 + (0.02 - 1e-4) * (i - 1) / 999)) end
  T.near(s.ab[1000], prod, 1e-9)
  T.near(s.alphas_cumprod[1000], prod, 1e-6)
  local c = md.schedule.cosine { T = 100 }
  T.truthy(c.ab[1] < 1 and c.ab[1] > 0.99 and c.ab[100] < 1e-3, "cosine alpha-bar falls from ~1 to ~0")
  local f = md.schedule.from_betas(function(t, n) return 0.01 end, 10)
  T.near(f.ab[10], 0.99 ^ 10, 1e-9)
  T.errors(function() md.schedule.from_betas(function() return 1.5 end, 3) end, "betas must be in (0, 1)")
end)

T.test("respacing keeps alpha-bar at the kept steps", function()
  local s = md.schedule.linear {}
  local r = md.schedule.respace(s, 50)
  T.eq(#r.timesteps, 50)
  T.eq(r.timesteps[1], 0)
  T.eq(r.timesteps[50], 999)
  for i, t in ipairs(r.timesteps) do T.near(r.ab[i], s.ab[t + 1], 1e-12) end
  local d = md.schedule.respace(s, 10, "ddim")
  T.eq(table.concat(d.timesteps, ","), "0,100,200,300,400,500,600,700,800,900")
end)

T.test("q_sample and the step kernels match closed forms", function()
  local s = md.schedule.linear {}
  local x0, noise = md.randn { 2, 1, 2, 2 }, md.randn { 2, 1, 2, 2 }
  local t = md.tensor { 10, 900 }
  local xt = md.q_sample(x0, t, noise, s.alphas_cumprod)
  for i = 1, 2 do
    local a = s.ab[t[i] + 1]
    T.near(xt[i], x0[i] * math.sqrt(a) + noise[i] * math.sqrt(1 - a), 1e-5)
  end
  -- x0 and eps recovered from an exact eps prediction
  local ab = s.ab[501]
  local x = x0 * math.sqrt(ab) + noise * math.sqrt(1 - ab)
  local px0, peps = md.pred_to_x0_eps(x, noise, ab, "eps", false)
  T.near(px0, x0, 1e-4); T.near(peps, noise, 1e-5)
  local v = noise * math.sqrt(ab) - x0 * math.sqrt(1 - ab)
  px0, peps = md.pred_to_x0_eps(x, v, ab, "v", false)
  T.near(px0, x0, 1e-4); T.near(peps, noise, 1e-4)
  -- DDIM with eta 0 from exact predictions lands on the noiseless path
  local ab_prev = s.ab[401]
  local prev = md.ddim_step(x0, noise, ab, ab_prev, 0)
  T.near(prev, x0 * math.sqrt(ab_prev) + noise * math.sqrt(1 - ab_prev), 1e-5)
  -- DDPM posterior mean: beta sqrt(ab') / (1 - ab) x0 + (1 - ab') sqrt(alpha) / (1 - ab) x_t
  local beta = 1 - ab / ab_prev
  local mean = x0 * (beta * math.sqrt(ab_prev) / (1 - ab)) + x * ((1 - ab_prev) * math.sqrt(1 - beta) / (1 - ab))
  T.near(md.ddpm_step(x, x0, ab, ab_prev, nil, nil, false, false), mean, 1e-5)
  local z = md.randn { 2, 1, 2, 2 }
  local var = beta * (1 - ab_prev) / (1 - ab)
  T.near(md.ddpm_step(x, x0, ab, ab_prev, z, nil, false, false), mean + z * math.sqrt(var), 1e-5)
  T.near(md.ddpm_step(x, x0, ab, ab_prev, z, z, true, false), mean + z * beta + z * math.sqrt(beta), 1e-5)
  T.errors(function() md.q_sample(x0, md.tensor { 0, 1000 }, noise, s.alphas_cumprod) end, "out of range")
end)

-- A stand-in model: eps = 0.1 x, with a class-dependent shift.
local function toy()
  local m = { config = { num_classes = 10, in_channels = 1 }, image_size = 4, training = false }
  function m.train(self) self.training = true end
  function m.eval(self) self.training = false end
  setmetatable(m, { __call = function(_, x, t, y) return x * 0.1 + y:reshape(-1, 1, 1, 1) * 0.01 end })
  return m
end

T.test("samples do not depend on the batch size", function()
  local m = toy()
  for _, sampler in ipairs { "ddim", "ddpm" } do
    local a = md.sample(m, { n = 5, class = 3, steps = 10, sampler = sampler, seed = 7, batch_size = 1, progress = false, eta = sampler == "ddim" and 0.5 or nil })
    local b = md.sample(m, { n = 5, class = 3, steps = 10, sampler = sampler, seed = 7, batch_size = 4, progress = false, eta = sampler == "ddim" and 0.5 or nil })
    T.near(a, b, 0)
  end
  local c = md.sample(m, { n = 2, class = 3, steps = 10, seed = 8, progress = false })
  local d = md.sample(m, { n = 2, class = 3, steps = 10, seed = 8, progress = false })
  T.near(c, d, 0, "DDIM with eta 0 is deterministic")
end)

T.test("classifier-free guidance and cond_fn change the samples as specified", function()
  local m = toy()
  local base = { n = 2, class = 3, steps = 10, seed = 1, progress = false, clip = false }
  local function with(extra) local o = {} for k, v in pairs(base) do o[k] = v end for k, v in pairs(extra) do o[k] = v end return o end
  local plain = md.sample(m, with {})
  T.near(md.sample(m, with { guidance = 1 }), plain, 1e-6, "guidance 1 is the conditional model")
  T.truthy((md.sample(m, with { guidance = 5 }) - plain):abs():max():item() > 1e-3, "guidance 5 differs")
  local called = 0
  local shifted = md.sample(m, with { cond_fn = function(x, t, y) called = called + 1; return md.ones_like(x) end })
  T.eq(called, 10)
  T.truthy((shifted - plain):mean():item() > 0, "a positive gradient pushes samples up")
end)

T.test("training resumes exactly", function()
  local ds = { images = md.randn { 64, 1, 8, 8 }:clamp(-1, 1), labels = md.randint(0, 10, { 64 }), n = 64 }
  local cfg = { model_channels = 8, channel_mult = { 1, 2 }, num_res_blocks = 1, attention_resolutions = { 2 },
                num_head_channels = 8, norm_groups = 4 }
  local dir = os.tmpname(); os.remove(dir)
  local function run(steps, resume, path)
    md.manual_seed(0)
    return md.trainer.train { model = md.nn.UNet(cfg), data = ds, steps = steps, batch_size = 16, warmup = 2,
                              checkpoint = path, resume = resume, checkpoint_every = 0, progress = false }
  end
  local full = run(6, false, dir .. "/full.safetensors")
  run(3, false, dir .. "/half.safetensors")
  local resumed = run(6, true, dir .. "/half.safetensors")
  T.eq(#resumed.losses, 6)
  T.near(resumed.losses, full.losses, 1e-6)
  os.execute("rm -rf " .. dir)
end)

-- A model trained with a schedule other than linear T = 1000 must sample
-- with that schedule after md.load, whether it was named, a table or a function.
T.test("the training schedule survives md.load", function()
  local ds = { images = md.randn { 16, 1, 8, 8 }:clamp(-1, 1), labels = md.randint(0, 10, { 16 }), n = 16 }
  local cfg = { model_channels = 8, channel_mult = { 1, 2 }, num_res_blocks = 1, attention_resolutions = {}, num_head_channels = 8,
                norm_groups = 4 }
  local dir = os.tmpname(); os.remove(dir)
  local schedules = {
    { "cosine", T = 400 },
    { md.schedule.linear { T = 250, beta_end = 0.03 } },
    { md.schedule.from_betas(function(t, n) return 0.001 + 0.05 * (t / n) ^ 2 end, 300) },
  }
  for i, case in ipairs(schedules) do
    local path = ("%s/s%d.safetensors"):format(dir, i)
    local model = md.nn.UNet(cfg)
    md.trainer.train { model = model, data = ds, steps = 1, batch_size = 8, schedule = case[1], T = case.T,
                       checkpoint = path, checkpoint_every = 0, progress = false, sample_every = 0 }
    local want = md.schedule.get(case[1], case.T)
    local loaded = md.load(path)
    T.eq(loaded.schedule.T, want.T, "T of schedule " .. i)
    T.near(loaded.schedule.alphas_cumprod, want.alphas_cumprod, 0, "alpha-bar of schedule " .. i)
    local opts = { n = 2, class = 1, steps = 5, seed = 3, progress = false }
    local a = md.sample(loaded, opts)
    opts.schedule = want
    T.near(a, md.sample(loaded, opts), 0, "md.sample uses the stored schedule " .. i)
  end
  T.errors(function()
    md.trainer.train { model = md.nn.UNet(cfg), data = ds, steps = 2, batch_size = 8, schedule = "linear",
                       checkpoint = dir .. "/s1.safetensors", resume = true, progress = false, sample_every = 0 }
  end, "was trained with a cosine schedule of T = 400")
  os.execute("rm -rf " .. dir)
end)

-- Data from N(0, s^2) per pixel have the exact eps(x_t) = sigma x_t / (ab s^2 + 1 - ab),
-- and the probability-flow ODE keeps x_t / sqrt(ab s^2 + 1 - ab) fixed, so
-- the deterministic samplers' end point is known exactly.
T.test("DPM-Solver++ 2M solves the ODE to second order", function()
  local sd, sched = 0.5, md.schedule.linear { T = 1000 }
  local Gauss = md.nn.Module:extend("GaussianEps")
  function Gauss:init() self.config = { in_channels = 1 } end
  function Gauss:forward(x, t)
    local ab = sched.ab[math.tointeger(t[1]) + 1]
    return x * (math.sqrt(1 - ab) / (ab * sd * sd + 1 - ab))
  end
  local model = Gauss()
  local function err(kind, steps)
    local x = md.sample(model, { n = 3, shape = { 1, 4, 4 }, sampler = kind, steps = steps, seed = 5, clip = false, spacing = "linspace",
                                 schedule = sched, progress = false })
    local top = md.schedule.respace(sched, steps)
    local ab_top = top.ab[#top.ab]
    local starts = {}
    for i = 1, 3 do starts[i] = md.Generator(5 + i - 1):randn { 1, 4, 4 } end
    local exact = (md.stack(starts) * (sd / math.sqrt(ab_top * sd * sd + 1 - ab_top))):clamp(-1, 1) -- as md.sample
    return (x - exact):abs():max():item() / exact:abs():max():item()
  end
  -- halving the step: DDIM's error halves (first order), DPM++ 2M's falls about 4x
  local ddim40, ddim80, dpm40, dpm80 = err("ddim", 40), err("ddim", 80), err("dpmpp_2m", 40), err("dpmpp_2m", 80)
  T.truthy(ddim40 / ddim80 > 1.7 and ddim40 / ddim80 < 2.5, ("DDIM first order: %.2e, %.2e"):format(ddim40, ddim80))
  T.truthy(dpm40 / dpm80 > 3, ("DPM++ 2M second order: %.2e at 40 steps, %.2e at 80"):format(dpm40, dpm80))
  T.truthy(dpm80 < ddim80, ("DPM++ 2M %.2e against DDIM %.2e at 80 steps"):format(dpm80, ddim80))
  T.errors(function() md.sample(model, { n = 1, shape = { 1, 4, 4 }, sampler = "dpmpp2m" }) end, "did you mean 'dpmpp_2m'")
end)

T.finish()
