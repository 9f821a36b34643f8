-- Classifier guidance (Dhariwal & Nichol 2021): steer the shipped model
-- towards a class with the gradient of the shipped noisy classifier, at
-- several scales, either from its "no class" input (unconditional) or on
-- top of its class input (conditional + classifier); score the samples with
-- md.metrics and write a grid per scale. scripts/guidance_sweep.lua is the
-- full sweep with classifier-free guidance beside it.
--   scripts/md-lua examples/classifier_guidance.lua [n = 200] [scales = 0,1,3,10] [unconditional | conditional]
--     [classifier = the shipped one, or a checkpoint of examples/train_noisy_classifier.lua]
local md = require "moondust"

local n = math.tointeger(tonumber(arg and arg[1] or 200))
assert(n and n >= 1, "n must be a whole number >= 1, got " .. tostring(arg and arg[1]))
local scales = {}
for s in ((arg and arg[2]) or "0,1,3,10"):gmatch("[^,]+") do scales[#scales + 1] = assert(tonumber(s), "bad scale " .. s) end
local mode = arg and arg[3] or "unconditional"
assert(mode == "unconditional" or mode == "conditional", "mode: unconditional or conditional, got " .. mode)
local model = md.pretrained("fashion")
local classifier = arg and arg[4] and md.load(arg[4]) or md.pretrained("noisy_classifier")

-- image i asks for class (i - 1) % 10
local wanted = {}
for i = 1, n do wanted[i] = (i - 1) % 10 end

md.core.mkdir_p("out")
for _, scale in ipairs(scales) do
  local x = md.sample(model, { n = n, class = wanted, unconditional = mode == "unconditional", steps = 25,
                               cond_fn = md.guidance.classifier(classifier, scale), seed = 1, batch_size = 100 })
  local m = md.metrics.score(x, wanted)
  print(("%s, classifier scale %g: %.1f%% labelled as requested, FID %.1f, precision %.3f, recall %.3f"):format(
    mode, scale, 100 * m.class_accuracy, m.fid, m.precision, m.recall))
  md.image.save_grid(md.index_select(x, 1, md.arange(math.min(n, 100))),
    ("out/classifier_guidance_%s_%g.png"):format(mode, scale), { nrow = 10 })
end
