-- Classifier guidance: steer the unconditional model (the DDPM checkpoint's
-- "no class" input) towards a class with the gradient of a noisy
-- classifier, at several guidance scales; score the samples with the clean
-- classifier and write a grid per scale.
--   scripts/md-lua examples/classifier_guidance.lua [n = 1000] [scales = 0,1,3,10]
local md = require "moondust"
local clf_example = require "classifier_fashion"

local n = tonumber(arg and arg[1]) or 1000
local scales = {}
for s in ((arg and arg[2]) or "0,1,3,10"):gmatch("[^,]+") do scales[#scales + 1] = tonumber(s) end

local diffusion = md.load("checkpoints/ddpm_fashion.safetensors")
local noisy = md.load("checkpoints/noisy_classifier.safetensors")
local clean = clf_example.Classifier()
clean:load_state_dict((md.load("checkpoints/classifier_fashion.safetensors")))
clean:eval()

-- The diffusion model gets "no class"; the classifier's gradient asks for
-- class (i - 1) % 10 for image i.
local wanted = {}
for i = 1, n do wanted[i] = (i - 1) % 10 end
local y = md.tensor(wanted)

local null = diffusion.config.num_classes
local unconditional = setmetatable({}, { __index = diffusion,
  __call = function(_, x, t) return diffusion(x, t, md.full({ x:size(1) }, null)) end })

for _, scale in ipairs(scales) do
  local cond_fn = md.guidance.classifier(noisy, scale)
  -- the sampler hands cond_fn the batch's labels: slice ours to match
  local offset = 0
  local batch_fn = function(x, t)
    return cond_fn(x, t, y:narrow(1, offset + 1, x:size(1)))
  end
  local chunks = {}
  local bs = 100
  for start = 1, n, bs do
    offset = start - 1
    local k = math.min(bs, n - start + 1)
    chunks[#chunks + 1] = md.sample(unconditional, { n = k, steps = 50, sampler = "ddim", seed = start,
                                                     cond_fn = batch_fn, progress = false })
  end
  local x = md.cat(chunks, 1)
  local pred = md.no_grad(function() return clean(x):argmax(2) end)
  local acc = pred:eq(y):mean():item()
  print(("classifier guidance scale %g: %.1f%% of %d samples labelled as the requested class"):format(scale, 100 * acc, n))
  md.image.save_grid(md.index_select(x, 1, md.arange(math.min(n, 100))), ("out/classifier_guidance_%g.png"):format(scale), { nrow = 10 })
end
