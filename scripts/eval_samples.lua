-- Scores a diffusion checkpoint: samples `per_class` images of each class
-- and reports the fraction that the clean classifier from
-- examples/classifier_fashion.lua labels as the requested class.
--   scripts/md-lua scripts/eval_samples.lua [options]
--     --checkpoint PATH (checkpoints/ddpm_fashion.safetensors)
--     --classifier PATH (checkpoints/classifier_fashion.safetensors)
--     --n N (1000 in all)  --sampler ddim|ddpm  --steps S (50)  --guidance W (3)
--     --grid out/eval.png  --seed S (1)
local md = require "moondust"
local clf_example = require "classifier_fashion"

local o = {}
for i = 1, #arg, 2 do o[arg[i]:gsub("^%-%-", ""):gsub("%-", "_")] = tonumber(arg[i + 1]) or arg[i + 1] end

local function load_classifier(path)
  local tensors = md.load(path)
  local clf = clf_example.Classifier()
  clf:load_state_dict(tensors)
  return clf:eval()
end

local function main()
  local model = md.load(o.checkpoint or "checkpoints/ddpm_fashion.safetensors")
  local clf = load_classifier(o.classifier or "checkpoints/classifier_fashion.safetensors")
  local n = o.n or 1000
  local labels = {}
  for i = 1, n do labels[i] = (i - 1) % 10 end
  local t0 = md.progress.now()
  local x = md.sample(model, { n = n, class = labels, sampler = o.sampler or "ddim", steps = o.steps or 50,
                               guidance = o.guidance or 3, seed = o.seed or 1, batch_size = o.batch_size or 100 })
  local seconds = md.progress.now() - t0
  local pred = md.no_grad(function() return clf(x):argmax(2) end):flat()
  local correct, per = 0, {}
  for i = 1, n do
    local ok = pred[i] == labels[i]
    correct = correct + (ok and 1 or 0)
    per[labels[i]] = (per[labels[i]] or 0) + (ok and 1 or 0)
  end
  local parts = {}
  for c = 0, 9 do parts[#parts + 1] = ("%d:%.0f%%"):format(c, 100 * per[c] / (n // 10)) end
  print(("%s %s steps %d guidance %s: %d/%d = %.1f%% labelled as requested (%.1f s, %.1f images/s)"):format(
    o.checkpoint or "checkpoints/ddpm_fashion.safetensors", o.sampler or "ddim", o.steps or 50,
    tostring(o.guidance or 3), correct, n, 100 * correct / n, seconds, n / seconds))
  print("per class: " .. table.concat(parts, " "))
  if o.grid ~= "none" then
    local first = md.index_select(x, 1, md.arange(math.min(n, 100)))
    md.image.save_grid(first, o.grid or "out/eval.png", { nrow = 10 })
  end
  return correct / n
end

main()
