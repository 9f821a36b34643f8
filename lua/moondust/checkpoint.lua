-- Checkpoints in the safetensors format: an 8-byte little-endian header
-- length, a JSON header {name: {dtype, shape, data_offsets}, __metadata__:
-- {string: string}}, then raw little-endian float32 data. Any safetensors
-- reader can open them. Files are written to "<path>.tmp" and renamed, so
-- a crash never leaves a broken checkpoint behind.
--
--   md.save(path, model_or_tensors, meta)
--   local model, meta = md.load(path)       -- a checkpoint with a model config
--   local tensors, meta = md.load(path)     -- any other safetensors file
local md = require "moondust"
local json = require "moondust.json"

local checkpoint = {}

-- name -> tensor from a tensor table, an object with :state_dict(), or a
-- table of such objects (their names prefixed with the key and a dot).
local function flatten(obj, prefix, out)
  prefix, out = prefix or "", out or {}
  if type(obj) == "table" and obj.state_dict and type(obj.state_dict) == "function" then
    obj = obj:state_dict()
  end
  for k, v in pairs(obj) do
    if md.is_tensor(v) then
      out[prefix .. k] = v
    elseif type(v) == "table" then
      flatten(v, prefix .. k .. ".", out)
    else
      error(("save: entry '%s%s' is a %s, not a tensor"):format(prefix, tostring(k), type(v)), 3)
    end
  end
  return out
end
checkpoint.flatten = flatten

-- Metadata values must be strings in safetensors; others are stored as JSON.
local function encode_meta(meta)
  local out = {}
  for k, v in pairs(meta or {}) do
    out[tostring(k)] = type(v) == "string" and v or json.encode(v)
  end
  return out
end

local function decode_meta(meta)
  local out = {}
  for k, v in pairs(meta or {}) do
    local first = v:sub(1, 1)
    if first == "{" or first == "[" or v == "true" or v == "false" or tonumber(v) then
      local ok, decoded = pcall(json.decode, v)
      out[k] = ok and decoded or v
    else
      out[k] = v
    end
  end
  return out
end

function checkpoint.save(path, obj, meta)
  assert(type(path) == "string", "save: expected a path")
  local tensors = flatten(obj)
  local names = {}
  for name in pairs(tensors) do names[#names + 1] = name end
  table.sort(names)
  local header, chunks, offset = { __metadata__ = encode_meta(meta) }, {}, 0
  for i, name in ipairs(names) do
    local t = tensors[name]:detach()
    local bytes = t:bytes()
    header[name] = { dtype = "F32", shape = t:shape(), data_offsets = { offset, offset + #bytes } }
    chunks[i] = bytes
    offset = offset + #bytes
  end
  local text = json.encode(header)
  text = text .. string.rep(" ", (8 - #text % 8) % 8) -- align the data to 8 bytes
  local tmp = path .. ".tmp"
  local f, err = io.open(tmp, "wb")
  if not f then error("save: cannot write " .. tmp .. ": " .. tostring(err), 2) end
  local ok, werr = f:write(string.pack("<I8", #text), text, table.concat(chunks))
  local closed, cerr = f:close()
  if not ok or not closed then
    os.remove(tmp)
    error("save: writing " .. path .. " failed: " .. tostring(werr or cerr), 2)
  end
  local renamed, rerr = os.rename(tmp, path)
  if not renamed then error("save: cannot rename " .. tmp .. " to " .. path .. ": " .. tostring(rerr), 2) end
  return path
end

-- -> tensors (name -> tensor), meta (decoded)
function checkpoint.read(path)
  local f, err = io.open(path, "rb")
  if not f then error("load: cannot open " .. path .. ": " .. tostring(err), 2) end
  local data = f:read("a")
  f:close()
  local function corrupt(why) error(("load: %s is not a valid safetensors file: %s"):format(path, why), 3) end
  if #data < 8 then corrupt("shorter than its 8-byte header length") end
  local n = string.unpack("<I8", data)
  if n < 2 or n > #data - 8 then corrupt(("header length %d does not fit in %d bytes"):format(n, #data)) end
  local ok, header = pcall(json.decode, data:sub(9, 8 + n))
  if not ok then corrupt("header is not JSON (" .. tostring(header) .. ")") end
  if type(header) ~= "table" then corrupt("header is not a JSON object") end
  local base, size = 8 + n, #data - 8 - n
  local tensors = {}
  for name, e in pairs(header) do
    if name ~= "__metadata__" then
      if type(e) ~= "table" or type(e.shape) ~= "table" or type(e.data_offsets) ~= "table" then
        corrupt("entry '" .. name .. "' lacks shape or data_offsets")
      end
      if e.dtype ~= "F32" then corrupt("entry '" .. name .. "' has dtype " .. tostring(e.dtype) .. "; moondust reads F32") end
      local numel = 1
      for _, d in ipairs(e.shape) do
        if math.type(d) ~= "integer" or d < 0 then corrupt("entry '" .. name .. "' has a bad shape") end
        numel = numel * d
      end
      local b, en = e.data_offsets[1], e.data_offsets[2]
      if math.type(b) ~= "integer" or math.type(en) ~= "integer" or b < 0 or en - b ~= 4 * numel or en > size then
        corrupt(("entry '%s' has offsets [%s, %s] for %d floats in %d data bytes (truncated?)"):format(
          name, tostring(b), tostring(en), numel, size))
      end
      tensors[name] = md.core.from_bytes(data, base + b + 1, e.shape)
    end
  end
  return tensors, decode_meta(header.__metadata__)
end

-- Tensors whose names start with prefix, with the prefix removed.
function checkpoint.sub(tensors, prefix)
  local out = {}
  for name, t in pairs(tensors) do
    if name:sub(1, #prefix) == prefix then out[name:sub(#prefix + 1)] = t end
  end
  return out
end

-- Model builders by meta.model ("unet", "encoder_unet", ...): later parts
-- of moondust register theirs here.
checkpoint.builders = {
  unet = function(cfg) return md.nn.UNet(cfg) end,
  encoder_unet = function(cfg) return md.nn.EncoderUNet(cfg) end,
  vae = function(cfg) return md.vae.VAE(cfg) end,
}

-- A checkpoint with meta.model and meta.config comes back as a model ready
-- to use (its EMA weights when it has them); anything else as tensors.
function checkpoint.load(path)
  local tensors, meta = checkpoint.read(path)
  local build = meta.model and checkpoint.builders[meta.model]
  if not build then return tensors, meta end
  local model = build(meta.config or {})
  local weights = checkpoint.sub(tensors, "ema.")
  if next(weights) == nil then weights = checkpoint.sub(tensors, "model.") end
  if next(weights) == nil then weights = tensors end
  model:load_state_dict(weights)
  model:eval()
  -- how the model was trained, for md.sample
  model.schedule, model.prediction, model.image_size = meta.schedule, meta.prediction, meta.image_size
  return model, meta, tensors
end

return checkpoint
