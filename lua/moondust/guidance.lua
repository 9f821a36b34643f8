-- Guidance functions for md.sample. A guidance function cond_fn(x, t, y)
-- returns a tensor shaped like x: the (scaled) gradient of log p(y | x_t).
-- The DDPM sampler adds variance * cond_fn to the posterior mean; the DDIM
-- sampler subtracts sqrt(1 - ab_t) * cond_fn from the predicted noise
-- (Dhariwal & Nichol 2021). Any Lua function of the same shape works.
local md = require "moondust"

local guidance = {}

-- scale * d/dx log softmax(classifier(x, t))[y], through the autograd's
-- input gradients: the classifier's parameter gradients are not touched.
function guidance.classifier(classifier, scale)
  scale = scale or 1
  return function(x, t, y)
    if scale == 0 then return md.zeros_like(x) end
    return md.enable_grad(function()
      local xin = x:detach()
      xin:requires_grad(true)
      local logp = md.log_softmax(classifier(xin, t), 2)
      -- sum_i log p(y_i | x_i): each image's gradient is its own term's
      local picked = (logp * md.one_hot(y, logp:size(2))):sum()
      local g = md.grad(picked, { xin })[1]
      return g * scale
    end)
  end
end

return guidance
