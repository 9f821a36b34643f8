-- md.plot: line plots drawn by gnuplot (Debian's gnuplot-nox) from a
-- generated script, for run logs, sweeps and accuracy curves. Without
-- gnuplot nothing is drawn and the functions say so by returning false.
--
--   md.plot.figure("out/acc.png", {
--     { xlabel = "t", ylabel = "accuracy", series = { { label = "test", x = {0, 500}, y = {0.9, 0.6} } } },
--   })
local md = require "moondust"
local options = require "moondust.options"

local plot = {}

-- Whether an executable gnuplot is on PATH (looked up once; the first miss
-- says so on stderr).
local gnuplot_present
function plot.available()
  if gnuplot_present == nil then
    gnuplot_present = false
    for dir in (os.getenv("PATH") or ""):gmatch("[^:]+") do
      local f = io.open(dir .. "/gnuplot", "rb")
      if f then f:close(); gnuplot_present = true; break end
    end
    if not gnuplot_present then
      io.stderr:write("plot: gnuplot is not installed (apt-get install gnuplot-nox): no plots are drawn\n")
    end
  end
  return gnuplot_present
end

-- A gnuplot single-quoted string (a quote is doubled).
function plot.quote(s) return "'" .. tostring(s):gsub("'", "''") .. "'" end

-- The lines every figure starts with: PNG output, literal labels, tab-separated data.
function plot.preamble(width, height)
  return { ("set terminal png size %d,%d"):format(width or 900, height or 540), "set termoption noenhanced",
           "set datafile separator '\\t'", "set datafile missing 'NaN'", "set grid" }
end

-- Runs a gnuplot script (a list of lines) written to script_path; its
-- messages go to a .log beside it. -> true when gnuplot succeeded.
function plot.run(script_path, lines)
  local f = assert(io.open(script_path, "w"))
  f:write(table.concat(lines, "\n"), "\n")
  f:close()
  local log_path = script_path:gsub("%.gp$", "") .. ".log"
  local ok = md.core.run_program({ "gnuplot", script_path }, log_path) == 0
  if not ok then io.stderr:write("plot: gnuplot failed, see " .. log_path .. "\n") end
  return ok
end

local panel_names = { xlabel = "string", ylabel = "string", series = "table", logx = "boolean", logy = "boolean",
                      title = "string", key = true }

-- md.plot.figure(png_path, panels, {columns =, width =, height =}): one
-- PNG of panels side by side, each {xlabel =, ylabel =, title =, logx =,
-- logy =, key =, series = {{label =, x = {...}, y = {...}}, ...}} drawn as
-- lines with points; key is where the legend goes (gnuplot's words, default
-- "top left" when there are several series) or false for none. The data and the script stay beside the PNG (.tsv, .gp).
-- -> false without gnuplot.
function plot.figure(png_path, panels, opts)
  if type(png_path) ~= "string" or not png_path:match("%.png$") then
    error("plot.figure: expected a .png path, got " .. tostring(png_path), 2)
  end
  if type(panels) ~= "table" or #panels == 0 then error("plot.figure: expected a list of panels", 2) end
  opts = options.check("plot.figure", opts, { columns = "number", width = "number", height = "number" })
  options.integer("plot.figure", "columns", opts.columns, 1, 16)
  options.integer("plot.figure", "width", opts.width, 64, 10000)
  options.integer("plot.figure", "height", opts.height, 64, 10000)
  local stem = png_path:gsub("%.png$", "")
  for p, panel in ipairs(panels) do
    options.check("plot.figure panel " .. p, panel, panel_names)
    if type(panel.series) ~= "table" or #panel.series == 0 then
      error(("plot.figure: panel %d has no series"):format(p), 2)
    end
    if panel.key ~= nil and panel.key ~= false and (type(panel.key) ~= "string" or not panel.key:match("^[%a ]+$")) then
      error(("plot.figure: panel %d key must be a position like \"bottom right\", or false"):format(p), 2)
    end
    for s, ser in ipairs(panel.series) do
      options.check(("plot.figure panel %d series %d"):format(p, s), ser, { label = "string", x = "table", y = "table" })
      if type(ser.x) ~= "table" or type(ser.y) ~= "table" or #ser.x ~= #ser.y or #ser.x == 0 then
        error(("plot.figure: panel %d series %d needs x and y lists of one length"):format(p, s), 2)
      end
      for i, v in ipairs(ser.x) do
        if type(v) ~= "number" or v ~= v or math.abs(v) == math.huge then
          error(("plot.figure: panel %d series %d: x[%d] is not a finite number"):format(p, s, i), 2)
        end
      end
    end
  end
  if not plot.available() then return false end
  md.core.mkdir_p(png_path:match("^(.*)/[^/]*$") or ".")
  local columns = math.min(opts.columns or #panels, #panels)
  local lines = plot.preamble(opts.width or 420 * columns, opts.height or 360 * math.ceil(#panels / columns))
  lines[#lines + 1] = "set output " .. plot.quote(png_path)
  lines[#lines + 1] = ("set multiplot layout %d,%d"):format(math.ceil(#panels / columns), columns)
  for p, panel in ipairs(panels) do
    local parts = {}
    for s, ser in ipairs(panel.series) do
      local path = ("%s_%d_%d.tsv"):format(stem, p, s)
      local f = assert(io.open(path, "w"))
      for i = 1, #ser.x do
        local y = ser.y[i]
        f:write(("%.8g\t%s\n"):format(ser.x[i], (type(y) == "number" and y == y) and ("%.8g"):format(y) or "NaN"))
      end
      f:close()
      parts[s] = ("%s using 1:2 with linespoints lw 1.5 pt 7 ps 0.7 title %s"):format(plot.quote(path),
        plot.quote(ser.label or ""))
    end
    lines[#lines + 1] = ("set xlabel %s; set ylabel %s; set title %s"):format(plot.quote(panel.xlabel or ""),
      plot.quote(panel.ylabel or ""), plot.quote(panel.title or ""))
    lines[#lines + 1] = (panel.logx and "set logscale x" or "unset logscale x") .. "; "
      .. (panel.logy and "set logscale y" or "unset logscale y")
    local key = panel.key
    if key == nil then key = #panel.series > 1 and "top left" or false end
    lines[#lines + 1] = key and ("set key %s"):format(key) or "set key off"
    lines[#lines + 1] = "plot " .. table.concat(parts, ", ")
  end
  lines[#lines + 1] = "unset multiplot"
  return plot.run(stem .. ".gp", lines)
end

return plot
