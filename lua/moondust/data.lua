-- Data sets and batches.
--   md.data.fashion_mnist{split = "train" | "test", root = ...}
--   md.data.png_folder(dir, {channels = 1})
--   md.data.loader(ds, {batch_size = 128, shuffle = true, drop_last = false, generator = md.Generator(0)})
-- A data set is {images = N x C x H x W in [-1, 1], labels = N floats, n = N, classes = {...}}.
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

-- Every PNG under dir (sorted). With sub-folders, each sub-folder is a
-- class (sorted names -> labels 0, 1, ...); otherwise every label is 0.
-- The PNG files under dir, depth first in name order: {path = ..., rel = path below dir}.
local function png_files(dir, rel, out)
  out = out or {}
  for _, e in ipairs(md.core.list_dir(dir)) do
    local path, r = dir:gsub("/+$", "") .. "/" .. e.name, rel and (rel .. "/" .. e.name) or e.name
    if e.dir then png_files(path, r, out)
    elseif e.name:lower():match("%.png$") then out[#out + 1] = { path = path, rel = r } end
  end
  return out
end

function data.png_folder(dir, opts)
  if type(dir) ~= "string" then error("png_folder: expected a folder path, got " .. type(dir), 2) end
  opts = options.check("png_folder", opts, { channels = "number" })
  options.choice("png_folder", "channels", opts.channels, { 1, 3 })
  local ok, found = pcall(png_files, dir)
  if not ok then error("png_folder: " .. tostring(found):gsub("^.-: ", ""), 2) end
  local files = {}
  for i, f in ipairs(found) do files[i] = f.path end
  if #files == 0 then error("png_folder: no PNG files under " .. dir, 2) end
  local class_of, classes = {}, {}
  for _, f in ipairs(found) do
    local sub = f.rel:match("^([^/]+)/")
    if sub and not class_of[sub] then class_of[sub] = true; classes[#classes + 1] = sub end
  end
  table.sort(classes)
  local index = {}
  for i, c in ipairs(classes) do index[c] = i - 1 end
  local images, labels, shape = {}, {}, nil
  for i, f in ipairs(files) do
    local img = md.image.load(f, { channels = opts.channels or 1 })
    local s = table.concat(img:shape(), "x")
    shape = shape or s
    if s ~= shape then error(("png_folder: %s is %s, the first image is %s; all must share a size"):format(f, s, shape), 2) end
    images[i] = img
    local sub = found[i].rel:match("^([^/]+)/")
    labels[i] = sub and index[sub] or 0
  end
  return { images = md.stack(images), labels = md.tensor(labels), n = #files,
           classes = #classes > 0 and classes or { "all" }, files = files }
end

-- Batches of a data set. loader() iterates over one epoch; loader:next()
-- returns the next batch and moves on to a new epoch (a new shuffle) when
-- one ends. loader:state() / loader:set_state() let a resumed run see
-- exactly the batches it would have seen.
local Loader = {}
Loader.__index = Loader

function data.loader(ds, opts)
  if type(ds) ~= "table" or not md.is_tensor(ds.images) or not ds.n then
    error("loader: expected a data set {images = tensor, labels = tensor, n = count}", 2)
  end
  opts = options.check("loader", opts, { batch_size = "number", shuffle = "boolean", drop_last = "boolean",
                                          generator = true })
  options.integer("loader", "batch_size", opts.batch_size, 1)
  local self = setmetatable({
    ds = ds, batch_size = opts.batch_size or 128, shuffle = opts.shuffle ~= false,
    drop_last = opts.drop_last or false, generator = opts.generator or md.Generator(0),
    epoch = 0, pos = 0, order = nil,
  }, Loader)
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
  return md.index_select(self.ds.images, 1, it), md.index_select(self.ds.labels, 1, it)
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
