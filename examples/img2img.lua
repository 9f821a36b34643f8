-- img2img (SDEdit, Meng et al. 2022): noise test images part of the way
-- and sample back, steered to another class. One row per strength: the
-- inputs, then strength 0.3, 0.5, 0.7, 0.9.
--   scripts/md-lua examples/img2img.lua [class = "Sneaker"]
local md = require "moondust"

local model = md.pretrained("fashion")
local class = arg and arg[1] or "Sneaker"
local inputs = md.data.fashion_mnist { split = "test", limit = 8 }.images
local rows = { inputs }
for _, strength in ipairs { 0.3, 0.5, 0.7, 0.9 } do
  rows[#rows + 1] = md.edit.img2img(model, inputs, { strength = strength, class = class, guidance = 3, steps = 50,
                                                     seed = 1, progress = false })
end
md.core.mkdir_p("out")
md.image.save_grid(md.cat(rows, 1), "out/img2img.png", { nrow = 8 })
print("wrote out/img2img.png: the inputs, then strength 0.3, 0.5, 0.7, 0.9 towards " .. class)
