local T = require "harness"
local md = require "moondust"

T.test("no_grad restores the mode, even after an error", function()
  T.eq(md.is_grad_enabled(), true)
  md.no_grad(function() T.eq(md.is_grad_enabled(), false) end)
  T.eq(md.is_grad_enabled(), true)
  pcall(md.no_grad, function() error("boom") end)
  T.eq(md.is_grad_enabled(), true)
  do
    local _ <close> = md.no_grad()
    T.eq(md.is_grad_enabled(), false)
  end
  T.eq(md.is_grad_enabled(), true)
end)

T.finish()
