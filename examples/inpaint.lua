-- Inpainting: keep the left half of test images and sample the right half
-- (the known half re-noised to every step's level), plainly and with
-- RePaint's resampling (Lugmayr et al. 2022), which harmonises the seam.
--   scripts/md-lua examples/inpaint.lua [resample = 5]
local md = require "moondust"

local model = md.pretrained("fashion")
local resample = tonumber(arg and arg[1]) or 5
local ds = md.data.fashion_mnist { split = "test", limit = 8 }
local left = {}
for i = 1, 28 * 28 do left[i] = ((i - 1) % 28 < 14) and 1 or 0 end
local mask = md.cat((function() local m = {} for i = 1, 8 do m[i] = md.tensor(left):reshape(1, 1, 28, 28) end return m end)(), 1)
local opts = { class = ds.labels, guidance = 3, steps = 50, seed = 1, progress = false }
local plain = md.edit.inpaint(model, ds.images, mask, opts)
opts.resample = resample
local repaint = md.edit.inpaint(model, ds.images, mask, opts)
md.core.mkdir_p("out")
md.image.save_grid(md.cat({ ds.images, ds.images * mask - (-mask + 1), plain, repaint }, 1), "out/inpaint.png", { nrow = 8 })
print(("wrote out/inpaint.png: the images, the kept half, inpainted, inpainted with resample = %d"):format(resample))
