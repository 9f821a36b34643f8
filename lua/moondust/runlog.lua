-- md.runlog: a run folder with a JSON-lines log and PNG plots of loss and
-- metrics against steps and against minutes (drawn by gnuplot from a
-- generated script; without gnuplot the log is still written).
--
--   local run = md.runlog.open("out/run1")            -- appends to an existing log (a resumed run)
--   run:log{step = 100, loss = 0.031, lr = 2e-4, images_per_second = 210, metrics = {fid = 12.3}}
--   run:plot()                                         -- loss_steps.png, loss_minutes.png,
--                                                      -- metrics_steps.png, metrics_minutes.png
--   md.runlog.compare({"out/run1", "out/run2"}, "out/compare") -- the runs overlaid
-- Each log line: {"step", "wall_seconds", "loss", "lr", "images_per_second", "metrics"} (what was given).
local md = require "moondust"
local options = require "moondust.options"

local runlog = {}
local Run = {}
Run.__index = Run

local mkdir_p, json_encode, json_decode = md.core.mkdir_p, md.core.json_encode, md.core.json_decode

local plot = require "moondust.plot"

function runlog.open(dir, opts)
  if type(dir) ~= "string" then error("md.runlog.open: expected a folder path, got " .. type(dir), 2) end
  opts = options.check("md.runlog.open", opts, { fresh = "boolean" })
  mkdir_p(dir)
  local self = setmetatable({ dir = dir, path = dir .. "/log.jsonl", records = {}, start = md.time(), offset = 0 }, Run)
  local f = not opts.fresh and io.open(self.path, "r")
  if f then -- a resumed run: keep its history, and its wall time goes on from the last line
    f:close()
    self.records = runlog.read(dir)
    local last = self.records[#self.records]
    self.offset = last and last.wall_seconds or 0
  else
    assert(io.open(self.path, "w")):close()
  end
  return self
end

local record_fields = { step = "number", loss = "number", lr = "number", images_per_second = "number", metrics = "table" }

function Run:log(rec)
  options.check("runlog:log", rec, record_fields)
  if rec.step == nil then error("runlog:log: a record needs its step", 2) end
  local line = { wall_seconds = self.offset + md.time() - self.start }
  for k, v in pairs(rec) do line[k] = v end
  local f = assert(io.open(self.path, "a"))
  f:write(json_encode(line), "\n")
  f:close()
  self.records[#self.records + 1] = line
  return line
end

local gp_quote = plot.quote

-- The numeric metric names in the logs, sorted.
local function metric_names(runs)
  local set, names = {}, {}
  for _, run in ipairs(runs) do
    for _, r in ipairs(run.records) do
      for k, v in pairs(r.metrics or {}) do
        if type(v) == "number" and not set[k] then set[k] = true; names[#names + 1] = k end
      end
    end
  end
  table.sort(names)
  return names
end

-- One data file per run: step, minutes, loss, then one column per metric
-- ("NaN" where a line lacks it).
local function write_data(path, records, names)
  local f = assert(io.open(path, "w"))
  for _, r in ipairs(records) do
    local cols = { ("%d"):format(r.step), ("%.4f"):format((r.wall_seconds or 0) / 60),
                   r.loss and ("%.8g"):format(r.loss) or "NaN" }
    for _, name in ipairs(names) do
      local v = r.metrics and r.metrics[name]
      cols[#cols + 1] = type(v) == "number" and ("%.8g"):format(v) or "NaN"
    end
    f:write(table.concat(cols, "\t"), "\n")
  end
  f:close()
end

-- loss_{steps,minutes}.png and metrics_{steps,minutes}.png in dir, one line
-- per run (runs: {{label = ..., records = {...}}, ...}; a key when there are
-- several). false without gnuplot or records.
local function draw(dir, runs, stem)
  local any = false
  for _, run in ipairs(runs) do any = any or #run.records > 0 end
  if not any or not plot.available() then return false end
  local names = metric_names(runs)
  local files = {}
  for i, run in ipairs(runs) do
    files[i] = ("%s/%s_data_%d.tsv"):format(dir, stem, i)
    write_data(files[i], run.records, names)
  end
  local lines = plot.preamble()
  lines[#lines + 1] = #runs > 1 and "set key top right" or "set key off"
  -- one plot command: the column pair ycol against xcol for every run
  local function plot_runs(xcol, ycol, style)
    local parts = {}
    for i, run in ipairs(runs) do
      parts[i] = ("%s using %d:%d with %s title %s"):format(gp_quote(files[i]), xcol, ycol, style, gp_quote(run.label or ""))
    end
    return "plot " .. table.concat(parts, ", ")
  end
  for _, axis in ipairs { "steps", "minutes" } do
    local xcol = axis == "steps" and 1 or 2
    lines[#lines + 1] = ("set output %s"):format(gp_quote(("%s/%sloss_%s.png"):format(dir, stem == "plot" and "" or stem .. "_", axis)))
    lines[#lines + 1] = ("set xlabel '%s'; set ylabel 'loss'; set logscale y"):format(axis)
    lines[#lines + 1] = plot_runs(xcol, 3, "lines lw 1.5")
    lines[#lines + 1] = "unset logscale y"
    if #names > 0 then
      local cols = math.min(#names, 3)
      lines[#lines + 1] = ("set output %s"):format(gp_quote(("%s/%smetrics_%s.png"):format(dir, stem == "plot" and "" or stem .. "_", axis)))
      lines[#lines + 1] = ("set multiplot layout %d,%d"):format(math.ceil(#names / cols), cols)
      for i, name in ipairs(names) do
        lines[#lines + 1] = ("set xlabel '%s'; set ylabel %s"):format(axis, gp_quote(name))
        lines[#lines + 1] = plot_runs(xcol, 3 + i, "linespoints pt 7 ps 0.6")
      end
      lines[#lines + 1] = "unset multiplot"
    end
  end
  return plot.run(("%s/%s.gp"):format(dir, stem), lines)
end

-- Writes the PNGs; false (and no plots) without gnuplot or records.
function Run:plot()
  return draw(self.dir, { { records = self.records } }, "plot")
end

-- The records of a run folder's log.jsonl.
function runlog.read(dir)
  local f, err = io.open(dir .. "/log.jsonl", "r")
  if not f then error(("runlog: %s is not a run folder (no log.jsonl): %s"):format(dir, tostring(err)), 2) end
  local records = {}
  for line in f:lines() do
    if line ~= "" then records[#records + 1] = json_decode(line) end
  end
  f:close()
  return records
end

-- Overlays runs: compare_loss_{steps,minutes}.png and
-- compare_metrics_{steps,minutes}.png in out_dir, a line per run labelled by
-- its folder. -> the PNG paths written (empty without gnuplot).
function runlog.compare(dirs, out_dir)
  if type(dirs) ~= "table" or #dirs == 0 then error("runlog.compare: expected a list of run folders", 2) end
  if type(out_dir) ~= "string" then error("runlog.compare: expected an output folder", 2) end
  local runs = {}
  for i, dir in ipairs(dirs) do runs[i] = { label = dir:gsub("/+$", ""), records = runlog.read(dir) } end
  mkdir_p(out_dir)
  if not draw(out_dir, runs, "compare") then return {} end
  local written = {}
  for _, name in ipairs { "loss_steps", "loss_minutes", "metrics_steps", "metrics_minutes" } do
    local path = ("%s/compare_%s.png"):format(out_dir, name)
    local f = io.open(path, "rb")
    if f then f:close(); written[#written + 1] = path end
  end
  return written
end

return runlog
