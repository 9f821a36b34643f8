-- PNG and JPEG images in [-1, 1]: md.image.save, md.image.load, md.image.save_grid.
local md = require "moondust"
local core = md.core
local options = require "moondust.options"

local image = {}

-- img: C x H x W or 1 x C x H x W, values in [-1, 1]. A name ending in .jpg
-- or .jpeg writes a JPEG (opts.quality 1..100, default 95), anything else a PNG.
function image.save(img, path, opts)
  opts = options.check("image.save", opts, { quality = "number" })
  options.integer("image.save", "quality", opts.quality, 1, 100)
  if img:dim() == 4 and img:size(1) == 1 then img = img[1] end
  if path:lower():match("%.jpe?g$") then core.jpeg_write(path, img:detach(), opts.quality or 95)
  else core.png_write(path, img:detach()) end
  return path
end

-- A PNG or JPEG (told apart by its contents) -> C x H x W in [-1, 1];
-- opts.channels = 1 or 3, default the file's own (1 for gray, 3 for colour).
function image.load(path, opts)
  opts = options.check("image.load", opts, { channels = "number" })
  options.choice("image.load", "channels", opts.channels, { 1, 3 })
  return core.image_read(path, opts.channels or 0)
end

-- batch N x C x H x W -> one C x H' x W' image, nrow images per row.
function image.make_grid(batch, opts)
  opts = options.check("make_grid", opts, { nrow = "number", padding = "number", pad_value = "number" })
  options.integer("make_grid", "nrow", opts.nrow, 1)
  options.integer("make_grid", "padding", opts.padding, 0)
  options.number("make_grid", "pad_value", opts.pad_value, -1, 1)
  return core.make_grid(batch:detach(), opts.nrow or 8, opts.padding or 2, opts.pad_value or -1)
end

-- batch N x C x H x W -> a PNG grid at path; opts as make_grid's.
function image.save_grid(batch, path, opts)
  return image.save(image.make_grid(batch, opts), path)
end

return image
