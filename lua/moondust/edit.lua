-- Editing and probing with a trained model, on md.sample's loop:
--
--   md.edit.img2img(model, images, {strength = 0.6, ...})   -- SDEdit: noise the images part way, denoise
--   md.edit.inpaint(model, images, mask, {resample = 1, ...}) -- fill in where mask is 0 (RePaint when resample > 1)
--   md.edit.invert(model, images, {steps = 50, ...})        -- DDIM inversion: the noise DDIM maps to the images
--   md.edit.slerp(a, b, w)                                   -- spherical interpolation between two noises
--   md.edit.interpolate(model, a, b, {n = 8, images = false, ...}) -- n samples from noises slerped from a to b
--
-- Images are N x C x H x W in [-1, 1]; the remaining options are md.sample's
-- (class, guidance, steps, sampler, seed, ...).
local md = require "moondust"
local options = require "moondust.options"

local edit = {}

local function with(opts, extra)
  local out = {}
  for k, v in pairs(opts or {}) do out[k] = v end
  for k, v in pairs(extra) do out[k] = v end
  return out
end

local function images_arg(where, images)
  if not md.is_tensor(images) or images:dim() ~= 4 then
    error(("%s: expected N x C x H x W images in [-1, 1]"):format(where), 3)
  end
  return images
end

-- Starts from q_sample of the images at strength (0..1, default 0.6) of
-- the way into the noise and samples from there (Meng et al. 2022).
-- Each of these returns md.sample's images and info.
function edit.img2img(model, images, opts)
  images_arg("img2img", images)
  if opts ~= nil and type(opts) ~= "table" then error("img2img: expected an options table", 2) end
  return md.sample(model, with(opts, { init = images }))
end

-- Keeps the images where mask is 1 (re-noised to each step's level) and
-- samples the rest; mask is N x 1 x H x W or N x C x H x W of 0 and 1.
function edit.inpaint(model, images, mask, opts)
  images_arg("inpaint", images)
  if not md.is_tensor(mask) then error("inpaint: expected a mask tensor (1 where the image is known)", 2) end
  if opts ~= nil and type(opts) ~= "table" then error("inpaint: expected an options table", 2) end
  return md.sample(model, with(opts, { init = images, mask = mask }))
end

-- DDIM inversion: the deterministic DDIM steps run backwards from the
-- images to the noise level of the last step, each step's eps taken at the
-- level it leaves (the first at the lowest level). md.sample with
-- {noise = these, sampler = "ddim"} and the same steps maps them back
-- close to the images. opts: steps (50), class, guidance, spacing,
-- batch_size, diffusion.
function edit.invert(model, images, opts)
  images_arg("invert", images)
  opts = options.check("invert", opts, { steps = "number", class = true, guidance = "number", spacing = "string",
                                         batch_size = "number", diffusion = "table", progress = "boolean" })
  local sampler = require "moondust.sampler"
  local d = opts.diffusion or model.diffusion or md.diffusion {}
  local steps = options.integer("invert", "steps", opts.steps, 1, d:num_timesteps()) or 50
  local plan = d:plan(steps, opts.spacing or d.default_spacing)
  local n = images:size(1)
  local null_class = model.config and model.config.num_classes
  if opts.guidance and opts.class == nil then error("invert: guidance needs a class", 2) end
  local y_all = sampler.labels_for(opts, n, null_class, model.classes)
  local bar = md.progress.new { total = #plan.ab * math.ceil(n / (opts.batch_size or 64)), label = "invert",
                                quiet = opts.progress == false }
  bar.step_count = 0
  local was_training = model.training
  model:eval()
  local out, bs = {}, opts.batch_size or 64
  local ok, err = pcall(md.no_grad, function()
    for start = 1, n, bs do
      local k = math.min(bs, n - start + 1)
      local x, y = images:narrow(1, start, k), y_all and y_all:narrow(1, start, k) or nil
      local ab_cur = 1.0
      for i = 1, #plan.ab do
        local j = math.max(i - 1, 1) -- the level x is at (the first step reads the lowest)
        local raw = sampler.predict(model, d, x, plan.t[j], plan.ab[j], y, opts, null_class)
        local _, eps = d:to_x0_eps(x, raw, plan.ab[j], false)
        local x0 = (x - eps * math.sqrt(1 - ab_cur)) * (1 / math.sqrt(ab_cur))
        x = x0 * math.sqrt(plan.ab[i]) + eps * math.sqrt(1 - plan.ab[i])
        ab_cur = plan.ab[i]
        bar:update(bar.step_count + 1)
        bar.step_count = bar.step_count + 1
      end
      out[#out + 1] = x
    end
  end)
  bar:finish()
  if was_training then model:train() end
  if not ok then error(err, 0) end
  return #out == 1 and out[1] or md.cat(out, 1)
end

-- Spherical interpolation (Shoemake; White 2016 for generative models):
-- w = 0 gives a, w = 1 gives b, and Gaussian noise keeps its norm between.
function edit.slerp(a, b, w)
  if not (md.is_tensor(a) and md.is_tensor(b)) then error("slerp: expected two tensors", 2) end
  options.number("slerp", "w", w, 0, 1)
  local dot = (a * b):sum():item() / math.sqrt((a * a):sum():item() * (b * b):sum():item())
  local theta = math.acos(math.max(-1, math.min(1, dot)))
  if theta < 1e-6 then return a * (1 - w) + b * w end
  return a * (math.sin((1 - w) * theta) / math.sin(theta)) + b * (math.sin(w * theta) / math.sin(theta))
end

-- n samples (default 8) from the noises slerped between a and b (each
-- 1 x C x H x W; with images = true they are images, inverted first).
-- Deterministic DDIM, so the path is smooth.
function edit.interpolate(model, a, b, opts)
  opts = opts or {}
  if type(opts) ~= "table" then error("interpolate: expected an options table", 2) end
  local n = options.integer("interpolate", "n", opts.n, 2) or 8
  local rest = with(opts, { n = n })
  rest.images = nil -- interpolate's own option, not md.sample's
  if opts.images then
    local both = edit.invert(model, md.cat({ a, b }, 1), { steps = opts.steps, class = opts.class,
                                                          progress = false })
    a, b = both:narrow(1, 1, 1), both:narrow(1, 2, 1)
  end
  local noises = {}
  for i = 1, n do noises[i] = edit.slerp(a, b, (i - 1) / (n - 1)) end
  rest.noise = md.cat(noises, 1)
  rest.sampler = rest.sampler or "ddim"
  return md.sample(model, rest)
end

return edit
