-- The REPL (scripts/repl, bin/moondust-repl): md loaded, help(), line
-- editing, tab completion of names, Ctrl-C that does not end the session.
local repl = {}

-- What help() with no argument shows.
repl.text = [[
moondust at the REPL (md is loaded):
  x = md.randn{2, 3}; print(x, x:sum(), x:shape())        tensors
  m = md.pretrained("fashion")                             the shipped model (or md.load("checkpoints/ddpm_fashion.safetensors"))
  s = md.sample(m, {n = 16, class = 7, steps = 50, guidance = 3, seed = 1})
  md.image.save_grid(s, "out/sneakers.png", {nrow = 4})     a PNG grid
  md.sample(m, {n = 16, sampler = "ddpm"})                   1000-step ancestral sampling, unconditional
  md.data.fashion_mnist{split = "test"}                      the data set
  md.nn.UNet{model_channels = 32}                            build a model; md.optim.AdamW(model)
classes: 0 T-shirt/top, 1 Trouser, 2 Pullover, 3 Dress, 4 Coat, 5 Sandal, 6 Shirt, 7 Sneaker, 8 Bag, 9 Ankle boot
help(md.sample), help("loader"), help(md.data): the docs of a function or module
Tab completes names (md.sa<Tab>, md.data.<Tab><Tab>); Ctrl-C clears the line or stops a command; Ctrl-D quits]]

-- Sets up a session: md and help as globals.
function repl.start()
  _G.md = require "moondust"
  _G.help = require("moondust.help").help
end

local keywords = { "and", "break", "do", "else", "elseif", "end", "false", "for", "function", "goto", "if", "in",
  "local", "nil", "not", "or", "repeat", "return", "then", "true", "until", "while" }

-- The names one can write after `obj.`: its fields, those of its __index
-- tables, md's submodules (loaded on first use), a tensor's methods.
local function field_names(obj)
  local out, md = {}, package.loaded.moondust
  local function add(t)
    for k, v in pairs(t) do if type(k) == "string" and k:match("^[%a_][%w_]*$") then out[k] = v end end
  end
  if md and rawequal(obj, md) then for k in pairs(md.submodules) do out[k] = true end end
  if md and md.is_tensor(obj) then add(md.Tensor) end
  local t, depth = obj, 0
  while depth < 10 do
    if type(t) == "table" then add(t) end
    local mt = getmetatable(t)
    t, depth = type(mt) == "table" and rawget(mt, "__index"), depth + 1
    if type(t) ~= "table" then break end
  end
  return out
end

-- Completion: the candidates for the word before the cursor, a global name
-- or a dotted path (md.sa -> md.sample, md.sampler; md.data. -> every
-- md.data function; x:su -> x:sum). Looking a path up may load a submodule,
-- never calls a function.
function repl.complete(word, env)
  env = env or _G
  local path, sep, partial = word:match("^(.-)([.:])([%w_]*)$")
  local obj = env
  if path then
    for part in (path .. "."):gmatch("([^.]*)%.") do
      if not part:match("^[%a_][%w_]*$") then return {} end
      local ok, v = pcall(function() return obj[part] end)
      if not ok or v == nil or (type(v) ~= "table" and type(v) ~= "userdata" and type(v) ~= "string") then return {} end
      obj = v
    end
  else
    path, sep, partial = "", "", word
    if not partial:match("^[%a_]?[%w_]*$") then return {} end
  end
  local out = {}
  for name, v in pairs(field_names(obj)) do
    if name:sub(1, #partial) == partial and (sep ~= ":" or type(v) == "function")
        and (name:sub(1, 1) ~= "_" or partial:sub(1, 1) == "_") then
      out[#out + 1] = path .. sep .. name
    end
  end
  if sep == "" then
    for _, k in ipairs(keywords) do if k:sub(1, #partial) == partial then out[#out + 1] = k end end
  end
  table.sort(out)
  return out
end

-- A chunk as lua.c compiles it: an expression (or `=expr`) returns its
-- values, else a statement; the second result says the chunk is unfinished.
function repl.compile(chunk, env)
  chunk = chunk:gsub("^%s*=", "return ", 1)
  local fn = load("return " .. chunk, "=stdin", "t", env or _G)
  if fn then return fn end
  local err
  fn, err = load(chunk, "=stdin", "t", env or _G)
  if fn then return fn end
  return nil, err:sub(-5) == "<eof>", err
end

-- One line: at a terminal through readline (history, completion) or, in a
-- build without it, core.read_line; nil at the end of input, false after a
-- Ctrl-C. From a pipe, plain lines without prompts.
local function line_reader(core, interactive)
  if not interactive then return function() return io.read("l") end end
  if not core.readline then return core.read_line end
  core.set_completer(function(word) return repl.complete(word) end)
  return core.readline
end

-- One chunk: read it (continuation lines while it is unfinished), run it,
-- print its values; false at the end of input.
local function step(core, read, interactive)
  local chunk = read("> ")
  if chunk == nil then return false end
  local fn, more, err
  if chunk ~= false then fn, more, err = repl.compile(chunk) end
  while chunk and more do
    local line = read(">> ")
    if line == nil then break end
    if line == false then chunk = false; break end
    chunk = chunk .. "\n" .. line
    fn, more, err = repl.compile(chunk)
  end
  if chunk == false then io.write("\n"); return true end -- Ctrl-C: a fresh prompt
  if interactive and core.add_history and chunk:match("%S") then core.add_history(chunk) end
  if not fn then io.stderr:write(err, "\n"); return true end
  local res = table.pack(xpcall(fn, function(e) return tostring(e) end))
  -- printing runs __tostring, user code that may fail too
  if res[1] and res.n > 1 then res = table.pack(pcall(print, table.unpack(res, 2, res.n))) end
  if not res[1] then io.stderr:write(tostring(res[2]), "\n") end
  return true
end

-- The session scripts/repl and bin/moondust-repl start. Ctrl-C clears the
-- line at the prompt and interrupts a running chunk; Ctrl-D (end of input)
-- ends the session.
function repl.run(opts)
  opts = require("moondust.options").check("repl.run", opts, { interactive = "boolean" })
  repl.start()
  local core = _G.md.core
  local interactive = opts.interactive
  if interactive == nil then interactive = core.isatty(0) end
  local read = line_reader(core, interactive)
  if interactive then
    print("moondust " .. _G.md.version .. " -- type help() for a tour, help(md.sample) for a function"
      .. (core.readline and "" or " (built without readline: no completion)"))
  end
  -- Ctrl-C raises "interrupted" wherever Lua runs, the reader excepted; one
  -- that lands between prompt and chunk counts as one at the prompt.
  core.interrupt_chunks(true)
  local _ <close> = setmetatable({}, { __close = function() core.interrupt_chunks(false) end })
  while true do
    local ok, more = pcall(step, core, read, interactive)
    if not ok and not tostring(more):match("interrupted$") then error(more, 0) end
    if not ok then io.write("\n") elseif not more then break end
    io.stdout:flush()
  end
  if interactive then io.write("\n") end
end

return repl
