-- Samplers: DDPM (ancestral) and DDIM over the C step kernels, batched and
-- without grad, with classifier-free guidance and classifier guidance.
--
--   md.sample(model, {n = 16, class = 7, steps = 50, sampler = "ddim", guidance = 3, seed = 1})
--
-- Options: n; class (a number, a table of n labels, or nil for the model's
-- "no class" input); sampler "ddim" (default) or "ddpm"; steps (default 50
-- for DDIM, T for DDPM); eta (DDIM noise, default 0); guidance (classifier-
-- free scale w: eps = eps_u + w (eps_c - eps_u), both halves in one batch);
-- cond_fn(x, t, y) -> gradient of log p(y | x_t), already scaled (classifier
-- guidance); schedule (default: the model's, else linear T = 1000);
-- prediction "eps" | "x0" | "v"; variance "small" | "large" (DDPM); clip
-- (x0 to [-1, 1], default true); seed (image i draws from Generator(seed +
-- i - 1), so images do not depend on the batch size); batch_size (default
-- 64); progress (default true); shape ({C, H, W}, default from the model).
local md = require "moondust"

local sampler = {}

local function labels_for(opts, n, null_class)
  local c = opts.class
  if c == nil then return null_class and md.full({ n }, null_class) or nil end
  if type(c) == "number" then return md.full({ n }, c) end
  if md.is_tensor(c) then return c end
  if #c ~= n then error(("sample: %d class labels for %d images"):format(#c, n), 3) end
  return md.tensor(c)
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

-- Samples one batch; gens holds one generator per image.
function sampler.sample_batch(model, gens, y, opts)
  local sched = opts.sched
  local null_class = model.config and model.config.num_classes
  local shape = opts.shape
  local x = draw(gens, shape)
  local ts, ab = sched.timesteps, sched.ab
  local kind = opts.sampler or "ddim"
  local clip = opts.clip ~= false
  local bar = opts.bar
  for i = #ts, 1, -1 do
    local t, ab_t, ab_prev = ts[i], ab[i], i > 1 and ab[i - 1] or 1.0
    local out = md.no_grad(predict, model, x, t, y, opts, null_class)
    local x0, eps = md.pred_to_x0_eps(x, out, ab_t, opts.prediction or "eps", clip)
    local grad = opts.cond_fn and opts.cond_fn(x, md.full({ x:size(1) }, t), y) or nil
    if kind == "ddpm" then
      local noise = i > 1 and draw(gens, shape) or nil
      x = md.ddpm_step(x, x0, ab_t, ab_prev, noise, grad, opts.variance == "large", i == 1)
    else
      if grad then -- shift the score: eps <- eps - sqrt(1 - ab) * grad, then x0 again
        x0, eps = md.pred_to_x0_eps(x, eps - grad * math.sqrt(1 - ab_t), ab_t, "eps", clip)
      end
      local eta = opts.eta or 0
      local noise = (eta > 0 and i > 1) and draw(gens, shape) or nil
      x = md.ddim_step(x0, eps, ab_t, ab_prev, eta, noise)
    end
    if bar then bar:update(bar.step_count + 1, { images = 0 }); bar.step_count = bar.step_count + 1 end
  end
  return x
end

function sampler.sample(model, opts)
  opts = opts or {}
  local n = opts.n or 16
  local cfg = model.config or {}
  local kind = opts.sampler or "ddim"
  if kind ~= "ddim" and kind ~= "ddpm" then error("sample: sampler must be 'ddim' or 'ddpm', got " .. tostring(kind), 2) end
  local base = md.schedule.get(opts.schedule or model.schedule or "linear", opts.T or 1000)
  local steps = opts.steps or (kind == "ddpm" and base.T or 50)
  local o = setmetatable({ sched = md.schedule.respace(base, steps),
                           shape = opts.shape or { cfg.in_channels or 1, model.image_size or 28, model.image_size or 28 },
                           prediction = opts.prediction or model.prediction },
                         { __index = opts })
  local null_class = cfg.num_classes
  local y_all = labels_for(opts, n, null_class)
  local bs = opts.batch_size or 64
  local seed = opts.seed or 1
  local was_training = model.training
  model:eval()
  if opts.progress ~= false then
    o.bar = md.progress.new { total = #o.sched.timesteps * math.ceil(n / bs), label = kind .. "-" .. #o.sched.timesteps }
    o.bar.step_count = 0
  end
  local out = {}
  for start = 1, n, bs do
    local k = math.min(bs, n - start + 1)
    local gens = {}
    for i = 1, k do gens[i] = md.Generator(seed + start + i - 2) end
    local y = y_all and y_all:narrow(1, start, k) or nil
    out[#out + 1] = sampler.sample_batch(model, gens, y, o)
  end
  if o.bar then o.bar:finish() end
  if was_training then model:train() end
  local x = #out == 1 and out[1] or md.cat(out, 1)
  return x:clamp(-1, 1)
end

return sampler
