-- A small test harness: each tests/lua/test_*.lua does
--   local T = require "harness"
--   T.test("name", function() T.near(a, b, tol) end)
--   T.finish()
-- and prints "ok name" / "FAIL name: why", then "RESULT passed failed".
local T = {}
local passed, failed = 0, 0

-- Gradient buffers that backward functions overwrite start as NaN in the
-- tests, so that an element one of them leaves unwritten shows.
require("moondust").core.poison_fresh_gradients(true)

function T.test(name, fn)
  local ok, err = xpcall(fn, debug.traceback)
  if ok then
    passed = passed + 1
    print("ok " .. name)
  else
    failed = failed + 1
    print("FAIL " .. name .. ": " .. tostring(err))
  end
end

local function fail(msg, level) error(msg, (level or 1) + 2) end

function T.truthy(v, msg) if not v then fail(msg or "expected a true value", 1) end end

function T.eq(a, b, msg)
  if a ~= b then fail((msg and msg .. ": " or "") .. "expected " .. tostring(b) .. ", got " .. tostring(a), 1) end
end

-- numbers, or tensors/tables compared elementwise (tensors via :totable())
local function flat(x, out)
  out = out or {}
  if type(x) == "number" then out[#out + 1] = x
  elseif type(x) == "table" then for _, v in ipairs(x) do flat(v, out) end
  else flat(x:totable(), out) end
  return out
end
T.flat = flat

function T.near(a, b, tol, msg)
  tol = tol or 1e-5
  local fa, fb = flat(a), flat(b)
  if #fa ~= #fb then fail(("size mismatch: %d vs %d"):format(#fa, #fb), 1) end
  for i = 1, #fa do
    local d = math.abs(fa[i] - fb[i])
    if not (d <= tol * (1 + math.abs(fb[i]))) then
      fail(("%selement %d: got %.7g, expected %.7g (tol %g)"):format(msg and msg .. ": " or "", i, fa[i], fb[i], tol), 1)
    end
  end
end

-- fn must raise an error whose message contains `pattern` (plain text)
function T.errors(fn, pattern)
  local ok, err = pcall(fn)
  if ok then fail("expected an error" .. (pattern and (" mentioning '" .. pattern .. "'") or ""), 1) end
  if pattern and not tostring(err):find(pattern, 1, true) then
    fail("error '" .. tostring(err) .. "' does not mention '" .. pattern .. "'", 1)
  end
  return err
end

-- Finite-difference gradient check of a scalar function f(inputs...) built
-- from moondust ops: compares autograd's gradient for each input with central
-- differences in double-precision bookkeeping over float32 data.
function T.gradcheck(f, inputs, opts)
  opts = opts or {}
  local md = require "moondust"
  local eps, tol = opts.eps or 1e-2, opts.tol or 2e-2
  for _, x in ipairs(inputs) do x:requires_grad(true); x.grad = nil end
  local out = f(table.unpack(inputs))
  out:backward()
  for k, x in ipairs(inputs) do
    local g = x.grad and x.grad:totable() or nil
    local gflat = g and flat(g) or {}
    local n = x:numel()
    local step = math.max(1, n // (opts.max_points or 40))
    local data = x:view(n)
    for i = 1, n, step do
      local orig = data[i]
      local fp, fm
      md.no_grad(function()
        data[i] = orig + eps; fp = f(table.unpack(inputs)):item()
        data[i] = orig - eps; fm = f(table.unpack(inputs)):item()
        data[i] = orig
      end)
      local num = (fp - fm) / (2 * eps)
      local ana = gflat[i] or 0
      if math.abs(num - ana) > tol * (1 + math.abs(num)) then
        fail(("input %d element %d: autograd %.6g, finite difference %.6g"):format(k, i, ana, num), 1)
      end
    end
  end
end

-- A fresh temporary folder, and path(name) inside it.
function T.tempdir()
  local dir = os.tmpname()
  os.remove(dir)
  require("moondust").core.mkdir_p(dir)
  return dir, function(name) return dir .. "/" .. name end
end

function T.write_file(p, s) local f = assert(io.open(p, "wb")); f:write(s); f:close() end
function T.read_file(p) local f = assert(io.open(p, "rb")); local s = f:read("a"); f:close(); return s end

function T.finish()
  print(("RESULT %d %d"):format(passed, failed))
  os.exit(failed == 0 and 0 or 1)
end

return T
