-- md.runlog: the JSON-lines log of a run folder, resuming it, and its plots.
local T = require "harness"
local md = require "moondust"
local json = { decode = md.core.json_decode }

local dir = os.tmpname()
os.remove(dir)
dir = dir .. " run's folder" -- a space and a quote: paths reach the shell quoted

T.test("runlog writes one JSON object per line and resumes", function()
  local run = md.runlog.open(dir)
  for s = 1, 5 do
    run:log { step = 10 * s, loss = 1 / s, lr = 1e-3, images_per_second = 200, metrics = s == 5 and { fid = 3.5 } or nil }
  end
  local lines = {}
  for line in io.lines(dir .. "/log.jsonl") do lines[#lines + 1] = json.decode(line) end
  T.eq(#lines, 5)
  T.eq(lines[3].step, 30); T.near(lines[3].loss, 1 / 3, 1e-12); T.eq(lines[5].metrics.fid, 3.5)
  T.truthy(lines[1].wall_seconds >= 0 and lines[5].wall_seconds >= lines[1].wall_seconds, "wall time grows")
  local again = md.runlog.open(dir)
  T.eq(#again.records, 5)
  again:log { step = 60, loss = 0.1 }
  local n = 0
  for _ in io.lines(dir .. "/log.jsonl") do n = n + 1 end
  T.eq(n, 6, "a resumed run appends")
  T.truthy(again.records[6].wall_seconds >= lines[5].wall_seconds, "wall time goes on")
  T.eq(#md.runlog.open(dir, { fresh = true }).records, 0)
  T.errors(function() again:log { step = 1, los = 2 } end, "did you mean 'loss'")
  T.errors(function() again:log { loss = 2 } end, "needs its step")
end)

T.test("runlog plots loss and metrics with gnuplot when it is installed", function()
  local run = md.runlog.open(dir, { fresh = true })
  for s = 1, 4 do run:log { step = s, loss = 1 / s, metrics = { fid = 10 / s, recall = s / 5 } } end
  local drew = run:plot()
  local have = os.execute("command -v gnuplot >/dev/null 2>&1") == true
  T.eq(drew, have)
  if have then
    for _, name in ipairs { "loss_steps", "loss_minutes", "metrics_steps", "metrics_minutes" } do
      local f = io.open(dir .. "/" .. name .. ".png", "rb")
      T.truthy(f and f:read(8) == "\137PNG\r\n\26\n", name .. ".png is a PNG")
      if f then f:close() end
    end
  end
end)

os.execute("rm -rf '" .. dir:gsub("'", "'\\''") .. "'")
T.finish()
