-- The model that ships with moondust (lua/moondust/assets/fashion_model.safetensors,
-- written by scripts/export_pretrained.lua from the main job's checkpoint):
-- md.pretrained loads it through md.load, and its samples are what they say.
local T = require "harness"
local md = require "moondust"

T.test("md.pretrained('fashion') samples sneakers that the metric network calls sneakers", function()
  local m = md.pretrained("fashion")
  T.truthy(md.nn.Module.is_module(m), "a model")
  T.eq(m.config.num_classes, 10)
  T.eq(m.classes[8], "Sneaker")
  T.eq(m.schedule.T, 1000)
  local x = md.sample(m, { n = 10, class = "sneaker", steps = 20, guidance = 3, seed = 1, progress = false })
  T.eq(table.concat(x:shape(), "x"), "10x1x28x28")
  local score = md.metrics.score(x, 7, { kid_subsets = 2 })
  T.truthy(score.class_accuracy >= 0.8, ("%.0f%% of 10 classified as sneakers"):format(100 * score.class_accuracy))
  T.errors(function() md.pretrained("fasion") end, "no model 'fasion' (there is: fashion, noisy_classifier)")
end)

T.finish()
