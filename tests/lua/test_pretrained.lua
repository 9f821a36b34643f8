-- The models that ship with moondust: lua/moondust/assets/fashion_model.safetensors
-- (written by scripts/export_pretrained.lua from the main job's checkpoint) and
-- noisy_classifier.safetensors (examples/train_noisy_classifier.lua). md.pretrained
-- loads them through md.load, and they do what they say.
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

T.test("md.pretrained('noisy_classifier') reads noisy test images and steers the model towards a class", function()
  local clf = md.pretrained("noisy_classifier")
  T.eq(clf.config.pool, "attention")
  local test = md.data.fashion_mnist { split = "test", limit = 500 }
  local sched = md.schedule.linear {}
  local function accuracy(t)
    local tt = md.full({ test.n }, t)
    local xt = md.q_sample(test.images, tt, md.Generator(t):randn(test.images:shape()), sched.alphas_cumprod)
    return md.no_grad(function() return clf(xt, tt):argmax(2):eq(test.labels):mean():item() end)
  end
  local clean, mid = accuracy(0), accuracy(500)
  T.truthy(clean >= 0.84, ("%.1f%% of clean test images classified right"):format(100 * clean))
  T.truthy(mid >= 0.55, ("%.1f%% right at t = 500"):format(100 * mid))
  -- the unconditional model, 20 images asking for classes 0..9 twice, DDIM-10
  local m, wanted = md.pretrained("fashion"), {}
  for i = 1, 20 do wanted[i] = (i - 1) % 10 end
  local function guided_accuracy(scale)
    local x = md.sample(m, { n = 20, class = wanted, unconditional = true, steps = 10, seed = 1, progress = false,
                             cond_fn = md.guidance.classifier(clf, scale) })
    return md.metrics.score(x, wanted, { kid_subsets = 2 }).class_accuracy
  end
  local unguided, guided = guided_accuracy(0), guided_accuracy(10)
  T.truthy(guided >= 0.6 and guided > unguided + 0.3,
    ("guided %.0f%% against unguided %.0f%% labelled as requested"):format(100 * guided, 100 * unguided))
end)

T.finish()
