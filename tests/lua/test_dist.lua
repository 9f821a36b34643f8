-- md.dist: MPI collectives and data parallelism, each case run under
-- `mpirun --oversubscribe -np 2` (tests/dist/worker.lua). Without MPI in the
-- build, the same API is a world of one and the collectives say what to install.
local T = require "harness"
local md = require "moondust"

local function mpirun(np, args)
  local cmd = ("OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 timeout 120 mpirun --oversubscribe "
               .. "-np %d lua5.4 tests/dist/worker.lua %s 2>&1"):format(np, args)
  local p = io.popen(cmd)
  local out = p:read("a")
  local ok, _, code = p:close()
  return ok, out, code
end

local function read_curve(path)
  local c = {}
  for line in io.lines(path) do c[#c + 1] = tonumber(line) end
  return c
end

if not md.dist.available() then
  T.test("without MPI the API is a world of one and says what to install", function()
    T.eq(select(2, md.dist.init()), 1)
    local ok, err = pcall(md.dist.allreduce_, md.zeros { 3 })
    T.truthy(not ok and err:match("install libopenmpi%-dev"), tostring(err))
  end)
  T.finish()
  return
end

T.test("allreduce of odd sizes, of zero elements and of lists; broadcast; uneven all_gather", function()
  local ok, out = mpirun(2, "collectives")
  T.truthy(ok and out:match("collectives ok"), out)
end)

T.test("a rank that fails ends every rank with its message, never a hang", function()
  local ok, out, code = mpirun(2, "failure")
  T.truthy(not ok and code ~= 124, "exit code " .. tostring(code) .. " (124 would be the timeout)")
  T.truthy(out:match("rank 1: .*rank one gives up"), out)
end)

T.test("2 ranks x 64 give 1 rank x 128's loss curve over 20 steps", function()
  local one, two = os.tmpname(), os.tmpname()
  local ok1, out1 = mpirun(1, "train " .. one)
  T.truthy(ok1, out1)
  local ok2, out2 = mpirun(2, "train " .. two)
  T.truthy(ok2, out2)
  local a, b = read_curve(one), read_curve(two)
  T.eq(#a, 20); T.eq(#b, 20)
  -- not bitwise: the mean over 128 examples is summed in another order when
  -- it is split into two means of 64 (and the convolution engine blocks a
  -- batch of 64 differently), so float rounding differs at about 1e-7
  for i = 1, 20 do T.near(b[i], a[i], 1e-6 * math.abs(a[i]), "step " .. i) end
  os.remove(one); os.remove(two)
end)

-- The trainer itself: a global batch of 12 split 6 + 6 (and 4 + 4 + 4 over
-- three ranks, oversubscribed), the same loss curve as one rank, within
-- float rounding for the reason above; and a resumed 2-rank run continues
-- the uninterrupted one (same data order, noise and optimizer state).
T.test("md.trainer.train: 2 and 3 ranks match 1 rank, and resumed runs (2 ranks; 1 then 3 ranks) match", function()
  local base = os.tmpname()
  local curves = {}
  for _, case in ipairs { { 1, "" }, { 2, "" }, { 3, "" }, { 2, "resume" } } do
    local out = ("%s_%d%s"):format(base, case[1], case[2])
    local ok, text = mpirun(case[1], ("trainer %s 8 %s"):format(out, case[2]))
    T.truthy(ok, text)
    curves[#curves + 1] = read_curve(out)
  end
  -- 4 steps on one rank, resumed on three
  local ok1, t1 = mpirun(1, ("trainer %s_switch 4"):format(base))
  local ok3, t3 = mpirun(3, ("trainer %s_switch 8 continue"):format(base))
  T.truthy(ok1 and ok3, t1 .. t3)
  curves[#curves + 1] = read_curve(base .. "_switch")
  for c = 2, 5 do
    T.eq(#curves[c], 8)
    for i = 1, 8 do T.near(curves[c][i], curves[1][i], 1e-5 * math.abs(curves[1][i]), ("curve %d, step %d"):format(c, i)) end
  end
  os.execute("rm -rf '" .. base .. "'_*")
end)

T.test("md.sample with distributed = true: the images of one process, gathered on every rank", function()
  local one, two = os.tmpname(), os.tmpname()
  local ok1, out1 = mpirun(1, "sample " .. one)
  T.truthy(ok1, out1)
  local ok2, out2 = mpirun(2, "sample " .. two)
  T.truthy(ok2, out2)
  local a, b = md.load(one).x, md.load(two).x
  T.near(b, a, 0, "bitwise (batch size 1 on both sides: the same batches)")
  os.remove(one); os.remove(two)
end)

T.finish()
