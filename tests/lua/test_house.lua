-- The house rules that a test can hold: the C core's includes point one way
-- (scripts/include_graph.lua), and the library never runs a shell.
local T = require "harness"

T.test("the include graph has no cycle and no upward include", function()
  local p = io.popen("lua5.4 scripts/include_graph.lua --check 2>&1")
  local out = p:read("a")
  local ok = p:close()
  T.truthy(ok and out:match("no cycle, no upward include"), out)
end)

T.test("no Lua file of the library or its scripts starts a shell", function()
  local md = require "moondust"
  local function walk(dir, out)
    for _, e in ipairs(md.core.list_dir(dir)) do
      local path = dir .. "/" .. e.name
      if e.dir then walk(path, out) elseif e.name:match("%.lua$") then out[#out + 1] = path end
    end
    return out
  end
  for _, root in ipairs { "lua", "examples" } do
    for _, f in ipairs(walk(root, {})) do
      local text = assert(io.open(f)):read("a")
      T.truthy(not text:match("os%.execute") and not text:match("io%.popen"), f .. " starts a shell")
    end
  end
end)

T.finish()
