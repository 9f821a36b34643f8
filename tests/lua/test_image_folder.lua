-- md.data.image_folder: PNG and JPEG folders decoded into a uint8 byte store,
-- channels detected or forced, sizes fitted, augmentation from the loader's
-- generator, unreadable files reported; and a short RGB training run.
local T = require "harness"
local md = require "moondust"
local cli = require "moondust.cli"

local dir, path = T.tempdir()
local write, read = T.write_file, T.read_file
local function shape(t) return table.concat(t:shape(), "x") end
local jpeg = md.core.jpeg_available()

-- A C x H x W image with one constant value per channel.
local function constant(values, h, w)
  local planes = {}
  for i, v in ipairs(values) do planes[i] = md.full({ 1, h, w }, v) end
  return md.cat(planes, 1)
end

-- 1 x H x W: white (1) on the left half, black (-1) on the right.
local function left_white(h, w)
  return md.cat({ md.ones { 1, h, w // 2 }, -md.ones { 1, h, w - w // 2 } }, 3)
end

T.test("colour is detected (ds.channels), gray stays gray, channels can be forced", function()
  md.core.mkdir_p(path("mixed")); md.core.mkdir_p(path("gray"))
  md.image.save(constant({ 0.6, -0.2, 0.2 }, 6, 5), path("mixed/a.png"))
  md.image.save(md.full({ 1, 6, 5 }, -0.5), path("mixed/b.png"))
  md.image.save(md.full({ 1, 6, 5 }, 0.4), path("gray/a.png"))
  local ds = md.data.image_folder(path("mixed"))
  T.eq(ds.channels, 3); T.eq(ds.channels_detected, true)
  T.eq(shape(ds.images), "2x3x6x5")
  local x = md.data.float_images(ds)
  T.near(x[1], constant({ 0.6, -0.2, 0.2 }, 6, 5), 1 / 255, "the RGB image keeps its colours")
  T.near(x[2], md.full({ 3, 6, 5 }, -0.5), 1 / 255, "the gray image is replicated")
  local g = md.data.image_folder(path("gray"))
  T.eq(g.channels, 1); T.eq(shape(g.images), "1x1x6x5")
  local forced = md.data.image_folder(path("mixed"), { channels = 1 })
  T.eq(forced.channels, 1); T.eq(forced.channels_detected, false)
  T.eq(shape(forced.images), "2x1x6x5")
  T.eq(shape(md.data.image_folder(path("gray"), { channels = 3 }).images), "1x3x6x5")
  -- md.image.load keeps the file's channels unless told
  T.eq(shape(md.image.load(path("mixed/a.png"))), "3x6x5")
  T.eq(shape(md.image.load(path("gray/a.png"))), "1x6x5")
end)

T.test("a batch gathered from the bytes equals each file loaded as floats", function()
  md.core.mkdir_p(path("rand/x")); md.core.mkdir_p(path("rand/y"))
  md.manual_seed(3)
  for i = 1, 5 do md.image.save(md.rand { 3, 7, 9 } * 2 - 1, path(("rand/%s/%d.png"):format(i <= 2 and "x" or "y", i))) end
  local ds = md.data.image_folder(path("rand") .. "/") -- a trailing slash is fine
  T.eq(ds.n, 5); T.eq(ds.classes[2], "y")
  T.near(ds.labels, { 0, 0, 1, 1, 1 })
  local files = {}
  for i, f in ipairs(ds.files) do files[i] = md.image.load(f) end
  local want = md.stack(files)
  T.near(ds.images:gather(md.tensor { 4, 0, 2 }), md.index_select(want, 1, md.tensor { 4, 0, 2 }), 0)
  local L = md.data.loader(ds, { batch_size = 5, shuffle = false })
  local x, y = L:next()
  T.near(x, want, 0)
  T.near(y, ds.labels, 0)
  T.errors(function() ds.images:gather(md.tensor { 5 }) end, "index 5 is out of range 0..4")
  T.errors(function() ds.images:gather(md.tensor { 0.5 }) end, "not a whole number")
  T.eq(#ds.images, 5); T.eq(ds.images:size(2), 3)
  local closed = md.data.image_folder(path("rand"))
  closed.images:close()
  T.errors(function() closed.images:gather(md.tensor { 0 }) end, "used after it was closed")
end)

T.test("size and resize: the asked sizes, constant colours kept, the centre kept, shrinking antialiased", function()
  md.core.mkdir_p(path("wide"))
  md.image.save(constant({ 0.2, -0.4, 0.6 }, 10, 20), path("wide/c.png"))
  local colour = { 0.2, -0.4, 0.6 }
  for _, case in ipairs {
    { { size = 8 }, "1x3x8x8", "1x3x8x8" },
    { { size = { 6, 12 }, resize = "resize" }, "1x3x6x12", "1x3x6x12" },
    { { size = 16, resize = "resize" }, "1x3x16x16", "1x3x16x16" }, -- enlarging
    { { size = 8, resize = "random_crop" }, "1x3x9x9", "1x3x8x8" },
  } do
    local ds = md.data.image_folder(path("wide"), case[1])
    T.eq(shape(ds.images), case[2], "stored")
    local x = md.data.loader(ds, { batch_size = 1 }):next()
    T.eq(shape(x), case[3], "handed out")
    T.near(x[1], constant(colour, x:size(3), x:size(4)), 1 / 255, "a constant colour stays that colour")
  end
  -- center_crop keeps the middle third of a wide image: red | green | blue
  md.core.mkdir_p(path("thirds"))
  md.image.save(md.cat({ constant({ 1, -1, -1 }, 8, 8), constant({ -1, 1, -1 }, 8, 8), constant({ -1, -1, 1 }, 8, 8) },
    3), path("thirds/t.png"))
  local mid = md.data.float_images(md.data.image_folder(path("thirds"), { size = 4 }))[1]
  -- the filter reaches a little past the window at its edges (as PIL's), so only mostly green
  T.truthy(mid[2]:mean():item() > 0.5 and mid[1]:mean():item() < -0.5 and mid[3]:mean():item() < -0.5,
    "the centre is green")
  T.near(md.index_select(mid, 3, md.tensor { 1, 2 }), constant({ -1, 1, -1 }, 4, 2), 0.05, "its middle columns are pure green")
  local squeezed = md.data.float_images(md.data.image_folder(path("thirds"), { size = { 4, 12 }, resize = "resize" }))
  T.near(md.index_select(squeezed[1], 3, md.tensor { 0, 1, 2 }), constant({ 1, -1, -1 }, 4, 3), 0.05, "resize keeps the red left part")
  -- a one-pixel checkerboard shrunk 4x averages to gray (no aliasing)
  md.core.mkdir_p(path("checker"))
  local rows = {}
  for y = 1, 16 do
    local row = {}
    for x = 1, 16 do row[x] = (x + y) % 2 == 0 and 1 or -1 end
    rows[y] = row
  end
  md.image.save(md.tensor(rows):reshape(1, 16, 16), path("checker/c.png"))
  local small = md.data.float_images(md.data.image_folder(path("checker"), { size = 4 }))
  T.truthy(small:abs():max():item() < 0.1, "a shrunk checkerboard is gray, got values up to " .. small:abs():max():item())
end)

T.test("hflip mirrors about half the images, from the loader's generator, and resumes exactly", function()
  md.core.mkdir_p(path("half"))
  md.image.save(left_white(4, 6), path("half/l.png"))
  local ds = md.data.image_folder(path("half"), { hflip = true })
  local plain = left_white(4, 6)
  local mirrored = md.cat({ -md.ones { 1, 4, 3 }, md.ones { 1, 4, 3 } }, 3) -- right half white
  local L = md.data.loader(ds, { batch_size = 1, generator = md.Generator(5) })
  local flips, seen = 0, {}
  for i = 1, 40 do
    local x = L:next()[1]
    local is_mirror = (x - mirrored):abs():max():item() < 1e-6
    T.truthy(is_mirror or (x - plain):abs():max():item() < 1e-6, "each image is the original or its mirror")
    if is_mirror then flips = flips + 1 end
    seen[i] = is_mirror
  end
  T.truthy(flips > 5 and flips < 35, ("about half mirrored, got %d of 40"):format(flips))
  -- a loader restored mid-epoch repeats the same flips; so does the same seed
  local A = md.data.loader(md.data.image_folder(path("rand"), { hflip = true, size = 4, resize = "random_crop" }),
    { batch_size = 2, generator = md.Generator(9) })
  A:next()
  local state = A:state()
  local a1, a2 = A:next(), A:next()
  local B = md.data.loader(md.data.image_folder(path("rand"), { hflip = true, size = 4, resize = "random_crop" }),
    { batch_size = 2, generator = md.Generator(1) })
  B:set_state(state)
  T.near(B:next(), a1, 0); T.near(B:next(), a2, 0)
  T.errors(function() md.data.loader({ images = md.zeros { 2, 1, 2, 2 }, labels = md.zeros { 2 }, n = 2, hflip = true })
  end, "hflip needs a byte-store data set")
end)

T.test("md.metrics reads a byte-store data set a batch at a time, as its floats", function()
  local ds = md.data.image_folder(path("rand"), { size = 8, resize = "random_crop" })
  md.manual_seed(2)
  local net = md.metrics.FeatureNet { in_channels = 3, height = 8, width = 8, channels = 8, features = 4, num_classes = 2 }
  T.near(md.metrics.features(ds, net), md.metrics.features(md.data.float_images(ds), net), 1e-6)
  T.near(md.data.rows(ds, 2, 3), md.index_select(md.data.float_images(ds), 1, md.tensor { 1, 2, 3 }), 0)
  T.eq(md.metrics.reference { data = ds, net = net, cache = false }.n, 5)
  T.errors(function() md.metrics.features(md.data.image_folder(path("gray")), net) end,
    "takes 3 channel(s), the images have 1")
end)

T.test("unreadable files are skipped and reported; strict = true makes them errors", function()
  md.core.mkdir_p(path("bad"))
  for i = 1, 3 do md.image.save(md.full({ 1, 4, 4 }, 0), path(("bad/ok%d.png"):format(i))) end
  write(path("bad/cut.png"), read(path("bad/ok1.png")):sub(1, 40))
  write(path("bad/text.jpg"), "not a picture at all")
  write(path("bad/notes.txt"), "ignored: not an image name")
  local ds = md.data.image_folder(path("bad"))
  T.eq(ds.n, 3)
  T.eq(#ds.skipped, 2)
  T.eq(ds.skipped[1].path, path("bad/cut.png"))
  T.truthy(ds.warning:find("skipped 2 of 5 files", 1, true), ds.warning)
  T.truthy(ds.warning:find("cut.png", 1, true) and ds.warning:find("text.jpg", 1, true), ds.warning)
  T.errors(function() md.data.image_folder(path("bad"), { strict = true }) end, "cut.png")
  T.eq(md.data.image_folder(path("rand")).warning, nil)
  md.core.mkdir_p(path("allbad"))
  write(path("allbad/x.png"), "junk")
  T.errors(function() md.data.image_folder(path("allbad")) end, "no readable image")
  T.errors(function() md.image.load(path("bad/text.jpg")) end, "neither a PNG nor a JPEG")
end)

T.test("options are checked; differing sizes name two files", function()
  T.errors(function() md.data.image_folder(path("rand"), { size = 0 }) end, "size must be 1 to 16384")
  T.errors(function() md.data.image_folder(path("rand"), { size = { 4 } }) end, "size must be a number or {height, width}")
  T.errors(function() md.data.image_folder(path("rand"), { size = 4, resize = "centre_crop" }) end,
    "did you mean 'center_crop'")
  T.errors(function() md.data.image_folder(path("rand"), { resize = "resize" }) end, "needs size")
  T.errors(function() md.data.image_folder(path("rand"), { hlfip = true }) end, "did you mean 'hflip'")
  T.errors(function() md.data.png_folder(path("rand"), { channels = 2 }) end, "channels must be one of 1, 3")
  md.core.mkdir_p(path("sizes"))
  md.image.save(md.zeros { 1, 4, 4 }, path("sizes/a.png"))
  md.image.save(md.zeros { 1, 5, 4 }, path("sizes/b.png"))
  T.errors(function() md.data.image_folder(path("sizes")) end, "b.png is 5x4, " .. path("sizes/a.png") .. " is 4x4")
  T.eq(shape(md.data.image_folder(path("sizes"), { size = 4 }).images), "2x1x4x4")
end)

T.test("JPEG: decodes close to the PNG it came from; gray stays gray; forged sizes are refused", function()
  md.core.mkdir_p(path("jpg"))
  if not jpeg then
    T.errors(function() md.core.jpeg_write(path("jpg/a.jpg"), md.zeros { 1, 8, 8 }) end, "install libturbojpeg0-dev")
    print("  (JPEG support not built: checked the error only)")
    return
  end
  -- a smooth colour image: JPEG's loss stays small
  local planes = {}
  for c = 1, 3 do
    local rows = {}
    for y = 1, 16 do
      rows[y] = {}
      for x = 1, 24 do rows[y][x] = ({ (y - 1) / 15, (x - 1) / 23, (x + y) / 40 })[c] * 1.6 - 0.8 end
    end
    planes[c] = rows
  end
  local img = md.tensor(planes)
  md.image.save(img, path("jpg/a.png"))
  md.image.save(img, path("jpg/a.jpg"), { quality = 95 })
  local from_png, from_jpg = md.image.load(path("jpg/a.png")), md.image.load(path("jpg/a.jpg"))
  T.eq(shape(from_jpg), "3x16x24")
  T.truthy((from_jpg - from_png):abs():mean():item() < 0.02, "mean error " .. (from_jpg - from_png):abs():mean():item())
  T.truthy((from_jpg - from_png):abs():max():item() < 0.15, "max error " .. (from_jpg - from_png):abs():max():item())
  md.core.jpeg_write(path("jpg/g.jpeg"), md.full({ 1, 16, 24 }, 0.3), 90)
  T.eq(shape(md.image.load(path("jpg/g.jpeg"))), "1x16x24")
  local ds = md.data.image_folder(path("jpg"))
  T.eq(ds.n, 3); T.eq(ds.channels, 3)
  T.near(md.data.float_images(ds)[3], md.full({ 3, 16, 24 }, 0.3), 2 / 255, "the gray JPEG as RGB")
  -- the same file claiming 16000 x 16000 pixels (SOF0: marker, length, precision, height, width)
  local bytes = read(path("jpg/g.jpeg"))
  local sof = assert(bytes:find("\255\192", 3, true), "a baseline JPEG has an SOF0 marker")
  write(path("forged.jpg"), bytes:sub(1, sof + 4) .. string.pack(">I2I2", 16000, 16000) .. bytes:sub(sof + 9))
  T.errors(function() md.image.load(path("forged.jpg")) end, "declares a 16000 x 16000 image")
  local colour_bytes = read(path("jpg/a.jpg"))
  write(path("cut.jpg"), colour_bytes:sub(1, #colour_bytes - 100)) -- the header whole, the data cut short
  T.errors(function() md.image.load(path("cut.jpg")) end, "cut.jpg is corrupt or truncated")
  write(path("cut.jpg"), bytes:sub(1, #bytes // 3))
  T.errors(function() md.image.load(path("cut.jpg")) end, "cut.jpg is corrupt")
  T.errors(function() md.image.save(img, path("jpg/q.jpg"), { quality = 101 }) end, "quality must be 1 to 100")
end)

T.test("CLI: 32x32 and 64x64 RGB folders train a tiny U-Net that samples at that size", function()
  md.core.mkdir_p(path("faces/red")); md.core.mkdir_p(path("faces/blue"))
  md.manual_seed(7)
  for i = 1, 4 do
    md.image.save((md.rand { 3, 40, 40 } * 0.4 + constant({ 0.5, -0.5, -0.5 }, 40, 40)):clamp(-1, 1),
      path(("faces/red/%d.png"):format(i)))
    md.image.save((md.rand { 3, 36, 48 } * 0.4 + constant({ -0.5, -0.5, 0.5 }, 36, 48)):clamp(-1, 1),
      path(("faces/blue/%d.png"):format(i)))
  end
  for _, size in ipairs { "32", "64" } do
    local ck = path("faces" .. size .. ".safetensors")
    local status = cli.run { "train", "--data", path("faces"), "--image-size", size, "--hflip", "--steps", "2",
                             "--batch-size", "4", "--channels", "16", "--checkpoint", ck, "--run-dir",
                             path("faces-run"), "--sample-every", "0" }
    T.eq(status, 0)
    local model = md.load(ck)
    T.eq(model.config.in_channels, 3)
    local x = md.sample(model, { n = 2, steps = 2, class = { 0, 1 }, progress = false })
    T.eq(shape(x), ("2x3x%sx%s"):format(size, size))
    T.eq(cli.run { "sample", "--checkpoint", ck, "--n", "2", "--steps", "2", "--class", "red", "--out",
                   path("faces" .. size .. ".png") }, 0, "sample from the CLI by class name")
  end
  T.eq(cli.run { "train", "--image-size", "32", "--steps", "1" }, 1) -- needs --data
  T.eq(cli.run { "train", "--data", path("faces"), "--image-size", "3x", "--steps", "1" }, 2)
end)

T.test("trainer: a 64x48 RGB folder trains and samples at its size", function()
  local cfg = { model_channels = 8, channel_mult = { 1, 2 }, num_res_blocks = 1, attention_resolutions = {},
                num_head_channels = 8, norm_groups = 4, in_channels = 3, out_channels = 3, image_size = { 64, 48 } }
  local ds = md.data.image_folder(path("faces"), { size = { 64, 48 }, resize = "random_crop", hflip = true })
  local model = md.nn.UNet(cfg)
  local r = md.trainer.train { model = model, data = ds, steps = 2, batch_size = 2, checkpoint = path("w.safetensors"),
                               progress = false, sample_every = 0 }
  T.eq(r.steps, 2)
  local back = md.load(path("w.safetensors"))
  T.eq(shape(md.sample(back, { n = 1, steps = 2, progress = false })), "1x3x64x48")
end)

T.finish()
