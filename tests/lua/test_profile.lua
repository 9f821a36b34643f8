-- md.profile: per-op times and call counts, forward and backward apart,
-- nested calls booked once, and a report that prints.
local T = require "harness"
local md = require "moondust"

T.test("md.profile counts every op once and adds up to the wall time", function()
  local x, w = md.randn { 2, 3, 8, 8 }, md.randn { 4, 3, 3, 3 }
  w:requires_grad(true)
  local report = md.profile(function()
    for _ = 1, 3 do
      local y = md.conv2d(x, w, nil, 1, 1)
      y:silu():sum():backward()
    end
  end)
  local rows = {}
  for _, r in ipairs(report.rows) do rows[r.name .. (r.backward and " (backward)" or "")] = r end
  T.eq(rows.conv2d.calls, 3)
  T.eq(rows["conv2d (backward)"].calls, 3)
  T.eq(rows["silu (backward)"].calls, 3)
  T.eq(rows.backward.calls, 3) -- the sweep itself, without the functions it called
  local total = 0
  for _, r in ipairs(report.rows) do
    T.truthy(r.seconds >= 0, r.name .. " has a negative time")
    total = total + r.seconds
  end
  T.truthy(math.abs(total - report.wall_seconds) <= 0.05 * report.wall_seconds + 1e-4,
    ("rows add up to %.6f s, the wall time is %.6f s"):format(total, report.wall_seconds))
  T.truthy(tostring(report):find("conv2d (backward)", 1, true), "the printed report names the backward pass")
end)

T.test("md.profile is off afterwards and passes errors through", function()
  T.errors(function() md.profile(function() error("boom") end) end, "boom")
  local report = md.profile(function() end)
  T.eq(#report.rows, 1) -- only "(other)": nothing recorded from before
end)

T.finish()
