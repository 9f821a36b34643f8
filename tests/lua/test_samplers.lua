-- Every sampler against data whose exact denoiser is known: per-pixel
-- Gaussian data x0 ~ N(mu, s^2). At alpha-bar ab, E[x0 | x_t] = mu + s^2
-- sqrt(ab) (x_t - sqrt(ab) mu) / (ab s^2 + 1 - ab), and the probability-flow
-- ODE maps the starting noise z to mu + s z (up to the tiny signal left at
-- the top level), so deterministic samplers have an exact end point and
-- stochastic ones an exact distribution.
local T = require "harness"
local md = require "moondust"

local H = 4
local mus, sds = {}, {}
for i = 0, H * H - 1 do mus[i + 1], sds[i + 1] = -0.2 + 0.4 * i / 15, 0.1 + 0.1 * i / 15 end
local mu, sd = md.tensor(mus):reshape(1, 1, H, H), md.tensor(sds):reshape(1, 1, H, H)

-- E[x0 | x] at alpha-bar ab (x in the samplers' ab-scaled form)
local function posterior_x0(x, ab)
  local sa = math.sqrt(ab)
  return mu + sd * sd * sa * (x - mu * sa) / (sd * sd * ab + (1 - ab))
end

-- A "network" for a DDPM-family diffusion d: the exact eps, x0 or v.
local function exact_vp(d, classes)
  local M = md.nn.Module:extend("ExactGaussian")
  function M:init() self.config = { in_channels = 1, num_classes = classes } end
  function M:forward(x, t)
    local ab = d:alpha_bar(t[1])
    local x0 = posterior_x0(x, ab)
    if d.prediction == "x0" then return x0 end
    local eps = ab < 1 and (x - x0 * math.sqrt(ab)) * (1 / math.sqrt(1 - ab)) or md.zeros_like(x)
    if d.prediction == "v" then return eps * math.sqrt(ab) - x0 * math.sqrt(1 - ab) end
    return eps
  end
  local m = M()
  md.diffusion.attach(m, d)
  return m
end

-- The EDM network F for the exact denoiser, through EDM's preconditioning.
local function exact_edm(d)
  local M = md.nn.Module:extend("ExactGaussianEDM")
  function M:init() self.config = { in_channels = 1 } end
  function M:forward(xin, t)
    local ab = d:alpha_bar(t[1])
    local sigma = math.sqrt((1 - ab) / ab)
    local sd2 = d.sigma_data ^ 2
    local cskip, cout, cin = sd2 / (sigma ^ 2 + sd2), sigma * d.sigma_data / math.sqrt(sigma ^ 2 + sd2),
      1 / math.sqrt(sigma ^ 2 + sd2)
    local x = xin * (1 / cin) -- x_edm
    local D = posterior_x0(x * math.sqrt(ab), ab)
    return (D - x * cskip) * (1 / cout)
  end
  local m = M()
  md.diffusion.attach(m, d)
  return m
end

local N = 64
local function starts(seed, n)
  local z = {}
  for i = 1, n do z[i] = md.Generator(seed + i - 1):randn { 1, H, H } end
  return md.stack(z)
end

-- the end point of the ODE for the starting noise at the top level ab_top
local function ode_end(z, ab_top)
  local sa = math.sqrt(ab_top)
  -- x_top = z; its standardised value (x - sqrt(ab) mu) / sqrt(ab s^2 + 1 - ab) is kept by the flow
  return (mu + sd * (z - mu * sa) / (sd * sd * ab_top + (1 - ab_top)):sqrt()):clamp(-1, 1) -- as md.sample
end

local function sample(m, opts)
  opts.n, opts.shape, opts.seed, opts.clip, opts.progress = opts.n or N, { 1, H, H }, 3, false, false
  return md.sample(m, opts)
end

local function ode_error(m, sampler, steps, spacing)
  local x, info = sample(m, { sampler = sampler, steps = steps, spacing = spacing })
  local top = m.diffusion:plan(steps, spacing or m.diffusion.default_spacing).ab[steps]
  local e = x - ode_end(starts(3, N), top)
  return math.sqrt((e * e):mean():item()), info.nfe -- RMS
end

T.test("deterministic samplers converge to the ODE's end point; higher order needs fewer evaluations", function()
  local m = exact_vp(md.diffusion { schedule = "linear" })
  local errs = {}
  for _, kind in ipairs { "ddim", "euler", "heun", "dpmpp_2m", "unipc" } do
    for _, steps in ipairs { 10, 20, 40, 80, 160 } do errs[kind .. steps] = ode_error(m, kind, steps, "karras") end
  end
  for _, kind in ipairs { "ddim", "heun" } do
    for _, steps in ipairs { 20, 40, 80, 160 } do
      T.truthy(errs[kind .. steps] < errs[kind .. steps // 2], ("%s: error %.3g at %d steps, %.3g at %d"):format(kind,
        errs[kind .. steps], steps, errs[kind .. steps // 2], steps // 2))
    end
  end
  T.near(errs.ddim20, errs.euler20, 1e-5, "Euler and DDIM (eta 0) are one update")
  for kind, e in pairs(errs) do
    if kind:match("160$") then T.truthy(e < 0.01, ("%s: RMS error %.3g"):format(kind, e)) end
  end
  -- RMS error 0.005: Heun within 79 evaluations (40 steps), DPM++ 2M within 40; DDIM not within 80
  local _, nfe = ode_error(m, "heun", 40, "karras")
  T.eq(nfe, 79, "Heun's evaluations")
  T.truthy(errs.heun40 < 0.005 and errs.dpmpp_2m40 < 0.005 and errs.ddim80 > 0.005,
    ("at 0.005: Heun %.3g (79 NFE), DPM++ 2M %.3g (40), DDIM %.3g (80)"):format(errs.heun40, errs.dpmpp_2m40,
      errs.ddim80))
  -- UniPC's corrector: the same evaluations as DPM++ 2M, a smaller error
  T.truthy(errs.unipc40 * 1.5 < errs.dpmpp_2m40, ("UniPC %.3g against DPM++ 2M %.3g at 40"):format(errs.unipc40,
    errs.dpmpp_2m40))
end)

T.test("stochastic samplers reach the data's mean and variance", function()
  local m = exact_vp(md.diffusion { schedule = "linear", prediction = "v" })
  local n = 2000
  for _, case in ipairs { { "ddpm", 1000 }, { "euler_ancestral", 200, "karras" }, { "dpmpp_2m_sde", 100 } } do
    local kind = case[1]
    local x = sample(m, { sampler = kind, steps = case[2], n = n, batch_size = n, spacing = case[3] })
    local mean, ratio = x:mean(1), x:var(1) / (sd * sd)
    local dm = (mean - mu):abs():max():item()
    local dv, worst = (ratio - 1):mean():item(), (ratio - 1):abs():max():item()
    T.truthy(dm < 0.03, ("%s: mean off by %.3f"):format(kind, dm))
    -- (DDPM's Gaussian steps keep a small deficit even at T steps: about 4% here)
    T.truthy(math.abs(dv) < 0.07 and worst < 0.15, ("%s: variance off by %.1f%% (worst pixel %.1f%%)"):format(kind,
      100 * dv, 100 * worst))
  end
end)

T.test("EDM: Heun on Karras sigmas reaches the end point with the preconditioned network", function()
  local d = md.diffusion.edm {}
  local m = exact_edm(d)
  local e10 = ode_error(m, "heun", 10)
  local e30 = ode_error(m, "heun", 30)
  T.truthy(e30 * 4 < e10 and e30 < 0.005, ("EDM Heun: RMS error %.3g at 10 steps, %.3g at 30"):format(e10, e30))
  local _, info = sample(m, { n = 2 })
  T.eq(info.sampler, "heun", "EDM's default sampler")
  T.eq(info.nfe, 35, "18 Heun steps")
  T.errors(function() sample(m, { spacing = "linspace" }) end, "karras")
end)

T.test("zero terminal SNR: trained on pure noise at T, sampled with v", function()
  local d = md.diffusion { schedule = "linear", prediction = "v", zero_terminal_snr = true }
  T.eq(d.sched.ab[d.T], 0)
  T.near(d.sched.ab[1], md.schedule.linear {}.ab[1], 1e-12, "alpha-bar at t = 0 is kept")
  local m = exact_vp(d)
  for _, kind in ipairs { "ddim", "dpmpp_2m" } do
    local x = sample(m, { sampler = kind, steps = 100, spacing = "trailing" })
    local e = x - ode_end(starts(3, N), 0)
    local err = math.sqrt((e * e):mean():item())
    T.truthy(err < 0.03, ("%s from pure noise: error %.3g"):format(kind, err))
  end
  T.errors(function() md.diffusion { prediction = "eps", zero_terminal_snr = true } end, "use prediction v or x0")
  T.errors(function() sample(m, { sampler = "heun", spacing = "trailing" }) end, "infinite at zero terminal SNR")
  T.errors(function() sample(m, { sampler = "ddim", spacing = "karras" }) end, "finite largest sigma")
end)

T.test("timestep spacings list the model timesteps diffusers does", function()
  local d = md.diffusion {}
  T.near(d:plan(10, "leading").t, { 0, 100, 200, 300, 400, 500, 600, 700, 800, 900 }, 0)
  T.near(d:plan(10, "trailing").t, { 99, 199, 299, 399, 499, 599, 699, 799, 899, 999 }, 0)
  T.near(d:plan(4, "linspace").t, { 0, 333, 666, 999 }, 0)
  local k = d:plan(5, "karras")
  T.near(k.t[1], 0, 1e-9, "Karras ends at the smallest sigma")
  T.near(k.t[5], 999, 1e-9, "and starts at the largest")
  for i = 1, 5 do T.near(d:alpha_bar(k.t[i]), k.ab[i], 1e-9, "alpha_bar inverts the timestep of a Karras level") end
end)

-- A conditional stand-in whose conditional and unconditional outputs differ.
local function two_headed()
  local M = md.nn.Module:extend("TwoHeaded")
  function M:init() self.config = { in_channels = 1, num_classes = 3 } end
  function M:forward(x, t, y)
    self.seen = y
    local cond = y:ne(3):reshape(-1, 1, 1, 1)
    return x * 0.1 + cond * (x * 0.3 + 0.2)
  end
  local m = M()
  md.diffusion.attach(m, md.diffusion {})
  return m
end

T.test("guidance rescale, dynamic thresholding, cond_fn with image numbers, unconditional", function()
  local m = two_headed()
  local base = { class = 1, steps = 5, n = 3 }
  local function with(extra) local o = {} for k, v in pairs(base) do o[k] = v end for k, v in pairs(extra) do o[k] = v end return o end
  T.near(sample(m, with { guidance = 4, guidance_rescale = 0 }), sample(m, with { guidance = 4 }), 0, "phi = 0 is plain CFG")
  T.truthy((sample(m, with { guidance = 4, guidance_rescale = 0.7 }) - sample(m, with { guidance = 4 })):abs():max():item() > 1e-4,
    "rescale changes the samples")
  -- the rescaled output has the conditional output's per-image std (phi = 1)
  local x = md.randn { 2, 1, H, H }
  local out = md.sampler.predict(m, m.diffusion, x, 500, m.diffusion.sched.ab[501], md.tensor { 1, 1 },
                                 { guidance = 4, guidance_rescale = 1 }, 3)
  local cond = m(x, md.full({ 2 }, 500), md.tensor { 1, 1 })
  T.near(out:reshape(2, -1):std(2), cond:reshape(2, -1):std(2), 1e-4)
  -- dynamic thresholding: a per-image quantile s > 1 scales x0 into [-1, 1]
  local x0 = md.tensor { { 0.5, -3, 2, 0.1 }, { 0.2, 0.3, -0.4, 0.5 } }:reshape(2, 1, 2, 2)
  local th = md.sampler.dynamic_threshold(x0, 0.75)
  T.near(th, md.tensor { { 0.25, -1, 1, 0.05 }, { 0.2, 0.3, -0.4, 0.5 } }:reshape(2, 1, 2, 2), 1e-6)
  T.truthy(sample(m, with { dynamic_threshold = 0.9, guidance = 8 }):abs():max():item() <= 1)
  -- cond_fn is told which images it sees
  local seen = {}
  sample(m, with { n = 5, batch_size = 2, cond_fn = function(xb, t, y, idx)
    for i, v in ipairs(idx) do seen[v] = (seen[v] or 0) + 1; T.eq(y[i], 1) end
    return md.zeros_like(xb)
  end })
  for i = 1, 5 do T.eq(seen[i], 5, "image " .. i .. " in every step") end
  -- unconditional: the model gets "no class", cond_fn the labels
  sample(m, with { unconditional = true, cond_fn = function(xb, t, y) T.eq(y[1], 1); return md.zeros_like(xb) end })
  T.eq(m.seen[1], 3, "the model saw its null class")
  T.errors(function() sample(m, with { unconditional = true, guidance = 2 }) end, "drop unconditional")
  T.errors(function() sample(m, with { unconditional = true }) end, "give cond_fn or drop class")
  T.errors(function() sample(m, { n = 2, guidance = 3 }) end, "guidance needs a class")
  T.errors(function() sample(exact_vp(md.diffusion {}), { n = 2, class = 1, guidance = 3 }) end,
    "needs a model with a class input")
end)

T.test("every sampler keeps the seed-per-image rule and reports its evaluations", function()
  local m = exact_vp(md.diffusion {})
  for _, kind in ipairs(md.samplers.registry) do
    local a, info = sample(m, { sampler = kind, steps = 6, n = 5, batch_size = 2 })
    local b = sample(m, { sampler = kind, steps = 6, n = 5, batch_size = 5 })
    T.near(a, b, 1e-6, kind .. ": batch size does not change the images")
    T.eq(info.nfe, kind == "heun" and 11 or 6, kind .. " NFE")
  end
  T.errors(function() sample(m, { sampler = "heun", eta = 1 }) end, "eta is DDIM's")
end)

T.test("inpainting keeps the known pixels; img2img and DDIM inversion", function()
  local m = exact_vp(md.diffusion { schedule = "cosine" })
  local img = (mu + sd * md.Generator(9):randn { 4, 1, H, H }):clamp(-1, 1)
  local left = {}
  for i = 1, 4 * H * H do left[i] = ((i - 1) % H < 2) and 1 or 0 end
  local mask = md.tensor(left):reshape(4, 1, H, H)
  for _, r in ipairs { 1, 3 } do
    local out = md.edit.inpaint(m, img, mask, { steps = 10, seed = 2, progress = false, resample = r, sampler = "ddpm" })
    T.near(out * mask, img * mask, 1e-6, "known pixels unchanged, resample " .. r)
    T.truthy(((out - img) * (-mask + 1)):abs():max():item() > 1e-3, "the unknown ones are sampled")
  end
  T.errors(function() md.edit.inpaint(m, img, mask, { resample = 2, sampler = "dpmpp_2m", progress = false }) end,
    "multistep")
  T.errors(function() md.edit.inpaint(m, img, mask, { strength = 0.5, progress = false }) end, "strength is img2img's")
  -- img2img: a small strength stays near the image, strength 1 does not
  local near = md.edit.img2img(m, img, { strength = 0.1, steps = 20, progress = false, seed = 4 })
  local far = md.edit.img2img(m, img, { strength = 1, steps = 20, progress = false, seed = 4 })
  local dn, df = (near - img):abs():mean():item(), (far - img):abs():mean():item()
  T.truthy(dn < 0.07 and df > 2 * dn, ("img2img: %.3f from the image at strength 0.1, %.3f at 1"):format(dn, df))
  -- DDIM inversion, then DDIM from the found noise, gives the images back
  local z = md.edit.invert(m, img, { steps = 100, progress = false })
  local back = md.sample(m, { noise = z, steps = 100, clip = false, progress = false })
  local function rms(e) return math.sqrt((e * e):mean():item()) end
  local err, other = rms(back - img), rms(md.sample(m, { n = 4, steps = 100, clip = false, progress = false, shape = { 1, H, H } }) - img)
  T.truthy(err < 0.02 and other > 10 * err, ("DDIM inversion round trip: RMS %.3g (another sample: %.3g)"):format(err,
    other))
  -- slerp keeps the ends and the norm of Gaussian noise
  local a, b = md.Generator(1):randn { 1, 1, 8, 8 }, md.Generator(2):randn { 1, 1, 8, 8 }
  T.near(md.edit.slerp(a, b, 0), a, 1e-5)
  T.near(md.edit.slerp(a, b, 1), b, 1e-5)
  local mid = md.edit.slerp(a, b, 0.5)
  local na, nb, nm = (a * a):sum():sqrt():item(), (b * b):sum():sqrt():item(), (mid * mid):sum():sqrt():item()
  T.truthy(math.abs(nm - (na + nb) / 2) < 0.15 * na, "slerp keeps about the norm")
  local frames = md.edit.interpolate(m, md.Generator(1):randn { 1, 1, H, H }, md.Generator(2):randn { 1, 1, H, H },
                                     { n = 4, steps = 10, progress = false })
  T.eq(frames:size(1), 4)
end)

T.test("DDPM with learned variance: v = -1 is the posterior's variance, v = 1 is beta's", function()
  local base = exact_vp(md.diffusion { schedule = "cosine", T = 200 })
  for _, v in ipairs { -1, 1 } do
    local d = md.diffusion { schedule = "cosine", T = 200, variance = "learned_range" }
    local Learned = md.nn.Module:extend("LearnedVar")
    function Learned:init() self.config = { in_channels = 1 } end
    function Learned:forward(x, t) return md.cat({ base(x, t), md.full(x:shape(), v) }, 2) end
    local m = md.diffusion.attach(Learned(), d)
    local learned = sample(m, { sampler = "ddpm", steps = 20, n = 6 })
    local fixed = sample(base, { sampler = "ddpm", steps = 20, n = 6, variance = v < 0 and "small" or "large" })
    T.near(learned, fixed, 1e-4, "v = " .. v)
    T.errors(function() sample(m, { sampler = "ddpm", steps = 2, variance = "large" }) end, "learned its variance")
  end
end)

T.test("the CLI: img2img, inpaint, every sampler and spacing; train's objective flags are checked", function()
  local cli = require "moondust.cli"
  local dir = os.tmpname(); os.remove(dir); md.core.mkdir_p(dir)
  local ck = "lua/moondust/assets/fashion_model.safetensors"
  local img = md.data.fashion_mnist { split = "test", limit = 1 }.images[1]
  md.image.save(img, dir .. "/in.png")
  local left = {}
  for i = 1, 28 * 28 do left[i] = ((i - 1) % 28 < 14) and 1 or -1 end
  md.image.save(md.tensor(left):reshape(1, 28, 28), dir .. "/mask.png")
  local quiet = io.output()
  io.output(dir .. "/stdout.txt")
  local st1 = cli.run { "img2img", "--checkpoint", ck, "--input", dir .. "/in.png", "--out", dir .. "/a.png", "--n", "2",
                        "--steps", "4", "--strength", "0.5", "--class", "Ankle boot" }
  local st2 = cli.run { "inpaint", "--checkpoint", ck, "--input", dir .. "/in.png", "--mask", dir .. "/mask.png",
                        "--out", dir .. "/b.png", "--n", "2", "--steps", "4", "--sampler", "ddpm" }
  local st3 = cli.run { "sample", "--checkpoint", ck, "--n", "2", "--class", "1", "--steps", "3", "--sampler",
                        "dpmpp_2m_sde", "--spacing", "karras", "--out", dir .. "/c.png", "--guidance-rescale", "0.5" }
  io.output():close()
  io.output(quiet)
  T.eq(st1, 0, "img2img")
  T.eq(st2, 0, "inpaint")
  T.eq(st3, 0, "sample")
  local grid = md.image.load(dir .. "/b.png")
  T.eq(grid:size(3), 3 * 28 + 4 * 2, "the input and two results in a row") -- save_grid's 2-pixel padding
  -- the known (left) half of each result is the input's; the right half is not
  local px, W = grid:flat(), grid:size(3)
  local same, differ = true, false
  for y = 3, 30 do
    for x = 1, 14 do
      for tile = 1, 2 do
        local a, b = px[(y - 1) * W + 2 + x], px[(y - 1) * W + 2 + tile * 30 + x]
        if a ~= b then same = false end
        if px[(y - 1) * W + 16 + x] ~= px[(y - 1) * W + 16 + tile * 30 + x] then differ = true end
      end
    end
  end
  T.truthy(same, "inpainting kept the left half")
  T.truthy(differ, "and sampled the right half")
  local err = io.stderr
  io.stderr = io.open(dir .. "/stderr.txt", "w")
  local st4 = cli.run { "train", "--edm", "--min-snr-gamma", "5", "--steps", "1" }
  local st5 = cli.run { "sample", "--spacing", "karas" }
  io.stderr:close()
  io.stderr = err
  T.eq(st4, 1, "--edm with a DDPM-family flag fails")
  T.eq(st5, 2)
  local msgs = io.open(dir .. "/stderr.txt"):read("a")
  T.truthy(msgs:find("--min-snr-gamma belongs to the DDPM family", 1, true), msgs)
  T.truthy(msgs:find("did you mean 'karras'", 1, true), msgs)
  os.execute("rm -rf '" .. dir .. "'")
end)

T.finish()
