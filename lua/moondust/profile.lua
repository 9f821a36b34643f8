-- md.profile(fn, ...): runs fn with the op profiler on and returns a report
-- of where the time went, per core op (forward calls and backward sweeps
-- apart), sorted by time:
--   local report = md.profile(function() train_step() end)
--   print(report)            -- or report.rows, report.wall_seconds
-- Times are wall-clock seconds inside each C function; "(other)" is what
-- ran outside them (Lua code, allocation of Lua objects).
local md = require "moondust"
local core = md.core

local Report = {}
Report.__index = Report

function Report:__tostring()
  local lines = { ("%-28s %8s %10s %7s %10s"):format("op", "calls", "ms", "%", "us/call") }
  for _, r in ipairs(self.rows) do
    local name = r.backward and (r.name .. " (backward)") or r.name
    lines[#lines + 1] = ("%-28s %8d %10.2f %6.1f%% %10.1f"):format(name, r.calls, 1e3 * r.seconds,
      100 * r.seconds / self.wall_seconds, 1e6 * r.seconds / math.max(r.calls, 1))
  end
  lines[#lines + 1] = ("%-28s %8s %10.2f"):format("wall", "", 1e3 * self.wall_seconds)
  return table.concat(lines, "\n")
end

local function profile(fn, ...)
  local t0 = md.time()
  core.profile_start()
  local ok, err = pcall(fn, ...)
  local rows = core.profile_stop()
  local wall = md.time() - t0
  if not ok then error(err, 0) end
  local inside = 0
  for _, r in ipairs(rows) do inside = inside + r.seconds end
  rows[#rows + 1] = { name = "(other)", backward = false, seconds = math.max(wall - inside, 0), calls = 0 }
  table.sort(rows, function(a, b) return a.seconds > b.seconds end)
  return setmetatable({ rows = rows, wall_seconds = wall }, Report)
end

return profile
