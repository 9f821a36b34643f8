-- Functional ops written in Lua from the C ops (they need no kernel of
-- their own): dropout, global average pooling, the Gaussian KL, one-hot rows.
local md = require "moondust"

-- Inverted dropout: zeroes each element with probability p and scales the
-- rest by 1/(1-p); the identity when not training or p == 0.
function md.dropout(x, p, training)
  p = p or 0.5
  if training == false or p == 0 then return x end
  assert(p >= 0 and p < 1, "dropout: p must be in [0, 1)")
  local keep = md.no_grad(function() return (md.rand(x:shape()):ge(p)) * (1 / (1 - p)) end)
  return x * keep
end

-- [N, C, H, W] -> [N, C]: the mean over positions.
function md.adaptive_avg_pool2d_1(x)
  local s = x:shape()
  return x:reshape(s[1], s[2], -1):mean(3)
end

-- KL(N(mean, exp(logvar)) || N(0, I)), summed over all but the first
-- dimension and averaged over the first (per-example, as VAE losses are).
function md.gaussian_kl(mean, logvar)
  local n = mean:size(1)
  return (logvar:exp() + mean * mean - logvar - 1):sum() * (0.5 / n)
end

-- One-hot rows [N, k] for 0-based labels (a tensor of any shape, flattened).
function md.one_hot(labels, k)
  return md.no_grad(function()
    return md.arange(k):reshape(1, k):eq(labels:reshape(-1, 1))
  end)
end

return md
