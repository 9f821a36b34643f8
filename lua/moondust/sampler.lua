-- md.sample: the sampling loop over a diffusion's noise levels, batched
-- and without grad, with classifier-free guidance, classifier guidance and
-- the editing hooks (img2img, inpainting); the samplers themselves are one
-- small file each in samplers/ (md.samplers, samplers/init.lua).
--
--   local x, info = md.sample(model, {n = 16, class = 7, steps = 50, sampler = "ddim", guidance = 3, seed = 1})
--   info.nfe: the network evaluations per image (classifier-free guidance
--   evaluates the doubled batch once per evaluation).
--
-- Options: n; class (a number, a class name, a table of n of them, or nil
-- for the model's "no class" input); unconditional (true: the model gets
-- its "no class" input while cond_fn still sees the labels of class);
-- sampler (md.samplers.registry: ddim, ddpm, dpmpp_2m, dpmpp_2m_sde,
-- euler, euler_ancestral, heun, unipc; default the diffusion's: ddim, or heun for
-- EDM); steps (noise levels; default 50, T for DDPM, 18 for Heun);
-- spacing ("linspace", "leading", "trailing", "karras"; default linspace,
-- karras for EDM); eta (the noise of ddim, euler_ancestral, dpmpp_2m_sde);
-- guidance (classifier-free scale w: out = out_u + w (out_c - out_u), both
-- halves in one batch); guidance_rescale (phi in [0, 1], Lin et al. 2024:
-- the guided output's per-image std brought back towards the conditional
-- one's); cond_fn(x, t, y, idx) -> gradient of log p(y | x_t), already
-- scaled (classifier guidance; idx lists the batch's image numbers in 1..n);
-- diffusion (default the model's, md.load restores it; else from schedule,
-- T, prediction); clip (x0 to [-1, 1], default true); dynamic_threshold
-- (a quantile p, e.g. 0.995: x0 clipped to the per-image p-quantile s of
-- |x0| and divided by s when s > 1, Imagen); seed (image i draws from
-- Generator(seed + i - 1), so images do not depend on the batch size);
-- batch_size (64); progress (true); shape ({C, H, W}, default from the
-- model); distributed (under mpirun: every rank samples its share and every
-- rank gets all n). Editing: init (N x C x H x W images to start from) with
-- strength (0..1, default 0.6: how far into the noise they go, img2img); mask (1 where
-- init is known, broadcast over channels) for inpainting with resample
-- (RePaint's jumps: each step repeated r times, default 1). md.edit has the
-- friendlier entry points. Latent diffusion: a model with an autoencoder
-- (md.load restores the one trained with it; or opts.autoencoder) samples
-- latents without clipping and returns them decoded to images, unless
-- decode = false (then the latents, unclamped).
-- A class is a label 0..K-1 or a class name as the data set lists it
-- (model.classes; case and punctuation do not matter: "sneaker", "t-shirt",
-- "ankle boot").
local md = require "moondust"
local options = require "moondust.options"

local sampler = {}

local sample_options = {
  n = "number", class = true, unconditional = "boolean", sampler = "string", steps = "number", spacing = "string",
  eta = "number", guidance = "number", guidance_rescale = "number", cond_fn = "function", diffusion = "table",
  schedule = true, T = "number", prediction = "string", variance = "string", clip = "boolean",
  dynamic_threshold = "number", seed = "number", batch_size = "number", progress = "boolean", shape = "table",
  distributed = "boolean", init = true, strength = "number", mask = true, resample = "number", noise = true,
  autoencoder = "table", decode = "boolean",
}

local function simple(name) return (name:lower():gsub("[^%w]", "")) end

-- A label from a class name, through the names the model was trained with.
local function label_of_name(name, classes, names)
  if not classes then error(("sample: the model is unconditional; it has no class '%s'"):format(name), 4) end
  if not names then
    error(("sample: this model stores no class names; give the class as a label 0 to %d"):format(classes - 1), 4)
  end
  local want, known = simple(name), {}
  for i, c in ipairs(names) do
    if simple(c) == want then return i - 1 end
    for part in c:gmatch("[^/]+") do -- "T-shirt/top" is also "t-shirt"
      if simple(part) == want then return i - 1 end
    end
    known[c] = true
  end
  local near = options.nearest(name, known)
  error(("sample: no class '%s' (classes: %s)%s"):format(name, table.concat(names, ", "),
    near and (" (did you mean '" .. near .. "'?)") or ""), 4)
end

local function check_label(v, classes)
  if not classes then error("sample: the model is unconditional; leave class out", 4) end
  options.integer("sample", "class", v, 0, classes - 1, 3)
  return math.tointeger(v)
end

-- The n labels (a tensor), or nil: class is nil, a label, a name, a list of
-- labels or names, or a tensor.
local function labels_for(opts, n, classes, names)
  local c = opts.class
  if c == nil then return classes and md.full({ n }, classes) or nil end
  if type(c) == "string" then c = label_of_name(c, classes, names) end
  if type(c) == "number" then return md.full({ n }, check_label(c, classes)) end
  if md.is_tensor(c) then
    if c:numel() ~= n then error(("sample: %d class labels for %d images"):format(c:numel(), n), 3) end
    return c
  end
  if type(c) ~= "table" then error("sample: class must be a label, a class name, a list of them or a tensor", 3) end
  if #c ~= n then error(("sample: %d class labels for %d images"):format(#c, n), 3) end
  local labels = {}
  for i, v in ipairs(c) do
    labels[i] = type(v) == "string" and label_of_name(v, classes, names) or check_label(v, classes)
  end
  return md.tensor(labels)
end

-- Per-image standard deviation, N x 1 x 1 x 1.
local function image_std(x)
  local n = x:size(1)
  return x:reshape(n, -1):std(2):reshape(n, 1, 1, 1)
end

-- The network's output at one noise level (model timestep t, alpha-bar
-- ab), with classifier-free guidance on the prediction channels (learned
-- variance channels come from the conditional half) and its rescale.
local function predict(model, d, x, t, ab, y, opts, null_class)
  local n = x:size(1)
  local xin, tt = d:model_input(x, ab), md.full({ n }, t)
  local w = opts.guidance
  if not w or not y or not null_class then return model(xin, tt, y) end
  local both = model(md.cat({ xin, xin }), md.cat({ tt, tt }), md.cat({ y, md.full({ n }, null_class) }))
  local cond, uncond = both:narrow(1, 1, n), both:narrow(1, n + 1, n)
  local C, extra = x:size(2), nil
  if cond:size(2) > C then
    local channels = md.diffusion.channels
    extra = channels(cond, C + 1, cond:size(2) - C)
    cond, uncond = channels(cond, 1, C), channels(uncond, 1, C)
  end
  local out = uncond + (cond - uncond) * w
  local phi = opts.guidance_rescale
  if phi and phi > 0 then
    out = out * (image_std(cond) / image_std(out)) * phi + out * (1 - phi)
  end
  return extra and md.cat({ out, extra }, 2) or out
end

-- Imagen's dynamic thresholding: per image, s = the p-quantile of |x0|;
-- when s > 1, x0 is clipped to [-s, s] and divided by s.
local function dynamic_threshold(x0, p)
  local n = x0:size(1)
  local per = x0:numel() // n
  local values, scale = x0:abs():flat(), {}
  for i = 1, n do
    local row = table.move(values, (i - 1) * per + 1, i * per, 1, {})
    table.sort(row)
    scale[i] = math.max(row[math.max(1, math.ceil(p * per))], 1)
  end
  local s = md.tensor(scale):reshape(n, 1, 1, 1)
  return md.minimum(md.maximum(x0, -s), s) / s
end

-- noise for each image from its own generator
local function draw(gens, shape)
  local parts = {}
  for i, g in ipairs(gens) do parts[i] = g:randn(shape) end
  return md.stack(parts)
end

sampler.predict = predict
sampler.labels_for = labels_for
sampler.dynamic_threshold = dynamic_threshold
sampler.samplers = require "moondust.samplers"
sampler.registry = sampler.samplers.registry

-- {C, H, W} of a model's images: image_size is a number (square) or {H, W};
-- 28 x 28 (Fashion-MNIST) when nothing says otherwise.
function sampler.image_shape(cfg, image_size)
  local s = image_size or cfg.image_size or 28
  local h, w = s, s
  if type(s) == "table" then h, w = s[1], s[2] end
  return { cfg.in_channels or 1, h, w }
end

local function sigma(ab) return ab >= 1 and 0 or math.sqrt((1 - ab) / ab) end

-- Samples one batch: gens holds one generator per image; b the batch's
-- labels (y), image numbers (idx) and, for editing, its init images and
-- mask or starting noise. Returns the images and the network evaluations.
function sampler.sample_batch(model, gens, b, opts)
  local d, plan, shape = opts.diffusion, opts.plan, opts.shape
  local null_class = model.config and model.config.num_classes
  local model_y = (opts.unconditional and null_class) and md.full({ #gens }, null_class) or b.y
  local impl = sampler.samplers[opts.sampler]
  local clip, p = opts.clip ~= false, opts.dynamic_threshold
  local top = opts.top or #plan.ab
  local x = draw(gens, shape)
  if b.noise then x = b.noise end
  if b.init and not b.mask then -- img2img: the images noised to the first level used
    local ab = plan.ab[top]
    x = b.init * math.sqrt(ab) + x * math.sqrt(1 - ab)
  end
  local s = { md = md, opts = opts, clip = clip, nfe = 0, sigma = sigma,
              noise = function() return draw(gens, shape) end }
  -- x0, eps (and the variance channels) of the network at level j
  function s.evaluate(xj, j)
    s.nfe = s.nfe + 1
    local ab = plan.ab[j]
    local out = md.no_grad(predict, model, d, xj, plan.t[j], ab, model_y, opts, null_class)
    local x0, eps, var = d:to_x0_eps(xj, out, ab, clip and not p)
    if p then x0, eps = md.pred_to_x0_eps(xj, dynamic_threshold(x0, p), ab, "x0", false) end
    return x0, eps, var
  end
  -- classifier guidance as a score shift, for the samplers that work in eps:
  -- eps <- eps - sqrt(1 - ab) * grad, then x0 again (-> x0, eps; unchanged without grad)
  function s.shifted()
    if not s.grad then return s.x0, s.eps end
    return md.pred_to_x0_eps(s.x, s.eps - s.grad * math.sqrt(1 - s.ab_t), s.ab_t, "eps", clip)
  end
  local state, bar = {}, opts.bar
  for i = top, 1, -1 do
    local ab_t, ab_prev = plan.ab[i], i > 1 and plan.ab[i - 1] or 1.0
    for r = 1, b.mask and (opts.resample or 1) or 1 do
      s.x, s.i, s.t, s.ab_t, s.ab_prev = x, i, plan.t[i], ab_t, ab_prev
      s.x0, s.eps, s.var = s.evaluate(x, i)
      s.grad = opts.cond_fn and opts.cond_fn(x, md.full({ x:size(1) }, plan.t[i]), b.y, b.idx) or nil
      x = impl.step(state, s)
      if b.mask then
        -- inpainting: the known pixels, noised to the new level (exact at the end)
        local known = b.init * math.sqrt(ab_prev) + s.noise() * math.sqrt(1 - ab_prev)
        x = known * b.mask + x * (-b.mask + 1)
        if r < (opts.resample or 1) then -- RePaint: back up one level and do the step again
          x = x * math.sqrt(ab_t / ab_prev) + s.noise() * math.sqrt(1 - ab_t / ab_prev)
        end
      end
    end
    if bar then bar:update(bar.step_count + 1, { images = 0 }); bar.step_count = bar.step_count + 1 end
  end
  return x, s.nfe
end

-- The diffusion md.sample uses: opts.diffusion, else the model's (md.load
-- restores it), else one built from schedule, T and prediction (these
-- also override the model's schedule and prediction).
local function diffusion_for(model, opts)
  if opts.diffusion then
    if not md.diffusion.is_diffusion(opts.diffusion) then
      error("sample: diffusion must be an md.diffusion{...} or md.diffusion.edm{...}", 3)
    end
    return opts.diffusion
  end
  local base = model.diffusion
  if base and not (opts.schedule or opts.T or opts.prediction) then return base end
  if base and base.family ~= "vp" then
    error("sample: schedule, T and prediction belong to the DDPM family; this model has an EDM diffusion", 3)
  end
  local sched = md.schedule.get(opts.schedule or (base and base.sched) or model.schedule or "linear", opts.T or 1000)
  if opts.T and sched.T ~= opts.T then
    error(("sample: T = %d, but the schedule has T = %d (T only applies to a schedule given by name)"):format(
      opts.T, sched.T), 3)
  end
  local ok, d = pcall(md.diffusion, { schedule = sched, prediction = opts.prediction or (base and base.prediction)
                                        or model.prediction, variance = base and base.variance })
  if not ok then error("sample: " .. tostring(d):gsub("^diffusion: ", ""), 3) end
  return d
end

-- A tensor option of n images (init, noise) or a mask, checked against the shape.
local function images_option(name, v, n, shape, channels_free)
  if v == nil then return nil end
  if not md.is_tensor(v) or v:dim() ~= 4 then error(("sample: %s must be an N x C x H x W tensor"):format(name), 3) end
  local s = v:shape()
  local want_c = channels_free and s[2] == 1 and 1 or shape[1]
  if s[1] ~= n or s[2] ~= want_c or s[3] ~= shape[2] or s[4] ~= shape[3] then
    error(("sample: %s has shape [%s], expected [%d, %d, %d, %d]"):format(name, table.concat(s, ", "), n, shape[1],
      shape[2], shape[3]), 3)
  end
  return v
end

-- The sampler's own spacing (the DPM-Solver++ ones take Karras sigmas:
-- their multistep updates lose accuracy when neighbouring steps in log
-- sigma differ as much as linspace's do near the data), where the
-- schedule allows it, else the diffusion's.
local function default_spacing(d, impl)
  local karras_ok = not (d.sched and d.sched.ab[d.T] == 0)
  return (impl.default_spacing and (impl.default_spacing ~= "karras" or karras_ok)) and impl.default_spacing
    or d.default_spacing
end

function sampler.sample(model, opts)
  local callable = type(model) == "table" and getmetatable(model) and getmetatable(model).__call
  if not (md.nn.Module.is_module(model) or (callable and type(model.eval) == "function")) then
    error(("sample: expected a model, got a %s (md.load gives a model for a checkpoint with a model config)")
      :format(md.is_tensor(model) and "tensor" or type(model)), 2)
  end
  if opts ~= nil and type(opts) ~= "table" then
    error(("sample: expected an options table, got a %s (md.sample(model, {n = 5}))"):format(type(opts)), 2)
  end
  opts = options.check("sample", opts, sample_options)
  local n = options.integer("sample", "n", opts.n, 1) or (md.is_tensor(opts.init) and opts.init:size(1))
    or (md.is_tensor(opts.noise) and opts.noise:size(1)) or 16
  local cfg = model.config or {}
  local d = diffusion_for(model, opts)
  local kind = opts.sampler or d.default_sampler
  options.choice("sample", "sampler", kind, sampler.registry)
  local impl = sampler.samplers[kind]
  options.choice("sample", "prediction", opts.prediction, { "eps", "x0", "v" })
  options.choice("sample", "variance", opts.variance, { "small", "large" })
  options.choice("sample", "spacing", opts.spacing, { "linspace", "leading", "trailing", "karras", "even", "ddim" })
  options.number("sample", "eta", opts.eta, 0)
  options.number("sample", "guidance", opts.guidance, 0)
  options.number("sample", "guidance_rescale", opts.guidance_rescale, 0, 1)
  options.number("sample", "dynamic_threshold", opts.dynamic_threshold, 0.5, 1)
  options.number("sample", "strength", opts.strength, 0, 1)
  options.integer("sample", "resample", opts.resample, 1, 100)
  options.integer("sample", "seed", opts.seed)
  options.integer("sample", "batch_size", opts.batch_size, 1)
  -- options that only some samplers read are errors elsewhere, not ignored
  if opts.eta ~= nil and not impl.eta then
    local with = {}
    for _, name in ipairs(sampler.registry) do if sampler.samplers[name].eta then with[#with + 1] = name end end
    error(("sample: eta is DDIM's (and %s's); the %s sampler has none"):format(table.concat(with, ", ", 2), kind), 2)
  end
  if opts.variance ~= nil and kind ~= "ddpm" then
    error(("sample: variance is DDPM's; the %s sampler has none"):format(kind), 2)
  end
  if opts.guidance and not cfg.num_classes then
    error("sample: guidance (classifier-free) needs a model with a class input; this one has none", 2)
  end
  if opts.guidance and opts.class == nil then
    error("sample: guidance needs a class: without one both halves are the model's \"no class\" output", 2)
  end
  if opts.unconditional and not cfg.num_classes then error("sample: unconditional: the model has no class input", 2) end
  if opts.unconditional and opts.guidance then error("sample: guidance (classifier-free) needs the class input; drop unconditional", 2) end
  if opts.unconditional and opts.class ~= nil and not opts.cond_fn then
    error("sample: with unconditional the class goes only to cond_fn; give cond_fn or drop class", 2)
  end
  if opts.strength and not opts.init then error("sample: strength needs init (the images to start from)", 2) end
  if opts.strength and opts.mask then error("sample: strength is img2img's; inpainting (mask) starts from noise", 2) end
  if (opts.mask or opts.resample) and not (opts.mask and opts.init) then
    error("sample: inpainting needs init (the images) and mask (1 where they are known)", 2)
  end
  if opts.resample and opts.resample > 1 and impl.multistep then
    error(("sample: resample repeats each step; the %s sampler is multistep (use ddim, ddpm or euler)"):format(kind), 2)
  end
  if opts.variance ~= nil and d.variance == "learned_range" then
    error("sample: the model learned its variance (variance = \"learned_range\"); variance cannot override it", 2)
  end
  local T = d:num_timesteps()
  local default_steps = kind == "ddpm" and d.family == "vp" and T or impl.default_steps or 50
  local steps = options.integer("sample", "steps", opts.steps, 1, T) or default_steps
  local ae = opts.autoencoder or model.autoencoder
  if opts.decode ~= nil and not ae then error("sample: decode is latent diffusion's; this model has no autoencoder", 2) end
  if ae and not (type(ae.decode) == "function" and type(ae.latent_shape) == "function") then
    error("sample: autoencoder must be an md.autoencoder.AutoencoderKL", 2)
  end
  if ae and opts.mask then error("sample: inpainting a latent diffusion model is not supported (the mask is in pixels)", 2) end
  local init_images = opts.init
  if ae and md.is_tensor(init_images) and init_images:dim() == 4 and init_images:size(2) == ae.config.in_channels
    and init_images:size(3) == ae.height and init_images:size(4) == ae.width then
    init_images = ae:encode(init_images) -- img2img starts from the images' latents
  end
  local given = md.is_tensor(init_images) and init_images or md.is_tensor(opts.noise) and opts.noise or nil
  local shape = opts.shape or (given and given:dim() == 4 and { given:size(2), given:size(3), given:size(4) })
    or sampler.image_shape(cfg, model.image_size)
  if ae then
    local want = ae:latent_shape()
    if shape[1] ~= want[1] or shape[2] ~= want[2] or shape[3] ~= want[3] then
      error(("sample: the model samples %dx%dx%d, its autoencoder decodes %dx%dx%d latents"):format(shape[1], shape[2],
        shape[3], want[1], want[2], want[3]), 2)
    end
  end
  local o = setmetatable({ diffusion = d, sampler = kind, shape = shape,
                           plan = d:plan(steps, opts.spacing or default_spacing(d, impl)) }, { __index = opts })
  if ae and opts.clip == nil then o.clip = false end -- latents are not bounded by [-1, 1]
  if impl.ve and o.plan.ab[#o.plan.ab] == 0 then
    error(("sample: the %s sampler works in sigma, which is infinite at zero terminal SNR; "
      .. "use ddim, ddpm, euler or dpmpp_2m"):format(kind), 2)
  end
  if opts.init and not opts.mask then o.top = math.max(1, math.floor((opts.strength or 0.6) * #o.plan.ab + 0.5)) end
  local init = images_option("init", init_images, n, shape)
  local mask = images_option("mask", opts.mask, n, shape, true)
  local start = images_option("noise", opts.noise, n, shape)
  local null_class = cfg.num_classes
  local y_all = labels_for(opts, n, null_class, model.classes)
  local bs = opts.batch_size or 64
  local seed = opts.seed or 1
  local was_training = model.training
  model:eval()
  if opts.progress ~= false then
    o.bar = md.progress.new { total = (o.top or #o.plan.ab) * (mask and (opts.resample or 1) or 1) * math.ceil(n / bs),
                              label = kind .. "-" .. #o.plan.ab }
    o.bar.step_count = 0
  end
  -- this process's images: all n, or its rank's share of them
  local first, count = 1, n
  if opts.distributed then first, count = md.dist.shard(n) end
  local out, nfe = {}, 0
  -- the model goes back to training mode even when sampling stops (an error, Ctrl-C)
  local ok, err = pcall(function()
    for start_i = first, first + count - 1, bs do
      local k = math.min(bs, first + count - start_i)
      local gens, idx = {}, {}
      for i = 1, k do gens[i], idx[i] = md.Generator(seed + start_i + i - 2), start_i + i - 1 end
      local function rows(t) return t and t:narrow(1, start_i, k) or nil end
      local b = { y = rows(y_all), idx = idx, init = rows(init), mask = rows(mask), noise = rows(start) }
      out[#out + 1], nfe = sampler.sample_batch(model, gens, b, o)
    end
  end)
  if o.bar then o.bar:finish() end
  if was_training then model:train() end
  if not ok then error(err, 0) end
  local x = #out == 1 and out[1] or #out == 0 and md.zeros { 0, shape[1], shape[2], shape[3] } or md.cat(out, 1)
  if opts.distributed then x = md.dist.all_gather(x) end
  local info = { nfe = nfe, steps = #o.plan.ab, sampler = kind, diffusion = d }
  if ae then
    if opts.decode == false then return x, info end
    return ae:decode(x), info
  end
  return x:clamp(-1, 1), info
end

return sampler
