-- Writes a grid of 64 real Fashion-MNIST training images: the smallest
-- end-to-end check that data loading and PNG output work.
--   scripts/md-lua scripts/real_grid.lua [out.png]
local md = require "moondust"
local out = arg[1] or "out/real.png"
local ds = md.data.fashion_mnist { split = "train" }
local x = md.data.loader(ds, { batch_size = 64, generator = md.Generator(0) }):next()
md.core.mkdir_p(out:match("^(.*)/") or ".")
md.image.save_grid(x, out, { nrow = 8 })
print(("wrote %s: 64 of %d training images"):format(out, ds.n))
