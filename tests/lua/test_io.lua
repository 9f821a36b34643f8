-- Images, data sets, loaders and checkpoints through the Lua API.
local T = require "harness"
local md = require "moondust"

local dir, path = T.tempdir()
local write, read = T.write_file, T.read_file

T.test("PNG round trip and grids", function()
  local img = md.rand { 3, 6, 5 } * 2 - 1
  md.image.save(img, path("a.png"))
  local back = md.image.load(path("a.png"), { channels = 3 })
  T.near(back, img, 1 / 127.5)
  md.image.save_grid(md.zeros { 5, 1, 4, 4 }, path("grid.png"), { nrow = 3, padding = 1 })
  T.eq(table.concat(md.image.load(path("grid.png")):shape(), "x"), "1x11x16")
end)

T.test("a malformed PNG gives a clear error", function()
  write(path("bad.png"), "\137PNG\r\n\26\n garbage")
  T.errors(function() md.image.load(path("bad.png")) end, "bad.png")
  local good = read(path("a.png"))
  write(path("cut.png"), good:sub(1, #good // 2))
  T.errors(function() md.image.load(path("cut.png")) end, "cut.png")
end)

T.test("image shapes are checked with clear errors", function()
  T.errors(function() md.image.save(md.zeros { 2, 4, 4 }, path("two.png")) end, "C = 1 or 3, got [2, 4, 4]")
  T.errors(function() md.image.save(md.zeros { 2, 1, 4, 4 }, path("batch.png")) end, "C x H x W")
  T.errors(function() md.image.save_grid(md.zeros { 1, 4, 4 }, path("g.png")) end, "N x C x H x W")
  T.errors(function() md.image.load(path("a.png"), { channels = 2 }) end, "channels must be one of 1, 3")
  -- a 1 x C x H x W image saves as C x H x W; gray loads as RGB by replication
  md.image.save(md.full({ 1, 1, 3, 2 }, 0.2), path("one.png"))
  local rgb = md.image.load(path("one.png"), { channels = 3 })
  T.eq(table.concat(rgb:shape(), "x"), "3x3x2")
  T.near(rgb, md.full({ 3, 3, 2 }, 0.2), 1 / 255)
end)

T.test("a truncated IDX file gives a clear error; missing files name the package", function()
  -- a gzip-free IDX file (gzread reads plain files too), cut short
  local header = string.pack(">I4I4I4I4", 0x00000803, 10, 28, 28)
  md.core.mkdir_p(path("fm"))
  write(path("fm/train-images-idx3-ubyte.gz"), header .. string.rep("\0", 100))
  write(path("fm/train-labels-idx1-ubyte.gz"), string.pack(">I4I4", 0x00000801, 10) .. string.rep("\1", 10))
  T.errors(function() md.data.fashion_mnist { root = path("fm") } end, "truncated: expected 7840 bytes of images, got 100")
  T.errors(function() md.data.fashion_mnist { root = path("nowhere") } end, "dataset-fashion-mnist")
end)

T.test("Fashion-MNIST loads as N x 1 x 28 x 28 in [-1, 1]", function()
  local ok, ds = pcall(md.data.fashion_mnist, { split = "test" })
  if not ok then
    T.truthy(tostring(ds):find("dataset-fashion-mnist", 1, true))
    print("  (Fashion-MNIST is not installed: checked the error only)")
    return
  end
  T.eq(table.concat(ds.images:shape(), "x"), "10000x1x28x28")
  T.eq(ds.images:min():item(), -1)
  T.eq(ds.images:max():item(), 1)
  T.eq(ds.labels:max():item(), 9)
  T.eq(#ds.classes, 10)
end)

T.test("a folder of PNGs loads, with classes from sub-folders", function()
  md.core.mkdir_p(path("pngs/cat")); md.core.mkdir_p(path("pngs/dog"))
  md.image.save(md.zeros { 1, 8, 8 }, path("pngs/cat/1.png"))
  md.image.save(md.ones { 1, 8, 8 }, path("pngs/dog/1.png"))
  md.image.save(md.ones { 1, 8, 8 }, path("pngs/dog/2.png"))
  local ds = md.data.png_folder(path("pngs"))
  T.eq(ds.n, 3)
  T.near(ds.labels, { 0, 1, 1 })
  T.eq(ds.classes[2], "dog")
  md.image.save(md.ones { 1, 9, 8 }, path("pngs/dog/3.png"))
  T.errors(function() md.data.png_folder(path("pngs")) end, "all must share a size")
end)

T.test("loader: batches, epochs and an exact resume", function()
  local ds = { images = md.arange(10):reshape(10, 1, 1, 1), labels = md.arange(10), n = 10 }
  local L = md.data.loader(ds, { batch_size = 4, generator = md.Generator(3) })
  T.eq(#L, 3)
  local seen = {}
  for x, y in L() do
    T.near(x:reshape(-1), y)
    for _, v in ipairs(y:flat()) do seen[v] = (seen[v] or 0) + 1 end
  end
  for i = 0, 9 do T.eq(seen[i], 1, "each example once per epoch") end
  local A = md.data.loader(ds, { batch_size = 4, generator = md.Generator(5) })
  for _ = 1, 4 do A:next() end
  local st = A:state()
  local want = { A:next(), A:next(), A:next() }
  local B = md.data.loader(ds, { batch_size = 4, generator = md.Generator(99) })
  B:set_state(st)
  for i = 1, 3 do T.near((B:next()), want[i], 0) end
end)

T.test("checkpoints: round trip, metadata, corrupt and truncated files", function()
  md.manual_seed(1)
  local net = md.nn.Sequential(md.nn.Linear(3, 4), md.nn.SiLU(), md.nn.Linear(4, 2))
  md.save(path("net.safetensors"), net, { step = 12, config = { widths = { 3, 4, 2 } }, note = "x" })
  local tensors, meta = md.load(path("net.safetensors"))
  T.eq(meta.step, 12)
  T.eq(meta.config.widths[2], 4)
  T.eq(meta.note, "x")
  md.manual_seed(2)
  local other = md.nn.Sequential(md.nn.Linear(3, 4), md.nn.SiLU(), md.nn.Linear(4, 2))
  other:load_state_dict(tensors)
  local x = md.randn { 5, 3 }
  T.near(other(x), net(x), 0)
  -- the header parses as standard safetensors: length, JSON, aligned data
  local raw = read(path("net.safetensors"))
  local n = string.unpack("<I8", raw)
  local header = md.core.json_decode(raw:sub(9, 8 + n))
  T.eq(header["0.weight"].dtype, "F32")
  T.eq((8 + n) % 8, 0)
  write(path("cut.safetensors"), raw:sub(1, #raw - 10))
  T.errors(function() md.load(path("cut.safetensors")) end, "truncated")
  write(path("junk.safetensors"), string.pack("<I8", 5) .. "{oops")
  T.errors(function() md.load(path("junk.safetensors")) end, "header is not JSON")
  write(path("tiny.safetensors"), "abc")
  T.errors(function() md.load(path("tiny.safetensors")) end, "not a valid safetensors file")
  T.errors(function() md.load(path("absent.safetensors")) end, "cannot open")
  -- offsets that do not match the shape, and entries that are not tensors
  local hdr = '{"w":{"dtype":"F32","shape":[2,2],"data_offsets":[0,12]}}'
  write(path("offs.safetensors"), string.pack("<I8", #hdr) .. hdr .. string.rep("\0", 12))
  T.errors(function() md.load(path("offs.safetensors")) end, "data_offsets [0, 12] for 4 floats")
  T.errors(function() md.save(path("bad.safetensors"), { w = 3 }) end, "is a number, not a tensor")
end)

T.test("a U-Net checkpoint loads back as a model with identical outputs", function()
  md.manual_seed(4)
  local cfg = { model_channels = 16, num_head_channels = 16 }
  local m = md.nn.UNet(cfg)
  md.no_grad(function() for _, p in ipairs(m:parameters()) do p:add_(md.randn(p:shape()) * 0.01) end end)
  md.save(path("unet.safetensors"), { model = m }, { model = "unet", config = m.config })
  local back = md.load(path("unet.safetensors"))
  local x, t, y = md.randn { 2, 1, 28, 28 }, md.tensor { 5, 700 }, md.tensor { 1, 10 }
  md.no_grad(function() T.near(back(x, t, y), m(x, t, y), 0) end)
end)

T.test("JSON: exact round trips, strict parsing, clear errors", function()
  local v = { a = 1, b = { 0.1, 1 / 3, -2.5e-300, 1e300 }, s = 'q"uo\\te\n\1', t = true, f = false, e = {}, [7] = "seven" }
  local text = md.core.json_encode(v)
  T.eq(text, md.core.json_encode(md.core.json_decode(text)), "stable text")
  local back = md.core.json_decode(text)
  for i = 1, 4 do T.eq(back.b[i], v.b[i], "double " .. i .. " exact") end
  T.eq(back.s, v.s); T.eq(back.t, true); T.eq(back.f, false); T.eq(back["7"], "seven"); T.eq(next(back.e), nil)
  T.eq(math.type(md.core.json_decode("12")), "integer")
  T.eq(md.core.json_decode('"\\u00e9\\ud83d\\ude00"'), "\u{e9}\u{1f600}")
  for _, bad in ipairs { "{", '{"a":1,}', "[1 2]", "01", "nul", '"\\ud800"', "1 2", ('['):rep(40) .. (']'):rep(40) } do
    local ok, err = pcall(md.core.json_decode, bad)
    T.truthy(not ok and err:match("^json: .* at byte %d+"), bad .. " -> " .. tostring(err))
  end
  local cyc = {}; cyc.self = cyc
  T.truthy(select(2, pcall(md.core.json_encode, cyc)):match("nested more than"))
  T.truthy(select(2, pcall(md.core.json_encode, { print })):match("cannot encode a function"))
  T.truthy(select(2, pcall(md.core.json_encode, 0 / 0)):match("cannot encode"))
end)

T.test("mkdir_p and list_dir take any path and never a shell", function()
  local odd = path("it's a \"dir\"; touch pwned/sub/deeper")
  md.core.mkdir_p(odd)
  md.core.mkdir_p(odd) -- existing: fine
  write(odd .. "/b.png", "x"); write(odd .. "/a.txt", "y")
  local names = {}
  for _, e in ipairs(md.core.list_dir(odd)) do names[#names + 1] = e.name .. (e.dir and "/" or "") end
  T.eq(table.concat(names, ","), "a.txt,b.png")
  T.eq(io.open("pwned", "r"), nil, "nothing ran")
  T.truthy(select(2, pcall(md.core.mkdir_p, odd .. "/b.png")):match("exists and is not a directory"))
  T.truthy(select(2, pcall(md.core.list_dir, path("missing"))):match("cannot read the directory"))
end)

os.execute("rm -rf " .. dir)
T.finish()
