-- The Makefile on a machine without the packages: no pkg-config noise before
-- `make setup` has run, and one clear line naming what to install.
local T = require "harness"

local fake = os.tmpname()
os.remove(fake)
assert(os.execute("mkdir -p " .. fake))
-- a pkg-config that knows no package, as on a fresh machine
local f = assert(io.open(fake .. "/pkg-config", "w"))
f:write('#!/bin/sh\necho "Package $* was not found in the pkg-config search path." >&2\nexit 1\n')
f:close()
assert(os.execute("chmod +x " .. fake .. "/pkg-config"))

-- make's output (stdout and stderr) and whether it succeeded
local function make(args, path)
  local p = io.popen(("env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL PATH=%s make --no-print-directory -n BUILD=%s/build %s 2>&1; echo \"rc=$?\"")
    :format(path or os.getenv("PATH"), fake, args))
  local out = p:read("a")
  p:close()
  local rc = tonumber(out:match("rc=(%d+)%s*$"))
  return out:gsub("rc=%d+%s*$", ""), rc
end
local hidden = fake .. ":" .. os.getenv("PATH")

T.test("targets that compile nothing do not run pkg-config", function()
  local out, rc = make("setup clean", hidden)
  T.eq(rc, 0, out)
  T.truthy(not out:find("pkg-config", 1, true) and not out:find("not found", 1, true), out)
end)

T.test("a missing package is one line naming the Debian package", function()
  local out, rc = make("all", hidden)
  T.truthy(rc ~= 0, "the build must stop")
  T.truthy(not out:find("was not found", 1, true), out)
  local lines = select(2, out:gsub("\n", "\n"))
  T.eq(lines, 1, out)
  for _, deb in ipairs { "liblua5.4-dev", "libopenblas-dev", "libpng-dev", "zlib1g-dev", "make setup" } do
    T.truthy(out:find(deb, 1, true), deb .. " not named in: " .. out)
  end
end)

T.test("with the packages the flags are there", function()
  local out, rc = make("all")
  T.eq(rc, 0, out)
  T.truthy(out:find("-I/usr/include/lua5.4", 1, true), "lua5.4's include directory")
  T.truthy(out:find("-lpng", 1, true), "libpng linked")
  T.truthy(not out:find("not found", 1, true), out)
end)

os.execute("rm -rf '" .. fake .. "'")
T.finish()
