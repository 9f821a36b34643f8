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

T.test("md.plot.figure draws panels of lines, and checks what it is given", function()
  local png = dir .. "/sweep.png"
  local drew = md.plot.figure(png, {
    { xlabel = "scale", ylabel = "accuracy", series = { { label = "a", x = { 0, 1, 3 }, y = { 0.1, 0.5, 0.9 } },
                                                       { label = "b", x = { 0, 1 }, y = { 0.2, 0 / 0 } } } },
    { xlabel = "t", ylabel = "FID", logy = true, series = { { x = { 0, 500 }, y = { 10, 20 } } } },
  }, { columns = 2 })
  local have = os.execute("command -v gnuplot >/dev/null 2>&1") == true
  T.eq(drew, have)
  if have then
    local f = assert(io.open(png, "rb"))
    T.eq(f:read(8), "\137PNG\r\n\26\n")
    f:close()
    local tsv = T.read_file(dir .. "/sweep_1_2.tsv")
    T.eq(tsv, "0\t0.2\n1\tNaN\n", "a NaN point is written as gnuplot's missing value")
  end
  T.errors(function() md.plot.figure(dir .. "/x.svg", { {} }) end, "expected a .png path")
  T.errors(function() md.plot.figure(png, { { series = { { x = { 1, 2 }, y = { 1 } } } } }) end,
    "panel 1 series 1 needs x and y lists of one length")
  T.errors(function() md.plot.figure(png, { { xlable = "t", series = { { x = { 1 }, y = { 1 } } } } }) end, "xlabel")
  T.errors(function() md.plot.figure(png, { { series = {} } }) end, "panel 1 has no series")
  T.errors(function() md.plot.figure(png, { { key = 3, series = { { x = { 1 }, y = { 1 } } } } }) end, "key must be a position")
  T.errors(function() md.plot.figure(png, { { series = { { lable = "a", x = { 1 }, y = { 1 } } } } }) end, "did you mean 'label'")
  T.errors(function() md.plot.figure(png, { { series = { { x = { 0 / 0 }, y = { 1 } } } } }) end, "x[1] is not a finite number")
end)

os.execute("rm -rf '" .. dir:gsub("'", "'\\''") .. "'")
T.finish()
