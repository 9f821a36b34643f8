-- DDIM inversion: the noise that deterministic DDIM maps to a given image,
-- found by running its steps backwards; sampling from it gives the image
-- back, and the same noise under another class gives an edit.
--   scripts/md-lua examples/ddim_inversion.lua [steps = 100]
local md = require "moondust"

local model = md.pretrained("fashion")
local steps = tonumber(arg and arg[1]) or 100
local ds = md.data.fashion_mnist { split = "test", limit = 8 }
local noise = md.edit.invert(model, ds.images, { steps = steps, class = ds.labels, progress = false })
local back = md.sample(model, { noise = noise, class = ds.labels, steps = steps, progress = false })
local err = (back - ds.images):abs():mean():item()
local next_class = {}
for i, c in ipairs(ds.labels:flat()) do next_class[i] = (c + 1) % 10 end
local shifted = md.sample(model, { noise = noise, class = next_class, steps = steps, progress = false })
md.core.mkdir_p("out")
md.image.save_grid(md.cat({ ds.images, back, shifted }, 1), "out/ddim_inversion.png", { nrow = 8 })
print(("wrote out/ddim_inversion.png: images, reconstructions (mean |error| %.3f), the next class from the same noise")
  :format(err))
