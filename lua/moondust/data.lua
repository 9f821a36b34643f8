-- Data sets and batches.
--   md.data.fashion_mnist{split = "train" | "test", root = ...}
--   md.data.image_folder(dir, {channels =, size =, resize =, hflip =, strict =})
--   md.data.loader(ds, {batch_size = 128, shuffle = true, drop_last = false, generator = md.Generator(0)})
-- A data set is {images = ..., labels = N floats, n = N, classes = {...}}, where images is an
-- N x C x H x W float tensor in [-1, 1] (Fashion-MNIST) or a uint8 byte store (image_folder)
-- whose loader hands out float batches.
local md = require "moondust"
local options = require "moondust.options"

local data = {}

data.FASHION_ROOT = "/usr/share/datasets/fashion-mnist"
data.FASHION_CLASSES = { "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
                         "Bag", "Ankle boot" }

local function exists(path)
  local f = io.open(path, "rb")
  if f then f:close() end
  return f ~= nil
end

-- Images scaled from bytes 0..255 to [-1, 1], as N x 1 x H x W.
local function idx_images(path)
  local raw = md.core.idx_read(path)
  local s = raw:shape()
  if #s ~= 3 then error(("fashion_mnist: %s holds %d-dimensional data, expected N x H x W"):format(path, #s), 3) end
  return (raw * (2 / 255) - 1):reshape(s[1], 1, s[2], s[3])
end

function data.fashion_mnist(opts)
  opts = options.check("fashion_mnist", opts, { split = "string", root = "string", limit = "number" })
  local split = options.choice("fashion_mnist", "split", opts.split or "train", { "train", "test" })
  options.integer("fashion_mnist", "limit", opts.limit, 1)
  local prefix = ({ train = "train", test = "t10k" })[split]
  local root = opts.root or os.getenv("MOONDUST_FASHION_MNIST") or data.FASHION_ROOT
  local images_path = root .. "/" .. prefix .. "-images-idx3-ubyte.gz"
  local labels_path = root .. "/" .. prefix .. "-labels-idx1-ubyte.gz"
  for _, p in ipairs { images_path, labels_path } do
    if not exists(p) then
      error(("fashion_mnist: %s is missing. Install Debian's dataset-fashion-mnist package "
             .. "(apt-get install dataset-fashion-mnist) or pass root = a folder holding the IDX files"):format(p), 2)
    end
  end
  local images, labels = idx_images(images_path), md.core.idx_read(labels_path)
  if labels:dim() ~= 1 or labels:size(1) ~= images:size(1) then
    error(("fashion_mnist: %d images but %d labels"):format(images:size(1), labels:numel()), 2)
  end
  if opts.limit then
    local n = math.min(opts.limit, images:size(1))
    images, labels = images:narrow(1, 1, n), labels:narrow(1, 1, n)
  end
  return { images = images, labels = labels, n = images:size(1), classes = data.FASHION_CLASSES }
end

-- The PNG and JPEG files under dir, depth first in name order: {path = ..., rel = path below dir}.
local IMAGE_EXTENSIONS = { png = true, jpg = true, jpeg = true }
local function image_files(dir, rel, out)
  out = out or {}
  for _, e in ipairs(md.core.list_dir(dir)) do
    local path, r = dir:gsub("/+$", "") .. "/" .. e.name, rel and (rel .. "/" .. e.name) or e.name
    if e.dir then image_files(path, r, out)
    elseif IMAGE_EXTENSIONS[(e.name:match("%.(%w+)$") or ""):lower()] then out[#out + 1] = { path = path, rel = r } end
  end
  return out
end

data.RESIZE_MODES = { "center_crop", "resize", "random_crop" }

-- random_crop keeps each image 1/8 larger on each side than `size`; the
-- loader picks the size x size window anew every time the image is drawn.
local function crop_margin(side) return side + (side + 7) // 8 end

-- size = N or {H, W} -> H, W (nil when not given).
local function size_option(where, v)
  if v == nil then return nil end
  if type(v) == "number" then
    options.integer(where, "size", v, 1, 16384, 2)
    return math.tointeger(v), math.tointeger(v)
  end
  if type(v) ~= "table" or #v ~= 2 then
    error(("%s: size must be a number or {height, width}, got %s"):format(where, type(v)), 3)
  end
  options.integer(where, "size[1] (height)", v[1], 1, 16384, 2)
  options.integer(where, "size[2] (width)", v[2], 1, 16384, 2)
  return math.tointeger(v[1]), math.tointeger(v[2])
end

-- The message for files that could not be read: their count and the first few.
local function skipped_warning(where, skipped, total)
  if #skipped == 0 then return nil end
  local shown = {}
  for i = 1, math.min(3, #skipped) do shown[i] = skipped[i].error end
  return ("%s: skipped %d of %d files that could not be read: %s%s"):format(where, #skipped, total,
    table.concat(shown, "; "), #skipped > 3 and "; ..." or "")
end

-- Every PNG and JPEG under dir, decoded in parallel into a uint8 byte store
-- (N x C x H x W; the loader turns batches into floats in [-1, 1]). With
-- sub-folders, each sub-folder is a class (sorted names -> labels 0, 1, ...);
-- otherwise every label is 0. Options:
--   channels  1 or 3; default 3 when any image is colour, else 1 (ds.channels says which)
--   size      N or {H, W}; without it every image must have the same size
--   resize    how images meet size: "center_crop" (default: the shorter side
--             scaled to fit, then the centre cut out, torchvision's Resize +
--             CenterCrop), "resize" (stretched, the aspect ratio may change),
--             "random_crop" (as center_crop to a 1/8 larger size; the loader
--             takes a random window each time)
--   hflip     the loader mirrors each image with probability 1/2
--   strict    a file that cannot be read is an error (default: skipped,
--             listed in ds.skipped, counted in ds.warning)
function data.image_folder(dir, opts)
  local w = "image_folder"
  if type(dir) ~= "string" then error(w .. ": expected a folder path, got " .. type(dir), 2) end
  opts = options.check(w, opts, { channels = "number", size = true, resize = "string", hflip = "boolean",
                                  strict = "boolean" })
  options.choice(w, "channels", opts.channels, { 1, 3 })
  local H, W = size_option(w, opts.size)
  local mode = options.choice(w, "resize", opts.resize, data.RESIZE_MODES)
  if mode and not H then error(("%s: resize = '%s' needs size"):format(w, mode), 2) end
  mode = mode or (H and "center_crop")
  local ok, found = pcall(image_files, dir)
  if not ok then error(w .. ": " .. tostring(found):gsub("^.-: ", ""), 2) end
  if #found == 0 then error(w .. ": no PNG or JPEG files under " .. dir, 2) end
  local classes, index = {}, {}
  for _, f in ipairs(found) do
    local sub = f.rel:match("^([^/]+)/")
    if sub and not index[sub] then index[sub] = true; classes[#classes + 1] = sub end
  end
  table.sort(classes)
  for i, c in ipairs(classes) do index[c] = i - 1 end

  local skipped, readable = {}, {}
  local function skip(f, msg)
    if opts.strict then error(("%s: %s (strict = true)"):format(w, msg), 3) end
    skipped[#skipped + 1] = { path = f.path, error = msg }
  end
  local paths = {}
  for i, f in ipairs(found) do paths[i] = f.path end
  for i, info in ipairs(md.core.image_probe(paths)) do
    if info.error then skip(found[i], info.error) else readable[#readable + 1] = { file = found[i], info = info } end
  end
  if #readable == 0 then error(("%s: no readable image under %s: %s"):format(w, dir, skipped[1].error), 2) end
  local channels, detected = opts.channels, opts.channels == nil
  if detected then
    channels = 1
    for _, r in ipairs(readable) do if r.info.channels == 3 then channels = 3 end end
  end
  local store_h, store_w, fit
  if H then
    store_h, store_w = H, W
    if mode == "random_crop" then store_h, store_w = crop_margin(H), crop_margin(W) end
    fit = mode == "resize" and "resize" or "cover"
  else
    local first = readable[1]
    for _, r in ipairs(readable) do
      if r.info.h ~= first.info.h or r.info.w ~= first.info.w then
        error(("%s: %s is %dx%d, %s is %dx%d; all must share a size (or pass size = N)"):format(w, r.file.path,
          r.info.h, r.info.w, first.file.path, first.info.h, first.info.w), 2)
      end
    end
    H, W, store_h, store_w, fit = first.info.h, first.info.w, first.info.h, first.info.w, "exact"
  end
  local decode_paths = {}
  for i, r in ipairs(readable) do decode_paths[i] = r.file.path end
  local store, errors = md.core.image_decode(decode_paths, channels, store_h, store_w, fit)
  local files, labels = {}, {}
  for i, r in ipairs(readable) do
    if errors[i] then skip(r.file, errors[i])
    else
      local sub = r.file.rel:match("^([^/]+)/")
      files[#files + 1] = r.file.path
      labels[#labels + 1] = sub and index[sub] or 0
    end
  end
  if #files == 0 then error(("%s: no readable image under %s: %s"):format(w, dir, skipped[1].error), 2) end
  return { images = store, labels = md.tensor(labels), n = #files, classes = #classes > 0 and classes or { "all" },
           files = files, channels = channels, channels_detected = detected, height = H, width = W,
           resize = mode, hflip = opts.hflip or false, skipped = skipped,
           warning = skipped_warning(w, skipped, #found) }
end
-- md.data.png_folder(dir, opts): the older name of md.data.image_folder.
function data.png_folder(dir, opts) return data.image_folder(dir, opts) end

-- C, H, W of the images a data set hands out (a random_crop store holds larger ones).
function data.image_shape(ds)
  local im = ds.images
  if md.is_tensor(im) then return im:size(2), im:size(3), im:size(4) end
  return im:size(2), ds.height or im:size(3), ds.width or im:size(4)
end

-- Whether ds.images is a tensor or a byte store (md.data.image_folder).
function data.is_image_set(ds)
  return type(ds) == "table" and (md.is_tensor(ds.images) and ds.images:dim() == 4 or md.core.is_byte_store(ds.images))
    and type(ds.n) == "number"
end

-- Images first .. first + count - 1 (1-based) of a data set, or of an
-- N x C x H x W tensor, as floats in [-1, 1] (centre windows for random_crop).
function data.rows(src, first, count)
  local im = md.is_tensor(src) and src or src.images
  if md.is_tensor(im) then return im:narrow(1, first, count) end
  local _, h, w = data.image_shape(src)
  return im:gather(md.arange(first - 1, first - 1 + count), h, w)
end

-- Every image of a data set as one N x C x H x W float tensor in [-1, 1];
-- a tensor data set's own tensor. (md.metrics reads big sets by data.rows.)
function data.float_images(ds)
  if md.is_tensor(ds.images) then return ds.images end
  return data.rows(ds, 1, ds.n)
end

-- Batches of a data set. loader() iterates over one epoch; loader:next()
-- returns the next batch and moves on to a new epoch (a new shuffle) when
-- one ends. loader:state() / loader:set_state() let a resumed run see
-- exactly the batches it would have seen.
local Loader = {}
Loader.__index = Loader

function data.loader(ds, opts)
  if not data.is_image_set(ds) then
    error("loader: expected a data set {images = N x C x H x W tensor or byte store, labels = tensor, n = count}", 2)
  end
  opts = options.check("loader", opts, { batch_size = "number", shuffle = "boolean", drop_last = "boolean",
                                          generator = true })
  options.integer("loader", "batch_size", opts.batch_size, 1)
  local self = setmetatable({
    ds = ds, batch_size = opts.batch_size or 128, shuffle = opts.shuffle ~= false,
    drop_last = opts.drop_last or false, generator = opts.generator or md.Generator(0),
    epoch = 0, pos = 0, order = nil,
  }, Loader)
  -- A byte store's batches may be augmented: mirrored (ds.hflip) and, when
  -- it holds larger images than it hands out (random_crop), windowed.
  if ds.hflip and md.is_tensor(ds.images) then
    error("loader: hflip needs a byte-store data set (md.data.image_folder)", 2)
  end
  if not md.is_tensor(ds.images) then
    local _, h, w = data.image_shape(ds)
    self.out_h, self.out_w = h, w
    self.augment = ds.hflip or h < ds.images:size(3) or w < ds.images:size(4)
    self.aug_gen = self.augment and md.Generator(0) or nil
  end
  return self
end

function Loader:__len()
  local n = self.ds.n // self.batch_size
  if not self.drop_last and self.ds.n % self.batch_size ~= 0 then n = n + 1 end
  return n
end

-- A new order for the next epoch, drawn from the loader's generator.
function Loader:new_epoch()
  self.epoch_start_state = self.generator:get_state()
  local n = self.ds.n
  local order = {}
  for i = 1, n do order[i] = i - 1 end
  if self.shuffle then
    local u = self.generator:rand({ n }):flat()
    for i = n, 2, -1 do
      local j = math.floor(u[i] * i) + 1
      order[i], order[j] = order[j], order[i]
    end
  end
  -- the image at position p of the epoch takes its 4 augmentation numbers
  -- from block p of this seed, so a resumed epoch repeats them exactly
  if self.augment then self.aug_seed = math.floor(self.generator:rand({ 1 })[1] * (1 << 24)) end
  self.order, self.pos, self.epoch = order, 0, self.epoch + 1
end

function Loader:next()
  if not self.order or self.pos >= self.ds.n or (self.drop_last and self.pos + self.batch_size > self.ds.n) then
    self:new_epoch()
  end
  local k = math.min(self.batch_size, self.ds.n - self.pos)
  local idx = table.move(self.order, self.pos + 1, self.pos + k, 1, {})
  self.pos = self.pos + k
  local it = md.tensor(idx)
  local labels = md.index_select(self.ds.labels, 1, it)
  if md.is_tensor(self.ds.images) then return md.index_select(self.ds.images, 1, it), labels end
  local aug
  if self.augment then
    self.aug_gen:set_state { seed = self.aug_seed, counter = self.pos - k }
    aug = self.aug_gen:rand { k, 4 }
  end
  return self.ds.images:gather(it, self.out_h, self.out_w, aug, self.ds.hflip), labels
end

function Loader:__call()
  self:new_epoch()
  local batches = #self
  local done = 0
  return function()
    if done >= batches then return nil end
    done = done + 1
    return self:next()
  end
end

function Loader:state()
  return { epoch = self.epoch, pos = self.pos, generator = self.epoch_start_state or self.generator:get_state() }
end

function Loader:set_state(s)
  self.generator:set_state(s.generator)
  self.epoch = s.epoch - 1
  self:new_epoch()
  self.pos = s.pos
end

return data
