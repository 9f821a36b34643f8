-- Writes the model that md.pretrained("fashion") loads: the EMA weights of a
-- trainer checkpoint, with what md.load and md.sample need (model kind,
-- config, schedule betas, prediction, image size, class names) and nothing
-- else (no optimizer state, no data order).
--   MINUTES=30 FRESH=1 make main      # the main job's recipe, 30 minutes
--   scripts/md-lua scripts/export_pretrained.lua [checkpoints/ddpm_fashion.safetensors] [lua/moondust/assets/fashion_model.safetensors]
local md = require "moondust"
local src = arg[1] or "checkpoints/ddpm_fashion.safetensors"
local dst = arg[2] or "lua/moondust/assets/fashion_model.safetensors"
local model, meta = md.load(src) -- the EMA weights, as a model
if not md.nn.Module.is_module(model) then error(src .. " holds no model config") end
local kept = {}
for _, k in ipairs { "model", "config", "schedule", "prediction", "image_size", "classes", "step" } do kept[k] = meta[k] end
kept.classes = kept.classes or (model.config.num_classes == 10 and md.data.FASHION_CLASSES or nil)
kept.source = ("EMA weights of %s at step %s"):format(src, tostring(meta.step))
md.save(dst, model, kept)
local f = assert(io.open(dst, "rb"))
print(("wrote %s (%.1f MB, step %s)"):format(dst, f:seek("end") / 2 ^ 20, tostring(meta.step)))
f:close()
