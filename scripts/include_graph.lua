-- The C core's include graph, checked: every #include "..." must point at a
-- file of the same layer or a lower one, and the graph must have no cycle.
--
--   lua5.4 scripts/include_graph.lua          -- prints the graph by layer
--   lua5.4 scripts/include_graph.lua --check  -- only checks; exit 1 on a violation
--
-- Layers, lowest first (docs/DESIGN.md explains them):
local layers = {
  { name = "base", match = { "^error%.", "^alloc%.", "^detsum%.", "^profile%.", "^rng%.", "^backend/threads%." } },
  { name = "tensor", match = { "^tensor%.", "^layout%." } },
  { name = "backend", match = { "^backend/" } },
  { name = "autograd", match = { "^autograd%." } },
  { name = "ops and kernels", match = { "^ops/", "^optim%.", "^diffusion%.", "^io/" } },
  { name = "binding", match = { "^lua/" } },
}

local root = (arg[0]:match("^(.*)/scripts/") or ".") .. "/csrc/"
local check_only = arg[1] == "--check"

local function layer_of(file)
  for i, l in ipairs(layers) do
    for _, pat in ipairs(l.match) do
      if file:match(pat) then return i end
    end
  end
  error("include_graph: " .. file .. " belongs to no layer (add it to scripts/include_graph.lua)")
end

-- Every .c and .h file under csrc/, relative to it.
local function files()
  local md = require "moondust"
  local out = {}
  local function walk(dir, rel)
    for _, e in ipairs(md.core.list_dir(dir)) do
      local r = rel and rel .. "/" .. e.name or e.name
      if e.dir then walk(dir .. "/" .. e.name, r)
      elseif e.name:match("%.[ch]$") then out[#out + 1] = r end
    end
  end
  walk((root:gsub("/$", "")))
  return out
end

-- "ops/../tensor.h" -> "tensor.h"
local function normalise(path)
  local parts = {}
  for p in path:gmatch("[^/]+") do
    if p == ".." then table.remove(parts) elseif p ~= "." then parts[#parts + 1] = p end
  end
  return table.concat(parts, "/")
end

local edges, problems = {}, {}
for _, f in ipairs(files()) do
  edges[f] = {}
  local dir = f:match("^(.*)/") or ""
  for line in io.lines(root .. f) do
    local inc = line:match('^#include "([^"]+)"')
    if inc then
      local target = normalise((dir ~= "" and dir .. "/" or "") .. inc)
      edges[f][#edges[f] + 1] = target
      if layer_of(target) > layer_of(f) then
        problems[#problems + 1] = ("%s (%s) includes %s (%s): upward"):format(f, layers[layer_of(f)].name, target,
          layers[layer_of(target)].name)
      end
    end
  end
end

-- Cycles, by depth-first search.
local state = {}
local function visit(f, stack)
  state[f] = "open"
  stack[#stack + 1] = f
  for _, g in ipairs(edges[f] or {}) do
    if state[g] == "open" then
      local from = 1
      for i, s in ipairs(stack) do if s == g then from = i end end
      problems[#problems + 1] = "cycle: " .. table.concat(stack, " -> ", from) .. " -> " .. g
    elseif not state[g] then
      visit(g, stack)
    end
  end
  stack[#stack] = nil
  state[f] = "done"
end
local names = {}
for f in pairs(edges) do names[#names + 1] = f end
table.sort(names)
for _, f in ipairs(names) do if not state[f] then visit(f, {}) end end

if not check_only then
  for i, l in ipairs(layers) do
    print(("%d. %s"):format(i, l.name))
    for _, f in ipairs(names) do
      if layer_of(f) == i and #edges[f] > 0 then
        local t = {}
        for _, g in ipairs(edges[f]) do if g ~= f:gsub("%.c$", ".h") then t[#t + 1] = g end end
        if #t > 0 then print(("   %-26s -> %s"):format(f, table.concat(t, ", "))) end
      end
    end
  end
end
for _, p in ipairs(problems) do io.stderr:write("include_graph: " .. p .. "\n") end
if #problems > 0 then os.exit(1) end
if check_only then print(("include graph: %d files, no cycle, no upward include"):format(#names)) end
