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

-- Writes "<path>.tmp" and renames it (in C): a crash never leaves a broken file.
function checkpoint.save(path, obj, meta)
  if type(path) ~= "string" then error("save: expected a path, got a " .. type(path), 2) end
  local tensors = flatten(obj)
  for name, t in pairs(tensors) do tensors[name] = t:detach() end
  local ok, err = pcall(md.core.safetensors_write, path, tensors, encode_meta(meta))
  if not ok then error("save: " .. tostring(err), 2) end
  return path
end

-- -> tensors (name -> tensor), meta (decoded)
function checkpoint.read(path)
  local ok, tensors, meta = pcall(md.core.safetensors_read, path)
  if not ok then error("load: " .. tostring(tensors), 2) end
  return tensors, decode_meta(meta)
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
  feature_net = function(cfg) return md.metrics.FeatureNet(cfg) end,
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
