-- Samplers (DDIM, DDPM, DPM-Solver++ 2M; a registry below) over the C step kernels, batched and
-- without grad, with classifier-free guidance and classifier guidance.
--
--   md.sample(model, {n = 16, class = 7, steps = 50, sampler = "ddim", guidance = 3, seed = 1})
--
-- Options: n; class (a number, a table of n labels, or nil for the model's
-- "no class" input); sampler "ddim" (default), "ddpm" or "dpmpp_2m"
-- (md.sampler.registry; one file each in samplers/); steps (default 50
-- for DDIM, T for DDPM); eta (DDIM noise, default 0); guidance (classifier-
-- free scale w: eps = eps_u + w (eps_c - eps_u), both halves in one batch);
-- cond_fn(x, t, y) -> gradient of log p(y | x_t), already scaled (classifier
-- guidance); schedule (default: the model's, else linear T = 1000);
-- prediction "eps" | "x0" | "v"; variance "small" | "large" (DDPM); clip
-- (x0 to [-1, 1], default true); seed (image i draws from Generator(seed +
-- i - 1), so images do not depend on the batch size); batch_size (default
-- 64); progress (default true); shape ({C, H, W}, default from the model);
-- distributed (under mpirun: every rank samples its share of the n images
-- and every rank gets all n, the same images as one process gives).
-- A class is a label 0..K-1 or a class name as the data set lists it
-- (model.classes; case and punctuation do not matter: "sneaker", "t-shirt",
-- "ankle boot").
local md = require "moondust"
local options = require "moondust.options"

local sampler = {}

local sample_options = {
  n = "number", class = true, sampler = "string", steps = "number", eta = "number", guidance = "number",
  cond_fn = "function", schedule = true, T = "number", prediction = "string", variance = "string",
  clip = "boolean", seed = "number", batch_size = "number", progress = "boolean", shape = "table",
  distributed = "boolean",
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

-- Model output -> eps, with classifier-free guidance when asked.
local function predict(model, x, t, y, opts, null_class)
  local n = x:size(1)
  local tt = md.full({ n }, t)
  local w = opts.guidance
  if not w or not y or not null_class then return model(x, tt, y) end
  local both = model(md.cat({ x, x }), md.cat({ tt, tt }), md.cat({ y, md.full({ n }, null_class) }))
  local cond, uncond = both:narrow(1, 1, n), both:narrow(1, n + 1, n)
  return uncond + (cond - uncond) * w
end

-- noise for each image from its own generator
local function draw(gens, shape)
  local parts = {}
  for i, g in ipairs(gens) do parts[i] = g:randn(shape) end
  return md.stack(parts)
end

-- The samplers by name, one file each under lua/moondust/samplers/. Adding
-- one: write samplers/NAME.lua returning {step = function(state, s) ... end}
-- (see samplers/ddim.lua for what s holds) and add NAME here; the loop
-- below does the model calls, guidance and the x0 / eps conversion.
sampler.registry = { "ddim", "ddpm", "dpmpp_2m" }
sampler.samplers = setmetatable({}, { __index = function(t, name)
  for _, known in ipairs(sampler.registry) do
    if known == name then
      local impl = require("moondust.samplers." .. name)
      rawset(t, name, impl)
      return impl
    end
  end
end })

-- Samples one batch; gens holds one generator per image.
-- {C, H, W} of a model's images: image_size is a number (square) or {H, W};
-- 28 x 28 (Fashion-MNIST) when nothing says otherwise.
function sampler.image_shape(cfg, image_size)
  local s = image_size or cfg.image_size or 28
  local h, w = s, s
  if type(s) == "table" then h, w = s[1], s[2] end
  return { cfg.in_channels or 1, h, w }
end

function sampler.sample_batch(model, gens, y, opts)
  local sched = opts.sched
  local null_class = model.config and model.config.num_classes
  local shape = opts.shape
  local x = draw(gens, shape)
  local ts, ab = sched.timesteps, sched.ab
  local impl = sampler.samplers[opts.sampler or "ddim"]
  local clip = opts.clip ~= false
  local bar = opts.bar
  local state = {}
  local s = { md = md, opts = opts, clip = clip, noise = function() return draw(gens, shape) end }
  -- classifier guidance as a score shift, for the samplers that work in eps:
  -- eps <- eps - sqrt(1 - ab) * grad, then x0 again (-> x0, eps; unchanged without grad)
  function s.shifted()
    if not s.grad then return s.x0, s.eps end
    return md.pred_to_x0_eps(s.x, s.eps - s.grad * math.sqrt(1 - s.ab_t), s.ab_t, "eps", clip)
  end
  for i = #ts, 1, -1 do
    local t, ab_t, ab_prev = ts[i], ab[i], i > 1 and ab[i - 1] or 1.0
    local out = md.no_grad(predict, model, x, t, y, opts, null_class)
    local x0, eps = md.pred_to_x0_eps(x, out, ab_t, opts.prediction or "eps", clip)
    s.x, s.x0, s.eps, s.i, s.ab_t, s.ab_prev = x, x0, eps, i, ab_t, ab_prev
    s.grad = opts.cond_fn and opts.cond_fn(x, md.full({ x:size(1) }, t), y) or nil
    x = impl.step(state, s)
    if bar then bar:update(bar.step_count + 1, { images = 0 }); bar.step_count = bar.step_count + 1 end
  end
  return x
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
  local n = options.integer("sample", "n", opts.n, 1) or 16
  local cfg = model.config or {}
  local kind = opts.sampler or "ddim"
  options.choice("sample", "sampler", kind, sampler.registry)
  options.choice("sample", "prediction", opts.prediction, { "eps", "x0", "v" })
  options.choice("sample", "variance", opts.variance, { "small", "large" })
  options.number("sample", "eta", opts.eta, 0)
  options.number("sample", "guidance", opts.guidance, 0)
  options.integer("sample", "seed", opts.seed)
  options.integer("sample", "batch_size", opts.batch_size, 1)
  -- options that only one sampler reads are errors elsewhere, not ignored
  if opts.eta ~= nil and kind ~= "ddim" then error(("sample: eta is DDIM's; the %s sampler has none"):format(kind), 2) end
  if opts.variance ~= nil and kind ~= "ddpm" then
    error(("sample: variance is DDPM's; the %s sampler has none"):format(kind), 2)
  end
  local base = md.schedule.get(opts.schedule or model.schedule or "linear", opts.T or 1000)
  if opts.T and base.T ~= opts.T then
    error(("sample: T = %d, but the schedule has T = %d (T only applies to a schedule given by name)"):format(
      opts.T, base.T), 2)
  end
  local steps = options.integer("sample", "steps", opts.steps, 1, base.T) or (kind == "ddpm" and base.T or 50)
  local o = setmetatable({ sched = md.schedule.respace(base, steps),
                           shape = opts.shape or sampler.image_shape(cfg, model.image_size),
                           prediction = opts.prediction or model.prediction },
                         { __index = opts })
  local null_class = cfg.num_classes
  local y_all = labels_for(opts, n, null_class, model.classes)
  local bs = opts.batch_size or 64
  local seed = opts.seed or 1
  local was_training = model.training
  model:eval()
  if opts.progress ~= false then
    o.bar = md.progress.new { total = #o.sched.timesteps * math.ceil(n / bs), label = kind .. "-" .. #o.sched.timesteps }
    o.bar.step_count = 0
  end
  -- this process's images: all n, or its rank's share of them
  local first, count = 1, n
  if opts.distributed then first, count = md.dist.shard(n) end
  local out = {}
  -- the model goes back to training mode even when sampling stops (an error, Ctrl-C)
  local ok, err = pcall(function()
    for start = first, first + count - 1, bs do
      local k = math.min(bs, first + count - start)
      local gens = {}
      for i = 1, k do gens[i] = md.Generator(seed + start + i - 2) end
      local y = y_all and y_all:narrow(1, start, k) or nil
      out[#out + 1] = sampler.sample_batch(model, gens, y, o)
    end
  end)
  if o.bar then o.bar:finish() end
  if was_training then model:train() end
  if not ok then error(err, 0) end
  local x = #out == 1 and out[1] or #out == 0 and md.zeros { 0, o.shape[1], o.shape[2], o.shape[3] } or md.cat(out, 1)
  if opts.distributed then x = md.dist.all_gather(x) end
  return x:clamp(-1, 1)
end

return sampler
