-- Every input the fuzzers keep (tests/fuzz/corpus: seeds; tests/fuzz/regressions:
-- what once crashed, hung or exhausted memory, found by `make fuzz`) goes
-- through its loader again: each must load or fail with a message, quickly.
local T = require "harness"
local md = require "moondust"

local loaders = {
  safetensors = function(p) return md.core.safetensors_read(p) end,
  png = function(p) return md.core.png_read(p, 1), md.core.png_read(p, 3) end,
  idx = function(p) return md.core.idx_read(p) end,
  -- md_jpeg_decode through the format dispatch: what the fuzzer keeps starts with
  -- the JPEG signature (anything else fails before any decoding)
  jpeg = md.core.jpeg_available() and function(p)
    return md.core.image_read(p, 1), md.core.image_read(p, 3), md.core.image_read(p)
  end or nil,
  json = function(p) return md.core.json_decode(assert(io.open(p, "rb")):read("a")) end,
}

local function files(dir)
  local ok, list = pcall(md.core.list_dir, dir)
  return ok and list or {}
end

local seen = 0
for _, kind in ipairs { "corpus", "regressions" } do
  for target, load in pairs(loaders) do
    for _, e in ipairs(files(("tests/fuzz/%s/%s"):format(kind, target))) do
      local path = ("tests/fuzz/%s/%s/%s"):format(kind, target, e.name)
      seen = seen + 1
      T.test(("%s %s/%s loads or fails with a message"):format(kind, target, e.name), function()
        local before = md.memory()
        local ok, err = pcall(load, path)
        if kind == "corpus" then T.truthy(ok, "a seed must load: " .. tostring(err)) end
        if not ok then
          -- The loader's own message (luaL_error puts the caller's line in front), not a Lua runtime error.
          local msg = tostring(err):gsub("^%S+:%d+: ", "")
          T.truthy(msg:sub(1, #target + 1) == target .. ":" and not msg:match("attempt to"), tostring(err))
        end
        T.truthy(md.memory() - before < 64 * 2 ^ 20, "bounded memory")
      end)
    end
  end
end
T.test("the corpus is there", function() T.truthy(seen >= 8, seen .. " inputs") end)
T.finish()
