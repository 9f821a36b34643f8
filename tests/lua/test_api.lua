-- The public API is declared in one place (lua/moondust/init.lua) and follows
-- one index rule; internals stay under md.core.
local T = require "harness"
local md = require "moondust"

T.test("internals are reached only through md.core", function()
  for _, name in ipairs { "adam_step", "png_write", "poison_fresh_gradients", "safetensors_read", "json_encode",
                          "mkdir_p", "from_flat", "set_grad_enabled" } do
    T.truthy(md.core[name], "md.core." .. name .. " exists")
    local ok, err = pcall(function() return md[name] end)
    T.truthy(not ok and err:match("md%." .. name .. " is internal: use md%.core%." .. name), tostring(err))
  end
end)

T.test("every public name is there without loading any submodule first", function()
  for _, name in ipairs { "zeros", "randn", "conv2d", "q_sample", "ddim_step", "grad", "no_grad", "save", "load",
                          "sample", "tensor", "zeros_like", "dropout", "one_hot", "gaussian_kl", "set_num_threads" } do
    T.eq(type(md[name]), "function", name)
  end
  T.eq(package.loaded["moondust.guidance"], nil, "guidance not loaded")
  T.eq(md.one_hot(md.tensor { 2, 0 }, 3):totable()[1][3], 1)
  for name in pairs(md.submodules) do T.eq(type(md[name]), "table", "md." .. name) end
end)

T.test("positions are 1-based, integers held in tensors are 0-based", function()
  local x = md.tensor { { 1, 9, 3 }, { 7, 2, 5 } }
  T.eq(x:size(2), 3)                                   -- dimension 2: the columns
  T.eq(x[2][1], 7)                                     -- row 2, column 1
  T.eq(x:narrow(1, 2, 1):totable()[1][1], 7)           -- rows from 2
  T.eq(x:sum(2):totable()[1], 13)                      -- over dimension 2
  T.eq(x:argmax(2):totable()[1], 1)                    -- 0-based: column 2 holds the 9
  local _, ix = x:max(2)
  T.eq(ix:totable()[2], 0)                             -- 0-based: column 1 holds the 7
  T.eq(md.index_select(x, 2, md.tensor { 0, 2 }):totable()[1][2], 3) -- 0-based indices
  local labels = md.tensor { 1, 0 }
  T.eq(x:argmax(2):eq(labels):sum():item(), 2, "argmax compares with 0-based labels directly")
end)

T.test("the README's first example runs as written (on 256 images, 2 sampling steps)", function()
  local readme = assert(io.open("README.md")):read("a")
  local code = readme:match("```lua\n(.-)```")
  T.truthy(code and code:find("md.diffusion", 1, true), "the first Lua block")
  local small = code:gsub('fashion_mnist{split = "train"}', 'fashion_mnist{split = "train", limit = 256}', 1)
    :gsub("steps = 50", "steps = 2", 1):gsub('"sneakers.png"', "os.tmpname()", 1)
  T.truthy(small ~= code, "the substitutions apply")
  local chunk = assert(load(small, "README", "t", setmetatable({}, { __index = _G })))
  chunk()
end)

T.finish()
