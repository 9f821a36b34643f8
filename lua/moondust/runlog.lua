-- md.runlog: a run folder with a JSON-lines log and PNG plots of loss and
-- metrics against steps and against minutes (drawn by gnuplot from a
-- generated script; without gnuplot the log is still written).
--
--   local run = md.runlog.open("out/run1")            -- appends to an existing log (a resumed run)
--   run:log{step = 100, loss = 0.031, lr = 2e-4, images_per_second = 210, metrics = {fid = 12.3}}
--   run:plot()                                         -- loss_steps.png, loss_minutes.png,
--                                                      -- metrics_steps.png, metrics_minutes.png
-- Each log line: {"step", "wall_seconds", "loss", "lr", "images_per_second", "metrics"} (what was given).
local md = require "moondust"
local options = require "moondust.options"

local runlog = {}
local Run = {}
Run.__index = Run

local mkdir_p, json_encode, json_decode = md.core.mkdir_p, md.core.json_encode, md.core.json_decode

-- Whether an executable gnuplot is on PATH (looked up once).
local gnuplot_present
local function have_gnuplot()
  if gnuplot_present == nil then
    gnuplot_present = false
    for dir in (os.getenv("PATH") or ""):gmatch("[^:]+") do
      local f = io.open(dir .. "/gnuplot", "rb")
      if f then f:close(); gnuplot_present = true; break end
    end
    if not gnuplot_present then
      io.stderr:write("runlog: gnuplot is not installed (apt-get install gnuplot-nox): writing the log without plots\n")
    end
  end
  return gnuplot_present
end

function runlog.open(dir, opts)
  if type(dir) ~= "string" then error("md.runlog.open: expected a folder path, got " .. type(dir), 2) end
  opts = options.check("md.runlog.open", opts, { fresh = "boolean" })
  mkdir_p(dir)
  local self = setmetatable({ dir = dir, path = dir .. "/log.jsonl", records = {}, start = md.time(), offset = 0 }, Run)
  local f = not opts.fresh and io.open(self.path, "r")
  if f then -- a resumed run: keep its history, and its wall time goes on from the last line
    for line in f:lines() do
      if line ~= "" then self.records[#self.records + 1] = json_decode(line) end
    end
    f:close()
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

-- gnuplot's single-quoted strings double a quote.
local function gp_quote(s) return "'" .. s:gsub("'", "''") .. "'" end

-- The numeric metric names in the log, sorted.
local function metric_names(records)
  local set, names = {}, {}
  for _, r in ipairs(records) do
    for k, v in pairs(r.metrics or {}) do
      if type(v) == "number" and not set[k] then set[k] = true; names[#names + 1] = k end
    end
  end
  table.sort(names)
  return names
end

-- Writes the PNGs; false (and no plots) without gnuplot or records.
function Run:plot()
  if #self.records == 0 or not have_gnuplot() then return false end
  local names = metric_names(self.records)
  local data_path = self.dir .. "/plot_data.tsv"
  local f = assert(io.open(data_path, "w"))
  -- columns: step, minutes, loss, then one per metric ("NaN" where a line lacks it)
  for _, r in ipairs(self.records) do
    local cols = { ("%d"):format(r.step), ("%.4f"):format(r.wall_seconds / 60), r.loss and ("%.8g"):format(r.loss) or "NaN" }
    for _, name in ipairs(names) do
      local v = r.metrics and r.metrics[name]
      cols[#cols + 1] = type(v) == "number" and ("%.8g"):format(v) or "NaN"
    end
    f:write(table.concat(cols, "\t"), "\n")
  end
  f:close()
  local lines = { "set terminal png size 900,540", "set datafile separator '\\t'", "set datafile missing 'NaN'",
                  "set grid", "set key off" }
  for axis, col in pairs { steps = 1, minutes = 2 } do
    lines[#lines + 1] = ("set output %s"):format(gp_quote(("%s/loss_%s.png"):format(self.dir, axis)))
    lines[#lines + 1] = ("set xlabel '%s'; set ylabel 'loss'; set logscale y"):format(axis)
    lines[#lines + 1] = ("plot %s using %d:3 with lines lw 1.5"):format(gp_quote(data_path), col)
    lines[#lines + 1] = "unset logscale y"
    if #names > 0 then
      local cols = math.min(#names, 3)
      lines[#lines + 1] = ("set output %s"):format(gp_quote(("%s/metrics_%s.png"):format(self.dir, axis)))
      lines[#lines + 1] = ("set multiplot layout %d,%d"):format(math.ceil(#names / cols), cols)
      for i, name in ipairs(names) do
        lines[#lines + 1] = ("set xlabel '%s'; set ylabel %s"):format(axis, gp_quote(name))
        lines[#lines + 1] = ("plot %s using %d:%d with linespoints pt 7 ps 0.6"):format(gp_quote(data_path), col, 3 + i)
      end
      lines[#lines + 1] = "unset multiplot"
    end
  end
  local script_path = self.dir .. "/plot.gp"
  local s = assert(io.open(script_path, "w"))
  s:write(table.concat(lines, "\n"), "\n")
  s:close()
  local log_path = self.dir .. "/gnuplot.log"
  local ok = md.core.run_program({ "gnuplot", script_path }, log_path) == 0
  if not ok then io.stderr:write("runlog: gnuplot failed, see " .. log_path .. "\n") end
  return ok
end

return runlog
