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

-- The classifier's gradient asks for class (i - 1) % 10 for image i.
local wanted = {}
for i = 1, n do wanted[i] = (i - 1) % 10 end
local y = md.tensor(wanted)

for _, scale in ipairs(scales) do
  -- the diffusion model gets its "no class" input; cond_fn sees the labels of its batch
  local x = md.sample(diffusion, { n = n, class = wanted, unconditional = true, steps = 50, sampler = "ddim",
                                   seed = 1, cond_fn = md.guidance.classifier(noisy, scale), batch_size = 100,
                                   progress = false })
  local pred = md.no_grad(function() return clean(x):argmax(2) end)
  local acc = pred:eq(y):mean():item()
  print(("classifier guidance scale %g: %.1f%% of %d samples labelled as the requested class"):format(scale, 100 * acc, n))
  md.image.save_grid(md.index_select(x, 1, md.arange(math.min(n, 100))), ("out/classifier_guidance_%g.png"):format(scale), { nrow = 10 })
end
