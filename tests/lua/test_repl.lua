-- The REPL (lua/moondust/repl.lua): completion, chunks as lua.c reads them,
-- a session over a pipe, and a terminal session with Ctrl-C and Tab.
local T = require "harness"
local md = require "moondust"
local repl = require "moondust.repl"

local function has(list, want)
  for _, v in ipairs(list) do if v == want then return true end end
  return false
end

T.test("completion of globals and dotted paths", function()
  _G.md = md
  T.eq(table.concat(repl.complete("md.samp"), " "), "md.sample md.sampler md.samplers")
  T.eq(table.concat(repl.complete("md.nn.Con"), " "), "md.nn.Conv2d")
  local data = repl.complete("md.data.")
  for _, name in ipairs { "md.data.fashion_mnist", "md.data.loader", "md.data.png_folder" } do
    T.truthy(has(data, name), name .. " not offered: " .. table.concat(data, " "))
  end
  T.truthy(has(repl.complete("md.metr"), "md.metrics"), "a submodule not loaded yet")
  T.truthy(has(repl.complete("pri"), "print") and has(repl.complete("fun"), "function"), "globals and keywords")
  local env = { x = md.ones { 2 }, s = "text" }
  T.truthy(has(repl.complete("x:su", env), "x:sum"), "a tensor's methods")
  T.truthy(has(repl.complete("s:up", env), "s:upper"), "a string's methods")
  T.eq(#repl.complete("nosuch.x", env), 0)
  T.eq(#repl.complete("x.y.z", env), 0, "no path through a method")
  T.truthy(not has(repl.complete("md.", md), "md._unused"), "hidden names stay hidden")
end)

T.test("chunks compile as lua.c compiles them", function()
  local env = { x = 3 }
  T.eq(repl.compile("x * 2", env)(), 6, "an expression returns its value")
  T.eq(repl.compile("=x + 1", env)(), 4, "=expr")
  T.eq(select("#", repl.compile("y = x", env)()), 0, "a statement returns nothing")
  local fn, more = repl.compile("function f(a)", env)
  T.truthy(fn == nil and more, "an unfinished chunk asks for more")
  local _, more2, err = repl.compile("x x", env)
  T.truthy(not more2 and err:find("syntax error", 1, true) or err:find("near", 1, true), err)
end)

local function run(cmd)
  local p = io.popen(cmd .. " 2>&1")
  local out = p:read("a")
  local ok = p:close()
  return out, ok
end
local lua_repl = "lua5.4 -e 'require(\"moondust.repl\").run()'"

T.test("a session over a pipe", function()
  local input = table.concat({ "x = 1 + 1", "print(x)", "function f(a)", "  return a * 3", "end", "f(5)",
    "error('boom')", "print('after')", "md.zeros{2, 3}:shape()", "1, nil, 'a'",
    "setmetatable({}, {__tostring = function() error('bad tostring') end})", "print('still here')" }, "\n")
  local out, ok = run("printf '%s\\n' \"" .. input .. "\" | " .. lua_repl)
  T.truthy(ok, out)
  T.eq(out, "2\n15\nstdin:1: boom\nafter\nmd.Size([2, 3])\n1\tnil\ta\nstdin:1: bad tostring\nstill here\n")
end)

local python = "/usr/bin/python3"
local have_pty = io.open(python) ~= nil and os.execute(python .. " -c 'import pty' 2>/dev/null") == true

-- steps for tests/lua/pty_session.py; returns its transcript and status
local function pty(steps, cmd)
  local file = os.tmpname()
  local f = assert(io.open(file, "w"))
  f:write(table.concat(steps, "\n"), "\n")
  f:close()
  local out, ok = run(python .. " tests/lua/pty_session.py " .. file .. " " .. cmd)
  os.remove(file)
  return out:gsub("\27%[%?2004[hl]", ""):gsub("\r", ""), ok
end

T.test("at a terminal: Ctrl-C clears the line or stops the chunk, Tab completes, Ctrl-D ends", function()
  if not have_pty then print("skip: no python3 for the terminal test"); return end
  local out, ok = pty({
    "expect > ", "send x = 21\\n", "expect > ",
    "send abc", "expect abc", "send \\x03", "expect > ", -- an idle Ctrl-C: a new prompt
    "send print(x * 2)\\n", "expect 42", "expect > ",
    "send while true do end\\n", "expect while true do end", "sleep 0.3", "send \\x03", "expect interrupted",
    "expect > ", "send md.set_num_th\\t(1)\\n", "expect > ", "send print(md.get_num_threads())\\n", "expect > ",
    "send function g()\\n", "expect >> ", "send return 7 end\\n", "expect > ", "send g()\\n", "expect 7",
    "expect > ", "send \\x04",
  }, lua_repl)
  T.truthy(ok, out)
  T.truthy(out:find("moondust " .. md.version, 1, true), "the greeting")
  T.truthy(out:find("> abc\n> print(x * 2)\n42\n", 1, true), "Ctrl-C dropped the line and x survived:\n" .. out)
  T.truthy(out:find("^Cinterrupted\n> ", 1, true), "the loop was interrupted:\n" .. out)
  T.truthy(out:find("> md.set_num_threads(1)\n", 1, true), "Tab completed the name:\n" .. out)
  T.truthy(out:find("print(md.get_num_threads())\n1\n", 1, true), "the completed call ran:\n" .. out)
  T.truthy(out:find(">> return 7 end\n> g()\n7\n", 1, true), "a continuation line:\n" .. out)
end)

T.test("without readline: plain lines, and Ctrl-C still clears the prompt", function()
  if not have_pty then print("skip: no python3 for the terminal test"); return end
  local out, ok = pty({
    "expect > ", "send x = 1\\n", "expect > ", "send \\x03", "expect > ", "send print(x + 1)\\n", "expect 2",
    "expect > ", "send \\x04",
  }, "lua5.4 -e 'require(\"moondust\").core.readline = nil; require(\"moondust.repl\").run()'")
  T.truthy(ok, out)
  T.truthy(out:find("built without readline: no completion", 1, true), out)
  T.truthy(out:find("print(x + 1)\n2\n", 1, true), out)
end)

T.finish()
