-- Interpolation: spherical interpolation (slerp) between two noises, and
-- between two test images through DDIM inversion; deterministic DDIM keeps
-- the path smooth. Two rows of 10 frames.
--   scripts/md-lua examples/interpolate.lua [class = "Dress"]
local md = require "moondust"

local model = md.pretrained("fashion")
local class = arg and arg[1] or "Dress"
local a, b = md.Generator(1):randn { 1, 1, 28, 28 }, md.Generator(2):randn { 1, 1, 28, 28 }
local opts = { n = 10, class = class, guidance = 3, steps = 50, progress = false }
local noises = md.edit.interpolate(model, a, b, opts)
local ds = md.data.fashion_mnist { split = "test", limit = 2 }
opts.images, opts.class, opts.guidance = true, nil, nil
local images = md.edit.interpolate(model, ds.images:narrow(1, 1, 1), ds.images:narrow(1, 2, 1), opts)
md.core.mkdir_p("out")
md.image.save_grid(md.cat({ noises, images }, 1), "out/interpolate.png", { nrow = 10 })
print("wrote out/interpolate.png: noise to noise (" .. class .. "), then test image to test image")
