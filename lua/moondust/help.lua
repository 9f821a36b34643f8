-- help(fn) at the REPL: the documentation of a public function, read from the
-- `--` comment above its definition in the module's own source file (found
-- with package.searchpath), so the docs live beside the code. A function
-- without one falls back to the usage line that names it in the file's
-- leading comment; the C functions' docs are in moondust.core_docs.
--
--   help(md.sample)   help("sample")   help(md.data)   help()
local md = require "moondust"
local options = require "moondust.options"

local help = {}

-- The namespaces help knows, and the extra files that fill one (beside
-- the module's own file).
help.namespaces = { "md", "md.nn", "md.optim", "md.data", "md.image", "md.sampler", "md.schedule", "md.guidance",
  "md.vae", "md.autoencoder", "md.checkpoint", "md.metrics", "md.progress", "md.runlog", "md.dist", "md.trainer", "md.options" }
local sources = {
  md = { "moondust", "moondust.tensor", "moondust.functional" },
  ["md.nn"] = { "moondust.nn", "moondust.nn.module", "moondust.nn.layers", "moondust.nn.unet" },
}

local function module_name(ns) return ns == "md" and "moondust" or "moondust." .. ns:sub(4) end

local function strip(lines) return (table.concat(lines, "\n"):gsub("^%s+", ""):gsub("%s+$", "")) end

-- One source file: its leading comment and, per defined name, the comment
-- just above the definition (a comment covers the run of one-line
-- definitions right below it) and the parameter list. Definitions count on
-- the table the file returns (`return data` -> `function data.loader(`), or
-- as locals that table is given (`metrics.run = run`); a class's parameters
-- are those of its :init.
local function parse(modname)
  local path = package.searchpath(modname, package.path)
  local f = path and io.open(path)
  if not f then return { header = "", header_lines = {}, defs = {} } end
  local lines = {}
  for line in f:lines() do lines[#lines + 1] = line end
  f:close()
  local owner
  for i = #lines, 1, -1 do
    owner = lines[i]:match("^return%s+([%w_]+)%s*$")
    if owner or lines[i]:match("%S") then break end
  end
  local header, found, given, comment = {}, {}, {}, {}
  local function define(key, params, text, alias, is_init)
    local d = found[key] or {}
    if is_init then d.params = params else d.params, d.alias = d.params or params, alias end
    if text and not (is_init and d.text) then d.text = text end
    found[key] = d
  end
  for i, line in ipairs(lines) do
    local text = line:match("^%s*%-%-+ ?(.*)$")
    if text and i == #header + 1 then header[#header + 1] = text end
    local a, name, params = line:match("^function ([%w_]+)%.([%w_]+)%s*%(([^)]*)%)")
    if not a then a, name, params = line:match("^([%w_]+)%.([%w_]+)%s*=%s*function%s*%(([^)]*)%)") end
    if not a then a, name = line:match("^([%w_]+)%.([%w_]+)%s*=%s*[%w_.]+:extend%(") end
    if not a then name, params = line:match("^local function ([%w_]+)%s*%(([^)]*)%)"); a = name and "" end
    if not a then name = line:match("^local ([%w_]+)%s*=%s*[%w_.]+:extend%("); a = name and "" end
    local ca, cname, cparams = line:match("^function ([%w_]+)%.?([%w_]*):init%(([^)]*)%)")
    if ca and cname == "" then ca, cname = "", ca end
    local ga, gname, glocal = line:match("^([%w_]+)%.([%w_]+)%s*=%s*([%w_]+)%s*$")
    local doc = #comment > 0 and strip(comment) or nil
    if text then
      comment[#comment + 1] = text
    elseif a then
      -- md.sample(...) forwarding to require("moondust.sampler").sample: the
      -- docs are those of the function it calls
      local m, fn = line:match('return require%("([%w_.]+)"%)%.?([%w_]*)%(%.%.%.%)')
      define(a .. "." .. name, params, doc, m and { modname = m, name = fn })
      if not line:match("end%s*$") then comment = {} end
    elseif ca then
      define(ca .. "." .. cname, cparams, doc, nil, true)
      comment = {}
    else
      if ga == owner and gname then given[gname] = glocal end
      comment = {}
    end
  end
  local defs = {}
  for key, d in pairs(found) do
    local a, name = key:match("^([%w_]*)%.([%w_]+)$")
    if a == owner then defs[name] = d end
  end
  for name, loc in pairs(given) do defs[name] = defs[name] or found["." .. loc] end
  return { header = strip(header), header_lines = header, defs = defs }
end

-- The lines of a header from the usage line naming `.name(` (or `.name{`)
-- to the next usage line.
local function header_usage(src, name)
  local out, usage = {}, "^%s*md[%w_.]*%.[%w_]+[({]"
  for _, line in ipairs(src.header_lines or {}) do
    if #out == 0 then
      if line:find("." .. name .. "(", 1, true) or line:find("." .. name .. "{", 1, true) then out[1] = line end
    elseif line:match(usage) then break
    else out[#out + 1] = line end
  end
  return #out > 0 and strip(out) or nil
end

local registry, by_name, parsed -- built on first use

local function source(modname)
  if not parsed[modname] then parsed[modname] = parse(modname) end
  return parsed[modname]
end

-- The doc of `name` in namespace ns (value v), or nil.
local function doc_of(ns, name, v, core_docs, depth)
  if ns == "md" and core_docs[name] and rawequal(v, md.core[name]) then return core_docs[name] end
  for _, modname in ipairs(sources[ns] or { module_name(ns) }) do
    local src = source(modname)
    if rawequal(v, package.loaded[modname]) then return src.header end
    local d = src.defs[name]
    if d and d.alias and (depth or 0) < 3 then
      local target = package.loaded[d.alias.modname] or require(d.alias.modname)
      local ans = "md." .. d.alias.modname:gsub("^moondust%.", "")
      if d.alias.name == "" then return source(d.alias.modname).header end
      return doc_of(ans, d.alias.name, target[d.alias.name], core_docs, (depth or 0) + 1)
    end
    if d and d.text then
      local sig = ns .. "." .. name .. "(" .. (d.params or "") .. ")"
      local named = d.text:find(name .. "[({]") -- the comment shows the call itself
      return named and d.text or sig .. "\n" .. d.text
    end
    local usage = d and header_usage(src, name)
    if usage then return usage end
  end
end

-- Every public function and class of the namespaces, documented or not.
local function build()
  registry, by_name, parsed = {}, {}, {}
  local core_docs = require "moondust.core_docs"
  for _, ns in ipairs(help.namespaces) do
    local t = ns == "md" and md or md[ns:sub(4)]
    local mod_entry = { name = ns, ns = ns, text = source(module_name(ns)).header, module = t }
    registry[t], by_name[ns] = mod_entry, mod_entry
    for name, v in pairs(t) do
      if type(name) == "string" and name:sub(1, 1) ~= "_" and (type(v) == "function"
          or (type(v) == "table" and getmetatable(v) and getmetatable(v).__call)) then
        local full = ns .. "." .. name
        -- a value published twice (md.progress.now is md.time) has one doc
        local e = { name = full, ns = ns, text = doc_of(ns, name, v, core_docs) or (registry[v] and registry[v].text) }
        by_name[full] = e
        if not registry[v] or (not registry[v].text and e.text) then registry[v] = e end
      end
    end
  end
  -- t:sum() and md.sum share their docs
  for name, v in pairs(md.Tensor) do
    local e = by_name["md." .. name]
    if type(v) == "function" and e and not registry[v] then registry[v] = e end
  end
end

-- The public names without documentation, sorted (what the tests list).
function help.undocumented(namespaces)
  if not registry then build() end
  local want, out = {}, {}
  for _, ns in ipairs(namespaces or help.namespaces) do want[ns] = true end
  for name, e in pairs(by_name) do
    if want[e.ns] and name ~= e.ns and not e.text then out[#out + 1] = name end
  end
  table.sort(out)
  return out
end

-- The entry for a function, module or name ("sample", "md.data.loader").
local function lookup(x)
  if not registry then build() end
  if type(x) ~= "string" then return registry[x] end
  local e = by_name[x] or by_name["md." .. x]
  if e then return e end
  local best
  for name, cand in pairs(by_name) do
    if name:sub(-#x - 1) == "." .. x and (not best or #name < #best.name) then best = cand end
  end
  return best
end

-- The documented names nearest to `name`, for an undocumented one.
local function nearest(name, n)
  local known = {}
  for full, e in pairs(by_name) do if e.text then known[full] = true end end
  local out = {}
  for _ = 1, n do
    local near = options.nearest(name, known)
    if not near then break end
    out[#out + 1], known[near] = near, nil
  end
  return out
end

-- The text help(x) prints.
function help.text(x)
  if x == nil then return require("moondust.repl").text end
  local e = lookup(x)
  local label = type(x) == "string" and x or (e and e.name) or tostring(x)
  if e and e.module then
    local names = {}
    for name, cand in pairs(by_name) do
      if cand.ns == e.ns and name ~= e.ns then names[#names + 1] = name:sub(#e.ns + 2) end
    end
    table.sort(names)
    return (e.text ~= "" and e.text .. "\n\n" or "") .. e.name .. ": " .. table.concat(names, ", ")
  end
  if e and e.text then return e.text end
  local msg = ("help: no documentation for %s"):format(label)
  if type(x) ~= "string" and type(x) ~= "function" and not (type(x) == "table" and getmetatable(x)) then
    return msg .. " (help takes a function, a module or a name: help(md.sample), help(\"sample\"))"
  end
  local name = e and e.name or (type(x) == "string" and "md." .. x:gsub("^md%.", ""))
  local near = name and nearest(name, 3) or {}
  if #near > 0 then msg = msg .. "; documented ones near it: " .. table.concat(near, ", ") end
  return msg
end

function help.help(x) print(help.text(x)) end

return help
