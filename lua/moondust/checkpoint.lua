-- Checkpoints in the safetensors format: an 8-byte little-endian header
-- length, a JSON header {name: {dtype, shape, data_offsets}, __metadata__:
-- {string: string}}, then raw little-endian float32 data. Any safetensors
-- reader can open them. Files are written to "<path>.tmp.<pid>.<n>", synced
-- and renamed, so a crash never leaves a broken checkpoint behind.
--
--   md.save(path, model_or_tensors [, meta] [, {allow_nonfinite = false}])
--   (md.save(model, path) is accepted too). A model whose class has a
--   builder (UNet, EncoderUNet, VAE, FeatureNet, or one registered with
--   md.checkpoint.register) saves its kind and config, and what md.sample
--   needs (schedule betas, prediction, image size, class names), so that
--   md.load gives it back ready to use.
--   local model, meta = md.load(path [, {allow_nonfinite = false}])  -- a checkpoint with a model config
--   local tensors, meta = md.load(path)     -- any other safetensors file
-- Non-finite weights are refused on save and on load unless allowed.
local md = require "moondust"
local options = require "moondust.options"

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
    out[tostring(k)] = type(v) == "string" and v or md.core.json_encode(v)
  end
  return out
end

local function decode_meta(meta)
  local out = {}
  for k, v in pairs(meta or {}) do
    local first = v:sub(1, 1)
    if first == "{" or first == "[" or v == "true" or v == "false" or tonumber(v) then
      local ok, decoded = pcall(md.core.json_decode, v)
      out[k] = ok and decoded or v
    else
      out[k] = v
    end
  end
  return out
end

-- The sorted names of the tensors holding NaN or Inf (none: an empty list).
function checkpoint.nonfinite(tensors)
  local bad = {}
  for name, t in pairs(tensors) do
    local s = (t:detach() * 0):sum():item() -- 0 when finite; NaN for any NaN or Inf
    if s ~= s then bad[#bad + 1] = name end
  end
  table.sort(bad)
  return bad
end

-- "a, b, c, d, e and 3 more"
local function some_names(names)
  local shown = table.concat(names, ", ", 1, math.min(#names, 5))
  return shown .. (#names > 5 and (" and %d more"):format(#names - 5) or "")
end

local save_options = { allow_nonfinite = "boolean" }

-- What md.load needs to rebuild a model of a registered class, merged under
-- the caller's meta (the caller's keys win).
local function model_meta(obj, meta)
  local kind = type(obj) == "table" and getmetatable(obj) and checkpoint.kinds[getmetatable(obj).__name]
  if not kind or type(obj.config) ~= "table" then return meta end
  local out = { model = kind, config = obj.config, prediction = obj.prediction, image_size = obj.image_size,
                classes = obj.classes }
  if obj.diffusion then out.diffusion = obj.diffusion:serialize()
  elseif type(obj.schedule) == "table" then out.schedule = md.schedule.serialize(obj.schedule)
  else out.schedule = obj.schedule end
  if obj.autoencoder then out.autoencoder = { model = "autoencoder_kl", config = obj.autoencoder.config } end
  for k, v in pairs(meta or {}) do out[k] = v end
  return out
end

-- Writes a temporary file and renames it (in C): a crash never leaves a broken file.
function checkpoint.save(path, obj, meta, opts)
  if type(path) ~= "string" and type(obj) == "string" then path, obj = obj, path end
  if type(path) ~= "string" then error("save: expected a path, got a " .. type(path), 2) end
  if type(obj) ~= "table" and not md.is_tensor(obj) then
    error("save: expected a model or a table of tensors, got a " .. type(obj), 2)
  end
  if md.is_tensor(obj) then error("save: expected a model or a table of tensors; put the tensor in a table: {x = t}", 2) end
  meta = model_meta(obj, meta)
  -- a latent diffusion model keeps its decoder: without it md.load would give back latents
  if obj.autoencoder and type(obj.state_dict) == "function" then obj = { model = obj, autoencoder = obj.autoencoder } end
  opts = options.check("save", opts, save_options)
  local tensors = flatten(obj)
  for name, t in pairs(tensors) do tensors[name] = t:detach() end
  if not opts.allow_nonfinite then
    local bad = checkpoint.nonfinite(tensors)
    if #bad > 0 then
      error(("save: %s: refusing to save NaN/Inf values (in %s); pass {allow_nonfinite = true} "
        .. "to save them anyway"):format(path, some_names(bad)), 2)
    end
  end
  local ok, err = pcall(md.core.safetensors_write, path, tensors, encode_meta(meta))
  if not ok then error("save: " .. tostring(err), 2) end
  return path
end

-- -> tensors (name -> tensor), meta (decoded). Non-finite values are an
-- error unless opts.allow_nonfinite (then a warning on stderr).
function checkpoint.read(path, opts)
  opts = options.check("load", opts, save_options)
  local ok, tensors, meta = pcall(md.core.safetensors_read, path)
  if not ok then error("load: " .. tostring(tensors), 2) end
  local bad = checkpoint.nonfinite(tensors)
  if #bad > 0 then
    local msg = ("load: checkpoint %s holds NaN/Inf in %s"):format(path, some_names(bad))
    if not opts.allow_nonfinite then error(msg .. " (pass {allow_nonfinite = true} to load it anyway)", 2) end
    io.stderr:write("warning: " .. msg .. "\n")
  end
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
-- of moondust register theirs here. A builder may have a validator (same
-- key in checkpoint.validators): validate(cfg, weights) raises an error when
-- the config is malformed or does not fit the stored tensors, before the
-- builder allocates anything.
checkpoint.builders = {
  unet = function(cfg) return md.nn.UNet(cfg) end,
  encoder_unet = function(cfg) return md.nn.EncoderUNet(cfg) end,
  vae = function(cfg) return md.vae.VAE(cfg) end,
  autoencoder_kl = function(cfg) return md.autoencoder.AutoencoderKL(cfg) end,
  feature_net = function(cfg) return md.metrics.FeatureNet(cfg) end,
}
-- The kind a module class saves as, by the class's name (Module:extend(name)).
checkpoint.kinds = { UNet = "unet", EncoderUNet = "encoder_unet", VAE = "vae", FeatureNet = "feature_net",
                     AutoencoderKL = "autoencoder_kl" }

-- A user module class saves and loads like moondust's own:
--   md.checkpoint.register("my_net", MyNet, function(cfg) return MyNet(cfg) end)
-- (its instances need self.config, the table the builder takes).
function checkpoint.register(kind, class, builder, validator)
  if type(kind) ~= "string" or type(class) ~= "table" or not class.__name or type(builder) ~= "function" then
    error("checkpoint.register: expected (kind, a Module class, builder(cfg) [, validator(cfg, weights)])", 2)
  end
  checkpoint.builders[kind], checkpoint.kinds[class.__name], checkpoint.validators[kind] = builder, kind, validator
end

local function shape_str(shape) return "[" .. table.concat(shape, ", ") .. "]" end

-- Compares the main weight of every block the config asks for with the file.
local function check_unet(where, with_decoder)
  return function(cfg, weights)
    local U = md.nn
    local c = U.config(where, cfg, not with_decoder and U.encoder_defaults or nil, with_decoder)
    local expected = U.expected_shapes(c, with_decoder)
    local names = {}
    for name in pairs(expected) do names[#names + 1] = name end
    table.sort(names)
    for _, name in ipairs(names) do
      local t, want = weights[name], shape_str(expected[name])
      if not t then error(("the config asks for tensor '%s' %s, the file has none"):format(name, want), 0) end
      if shape_str(t:shape()) ~= want then
        error(("the config gives tensor '%s' the shape %s, the file holds %s"):format(name, want, shape_str(t:shape())), 0)
      end
    end
  end
end

checkpoint.validators = {
  unet = check_unet("UNet", true),
  encoder_unet = check_unet("EncoderUNet", false),
  vae = function(cfg) md.vae.config(cfg) end,
  autoencoder_kl = function(cfg) md.autoencoder.config(cfg) end,
}

-- A checkpoint with meta.model and meta.config comes back as a model ready
-- to use (its EMA weights when it has them); anything else as tensors.
function checkpoint.load(path, opts)
  local tensors, meta = checkpoint.read(path, opts)
  local build = meta.model and checkpoint.builders[meta.model]
  if not build then return tensors, meta end
  local cfg = meta.config or {}
  if type(cfg) ~= "table" then error(("load: %s: the model config is a %s, not a table"):format(path, type(cfg)), 2) end
  local weights = checkpoint.sub(tensors, "ema.")
  if next(weights) == nil then weights = checkpoint.sub(tensors, "model.") end
  if next(weights) == nil then weights = tensors end
  local validate = checkpoint.validators[meta.model]
  if validate then
    local ok, err = pcall(validate, cfg, weights)
    if not ok then
      error(("load: %s: bad model config: %s"):format(path, tostring(err):gsub("^[^:]*:%d+: ", "")), 2)
    end
  end
  local model = build(cfg)
  model:load_state_dict(weights)
  model:eval()
  -- how the model was trained, for md.sample: its diffusion (older
  -- checkpoints store the betas, or name a schedule, always with T = 1000)
  local ok, d = pcall(md.diffusion.from_meta, meta)
  if not ok then error(("load: %s: bad diffusion metadata: %s"):format(path, tostring(d):gsub("^[^:]*:%d+: ", "")), 2) end
  md.diffusion.attach(model, d)
  model.image_size, model.classes = meta.image_size, meta.classes
  -- latent diffusion: the autoencoder saved beside the model decodes its samples
  local ae_meta = meta.autoencoder
  if type(ae_meta) == "table" and ae_meta.model == "autoencoder_kl" then
    local ok, ae = pcall(function()
      local a = md.autoencoder.AutoencoderKL(ae_meta.config)
      a:load_state_dict(checkpoint.sub(tensors, "autoencoder."))
      return a:eval()
    end)
    if not ok then error(("load: %s: bad autoencoder: %s"):format(path, tostring(ae):gsub("^[^:]*:%d+: ", "")), 2) end
    model.autoencoder = ae
  end
  return model, meta, tensors
end

return checkpoint
