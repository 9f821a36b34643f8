-- A one-line progress bar on stderr: step/total, loss, images/s and ETA.
-- On a terminal the line redraws in place; otherwise (logs, CI) a line is
-- printed every `every` seconds (default 10). quiet = true prints nothing.
--   local bar = md.progress.new{total = 1000, label = "train"}
--   bar:update(step, {loss = l, images = batch_size})
--   bar:finish()
local md = require "moondust"

local progress = {}

local Bar = {}
Bar.__index = Bar

-- Wall-clock seconds (os.clock() would count the CPU time of all threads).
local now = md.time
progress.now = now

local is_tty = os.getenv("TERM") ~= nil and md.core.isatty(2)

-- Seconds as "1h05m" or "3m07s" ("?" when unknown).
local function fmt_time(s)
  if s ~= s or s == math.huge then return "?" end
  s = math.floor(s + 0.5)
  if s >= 3600 then return ("%dh%02dm"):format(s // 3600, s % 3600 // 60) end
  return ("%dm%02ds"):format(s // 60, s % 60)
end
progress.format_time = fmt_time

function progress.new(opts)
  opts = opts or {}
  local self = setmetatable({ total = opts.total, label = opts.label or "", quiet = opts.quiet,
                              every = opts.every or 10, start = now(), images = 0, tty = is_tty }, Bar)
  self.last_print = self.start
  return self
end

function Bar:line(step, info)
  local elapsed = now() - self.start
  local parts = { self.label ~= "" and self.label or nil }
  parts[#parts + 1] = self.total and ("%d/%d"):format(step, self.total) or tostring(step)
  if info.loss then parts[#parts + 1] = ("loss %.4f"):format(info.loss) end
  if info.epoch then parts[#parts + 1] = ("epoch %d"):format(info.epoch) end
  if self.images > 0 and elapsed > 0 then parts[#parts + 1] = ("%.1f img/s"):format(self.images / elapsed) end
  if self.total and step > 0 then
    parts[#parts + 1] = "ETA " .. fmt_time(elapsed / step * (self.total - step))
  end
  parts[#parts + 1] = fmt_time(elapsed)
  return table.concat(parts, "  ")
end

function Bar:update(step, info)
  info = info or {}
  self.images = self.images + (info.images or 0)
  self.step, self.info = step, info
  if self.quiet then return end
  local t = now()
  if self.tty then
    io.stderr:write("\r\27[K" .. self:line(step, info))
  elseif t - self.last_print >= self.every or step == self.total then
    io.stderr:write(self:line(step, info) .. "\n")
    self.last_print, self.printed_step = t, step
  end
end

function Bar:finish()
  if self.quiet or not self.step or (not self.tty and self.printed_step == self.step) then return end
  io.stderr:write((self.tty and "\r\27[K" or "") .. self:line(self.step, self.info) .. "\n")
end

return progress
