-- moondust: diffusion models in Lua over a C11 core.
--   local md = require "moondust"
-- md.* holds the C core's functions (tensors, ops, I/O) plus what the Lua
-- layer adds; submodules (md.nn, md.optim, md.image, md.data, ...) load on
-- first use.
local core = require "moondust.core"

local md = { core = core, Tensor = core.Tensor, version = "0.1.0" }
for k, v in pairs(core) do md[k] = v end

-- Grad mode -------------------------------------------------------------------
-- md.no_grad(fn, ...) runs fn with recording off and returns its results;
-- md.no_grad() returns a guard for `local _ <close> = md.no_grad()`.
local guard_mt = { __close = function(g) core.set_grad_enabled(g.prev) end }

function md.no_grad(fn, ...)
  local prev = core.set_grad_enabled(false)
  if fn == nil then return setmetatable({ prev = prev }, guard_mt) end
  local res = table.pack(pcall(fn, ...))
  core.set_grad_enabled(prev)
  if not res[1] then error(res[2], 0) end
  return table.unpack(res, 2, res.n)
end

function md.enable_grad(fn, ...)
  local prev = core.set_grad_enabled(true)
  local res = table.pack(pcall(fn, ...))
  core.set_grad_enabled(prev)
  if not res[1] then error(res[2], 0) end
  return table.unpack(res, 2, res.n)
end

-- Submodules load lazily: md.nn, md.optim, md.image, md.data, ...
local submodules = {
  nn = "moondust.nn", optim = "moondust.optim", image = "moondust.image", data = "moondust.data",
  schedule = "moondust.schedule", sampler = "moondust.sampler", guidance = "moondust.guidance",
  vae = "moondust.vae", checkpoint = "moondust.checkpoint", progress = "moondust.progress",
  trainer = "moondust.trainer", repl = "moondust.repl", metrics = "moondust.metrics",
  runlog = "moondust.runlog",
}
setmetatable(md, {
  __index = function(t, k)
    local name = submodules[k]
    if name then
      local m = require(name)
      rawset(t, k, m)
      return m
    end
  end,
})

-- Entry points implemented in submodules, loaded when first called.
function md.save(...) return require("moondust.checkpoint").save(...) end
function md.load(...) return require("moondust.checkpoint").load(...) end
function md.sample(...) return require("moondust.sampler").sample(...) end
function md.profile(...) return require("moondust.profile")(...) end

package.loaded.moondust = md
require "moondust.tensor" -- Lua-side tensor methods and creation helpers
require "moondust.functional" -- dropout, pooling and KL written in Lua
return md
