-- A small CNN classifier for Fashion-MNIST: the clean classifier that scores
-- generated samples in the later examples.
--   lua5.4 examples/classifier_fashion.lua [out.safetensors] [epochs]
local md = require "moondust"
local nn, optim = md.nn, md.optim

local out_path = arg[1] or "checkpoints/classifier_fashion.safetensors"
local epochs = tonumber(arg[2]) or 4
md.manual_seed(0)

local function Classifier()
  return nn.Sequential(
    nn.Conv2d(1, 32, 3, { padding = 1 }), nn.ReLU(),
    nn.Conv2d(32, 32, 3, { padding = 1 }), nn.ReLU(), nn.AvgPool2d(2),   -- 14x14
    nn.Conv2d(32, 64, 3, { padding = 1 }), nn.ReLU(), nn.AvgPool2d(2),   -- 7x7
    nn.Flatten(), nn.Linear(64 * 7 * 7, 128), nn.ReLU(), nn.Dropout(0.3),
    nn.Linear(128, 10))
end

-- Fraction of ds that model labels correctly.
local function accuracy(model, ds)
  model:eval()
  local correct = 0
  md.no_grad(function()
    for x, y in md.data.loader(ds, { batch_size = 500, shuffle = false })() do
      correct = correct + model(x):argmax(2):eq(y):sum():item()
    end
  end)
  model:train()
  return correct / ds.n
end

local function main()
  local train, test = md.data.fashion_mnist { split = "train" }, md.data.fashion_mnist { split = "test" }
  local model = Classifier()
  local opt = optim.AdamW(model, { lr = 2e-3, weight_decay = 1e-4 })
  local loader = md.data.loader(train, { batch_size = 128, shuffle = true, generator = md.Generator(0) })
  local total = epochs * #loader
  local bar = md.progress.new { total = total, label = "classifier" }
  local step = 0
  for epoch = 1, epochs do
    for x, y in loader() do
      step = step + 1
      opt.lr = 2e-3 * 0.5 * (1 + math.cos(math.pi * step / total)) -- cosine decay
      local loss = md.cross_entropy(model(x), y)
      opt:zero_grad()
      loss:backward()
      opt:step()
      bar:update(step, { loss = loss:item(), epoch = epoch, images = x:size(1) })
    end
  end
  bar:finish()
  local acc = accuracy(model, test)
  print(("test accuracy: %.2f%%"):format(100 * acc))
  md.core.mkdir_p(out_path:match("^(.*)/[^/]*$") or ".")
  md.save(out_path, model, { kind = "classifier_fashion", test_accuracy = acc })
  print("saved " .. out_path)
  return acc
end

-- The classifier's architecture is reused to load the checkpoint elsewhere.
if ... ~= "classifier_fashion" then main() end
return { Classifier = Classifier, accuracy = accuracy }
