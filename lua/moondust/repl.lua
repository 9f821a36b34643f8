-- What scripts/repl shows with help().
local repl = {}

repl.text = [[
moondust at the REPL (md is loaded):
  x = md.randn{2, 3}; print(x, x:sum(), x:shape())        tensors
  m = md.load("checkpoints/ddpm_fashion.safetensors")      a trained U-Net (EMA weights)
  s = md.sample(m, {n = 16, class = 7, steps = 50, guidance = 3, seed = 1})
  md.image.save_grid(s, "out/sneakers.png", {nrow = 4})     a PNG grid
  md.sample(m, {n = 16, sampler = "ddpm"})                   1000-step ancestral sampling, unconditional
  md.data.fashion_mnist{split = "test"}                      the data set
  md.nn.UNet{model_channels = 32}                            build a model; md.optim.AdamW(model)
classes: 0 T-shirt/top, 1 Trouser, 2 Pullover, 3 Dress, 4 Coat, 5 Sandal, 6 Shirt, 7 Sneaker, 8 Bag, 9 Ankle boot]]

function repl.help() print(repl.text) end

-- What the launchers (scripts/repl, bin/moondust-repl) run before lua5.4's
-- own prompt: md and help as globals, and a one-line greeting.
function repl.start()
  _G.md = require "moondust"
  _G.help = require("moondust.help").help
  print("moondust " .. _G.md.version .. " -- type help() for a short tour")
end

return repl
