-- Convolution and friends from Lua: the engine switch, both engines against
-- each other and against finite differences, hand-computed values for
-- conv2d, linear, pooling and upsampling, and the errors bad arguments give.
local T = require "harness"
local md = require "moondust"

md.manual_seed(3)
local function r(...) return md.randn { ... } end
local weights = {}
local function wsum(y) -- a scalar that weights every element differently
  local key = table.concat(y:shape(), "x")
  weights[key] = weights[key] or md.randn(y:shape())
  return (y * weights[key]):sum()
end

local default_backend = md.get_conv_backend()
local engines = { "im2col" }
if pcall(md.set_conv_backend, "dnnl") then engines[2], engines[3] = "dnnl_direct", "dnnl" end
md.set_conv_backend(default_backend)

T.test("the engine switch", function()
  T.truthy(default_backend == "dnnl" or default_backend == "im2col", "default " .. tostring(default_backend))
  T.eq(default_backend, engines[#engines], "oneDNN is the default when built in")
  for _, e in ipairs(engines) do
    md.set_conv_backend(e)
    T.eq(md.get_conv_backend(), e)
  end
  T.errors(function() md.set_conv_backend("cuda") end, "invalid option 'cuda'")
  md.set_conv_backend(default_backend)
end)

T.test("conv2d forward values by hand", function()
  for _, e in ipairs(engines) do
    md.set_conv_backend(e)
    local x = md.arange(1, 10):view(1, 1, 3, 3)
    -- a 3x3 box filter with zero padding sums each 3x3 neighbourhood
    T.near(md.conv2d(x, md.ones { 1, 1, 3, 3 }, nil, 1, 1),
      { { { { 12, 21, 16 }, { 27, 45, 33 }, { 24, 39, 28 } } } }, 1e-6, e)
    -- stride 2 keeps the corners; the bias adds per output channel
    local y = md.conv2d(x, md.ones { 2, 1, 3, 3 }, md.tensor { 0, 100 }, 2, 1)
    T.near(y, { { { { 12, 16 }, { 24, 28 } }, { { 112, 116 }, { 124, 128 } } } }, 1e-6, e)
    -- a 1x1 kernel mixes channels only
    local x2 = md.cat({ x, x * 2 }, 2)
    T.near(md.conv2d(x2, md.tensor { 1, -1 }:view(1, 2, 1, 1)), x * -1, 1e-6, e)
  end
  md.set_conv_backend(default_backend)
end)

T.test("both engines agree at the U-Net's shapes, forward and backward", function()
  if #engines < 2 then return end
  for _, cfg in ipairs {
    { n = 4, c = 32, o = 32, h = 28, k = 3, s = 1, p = 1 },
    { n = 8, c = 32, o = 32, h = 28, k = 3, s = 1, p = 1 }, -- enough positions for Winograd
    { n = 4, c = 32, o = 32, h = 28, k = 3, s = 2, p = 1 },
    { n = 2, c = 64, o = 64, h = 7, k = 3, s = 1, p = 1 },
    { n = 2, c = 64, o = 192, h = 7, k = 1, s = 1, p = 0 },
    { n = 3, c = 1, o = 8, h = 13, k = 3, s = 2, p = 0 },
  } do
    local x, w, b = r(cfg.n, cfg.c, cfg.h, cfg.h), r(cfg.o, cfg.c, cfg.k, cfg.k), r(cfg.o)
    local res = {}
    for i, e in ipairs(engines) do
      md.set_conv_backend(e)
      for _, t in ipairs { x, w, b } do t:requires_grad(true); t.grad = nil end
      local y = md.conv2d(x, w, b, cfg.s, cfg.p)
      wsum(y):backward()
      res[i] = { y, x.grad, w.grad, b.grad }
    end
    -- relative to the norm: a weight gradient sums thousands of products,
    -- and its small elements carry the rounding of the large ones
    for i = 2, #engines do
      for j = 1, 4 do
        local err = ((res[i][j] - res[1][j]):pow(2):sum() / res[1][j]:pow(2):sum()):item() ^ 0.5
        T.truthy(err < 1e-5, ("%s output/grad %d: relative error %.3g"):format(engines[i], j, err))
      end
    end
  end
  md.set_conv_backend(default_backend)
end)

T.test("conv2d gradients against finite differences on every engine", function()
  for _, e in ipairs(engines) do
    md.set_conv_backend(e)
    for _, cfg in ipairs { { h = 7, k = 3, s = 2, p = 1 }, { h = 6, k = 3, s = 1, p = 1 }, { h = 5, k = 5, s = 1, p = 2 } } do
      T.gradcheck(function(x, w, b) return wsum(md.conv2d(x, w, b, cfg.s, cfg.p)) end,
        { r(2, 2, cfg.h, cfg.h), r(3, 2, cfg.k, cfg.k), r(3) })
    end
    T.gradcheck(function(x, w) return wsum(md.conv2d(x, w)) end, { r(1, 2, 4, 5), r(2, 2, 3, 3) })
  end
  md.set_conv_backend(default_backend)
end)

T.test("changed weights reach every engine (no stale reordered copy)", function()
  local x, w = r(2, 16, 6, 6), r(32, 16, 3, 3)
  for _, e in ipairs(engines) do
    md.set_conv_backend(e)
    local before = md.no_grad(function() return md.conv2d(x, w, nil, 1, 1) end)
    T.near(md.no_grad(function() return md.conv2d(x, w, nil, 1, 1) end), before, 1e-6, e .. " same weights")
    md.no_grad(function() w:mul_(2) end)
    T.near(md.no_grad(function() return md.conv2d(x, w, nil, 1, 1) end), before * 2, 1e-5, e .. " after mul_")
    md.no_grad(function() w:copy_(w * 0.5) end)
    T.near(md.no_grad(function() return md.conv2d(x, w, nil, 1, 1) end), before, 1e-5, e .. " after copy_")
    local opt = md.optim.SGD({ w }, { lr = 1 })
    w.grad = md.ones(w:shape())
    opt:step() -- w - 1
    T.near(md.no_grad(function() return md.conv2d(x, w, nil, 1, 1) end),
      before - md.conv2d(x, md.ones(w:shape()), nil, 1, 1), 1e-4, e .. " after an optimizer step")
    md.no_grad(function() w:add_(1) end)
  end
  md.set_conv_backend(default_backend)
end)

T.test("input gradients alone (guidance) and no_grad records nothing", function()
  local x, w = r(2, 3, 7, 7), r(4, 3, 3, 3)
  w:requires_grad(true)
  x:requires_grad(true)
  local g = md.grad(wsum(md.conv2d(x, w, nil, 1, 1)), { x })
  T.eq(#g[1]:shape(), 4)
  T.eq(w.grad, nil, "md.grad leaves parameter grads alone")
  local y = md.no_grad(function() return md.conv2d(x, w, nil, 1, 1) end)
  T.errors(function() y:sum():backward() end)
end)

T.test("linear: values and gradients", function()
  local x = md.tensor { { 1, 2 }, { 3, 4 } }
  local w = md.tensor { { 1, 0 }, { 0, 1 }, { 1, 1 } }
  T.near(md.linear(x, w, md.tensor { 0, 0, 10 }), { { 1, 2, 13 }, { 3, 4, 17 } })
  T.near(md.linear(md.tensor { 1, 2 }, w), { 1, 2, 3 })
  T.eq(table.concat(md.linear(r(2, 3, 4, 5), r(6, 5)):shape(), "x"), "2x3x4x6")
  T.near(md.linear(md.zeros { 2, 0 }, md.zeros { 3, 0 }, md.tensor { 1, 2, 3 }), { { 1, 2, 3 }, { 1, 2, 3 } })
  T.gradcheck(function(x, w) return wsum(md.linear(x, w)) end, { r(4, 3), r(2, 3) })
  T.gradcheck(function(x, w, b) return wsum(md.linear(x, w, b)) end, { r(2, 2, 3), r(5, 3), r(5) })
end)

T.test("pooling and upsampling: values and gradients", function()
  local x = md.arange(1, 17):view(1, 1, 4, 4)
  T.near(md.avg_pool2d(x, 2), { { { { 3.5, 5.5 }, { 11.5, 13.5 } } } })
  T.near(md.avg_pool2d(x, 3, 1), { { { { 6, 7 }, { 10, 11 } } } })
  T.near(md.avg_pool2d(md.arange(1, 10):view(1, 1, 3, 3), 2), { { { { 3 } } } }) -- floor: odd edge dropped
  T.near(md.upsample_nearest(md.tensor { { { { 1, 2 } } } }, 3),
    { { { { 1, 1, 1, 2, 2, 2 }, { 1, 1, 1, 2, 2, 2 }, { 1, 1, 1, 2, 2, 2 } } } })
  T.eq(table.concat(md.upsample_nearest(r(2, 3, 7, 7)):shape(), "x"), "2x3x14x14", "scale 2 by default")
  T.near(md.adaptive_avg_pool2d_1(x), { { 8.5 } })
  T.gradcheck(function(x) return wsum(md.upsample_nearest(x, 3)) end, { r(2, 2, 3, 2) })
  T.gradcheck(function(x) return wsum(md.avg_pool2d(x, 3, 2)) end, { r(2, 2, 7, 7) })
  T.gradcheck(function(x) return wsum(md.adaptive_avg_pool2d_1(x)) end, { r(2, 3, 5, 5) })
end)

T.test("bad arguments give specific errors", function()
  local x = md.zeros { 1, 3, 5, 5 }
  T.errors(function() return md.conv2d(x, md.zeros { 4, 1, 3, 3 }) end, "weight expects 1 input channels, input has 3")
  T.errors(function() return md.conv2d(md.zeros { 3, 5, 5 }, md.zeros { 4, 3, 3, 3 }) end, "input must be N x C x H x W")
  T.errors(function() return md.conv2d(x, md.zeros { 4, 3, 3, 1 }) end, "weight must be out x in x k x k")
  T.errors(function() return md.conv2d(x, md.zeros { 4, 3, 3, 3 }, md.zeros { 3 }) end, "bias must have 4 elements")
  T.errors(function() return md.conv2d(x, md.zeros { 4, 3, 3, 3 }, nil, 0) end, "stride must be in 1..65536, got 0")
  T.errors(function() return md.conv2d(x, md.zeros { 4, 3, 3, 3 }, nil, 1, -1) end, "padding must be in 0..65536")
  T.errors(function() return md.conv2d(x, md.zeros { 4, 3, 3, 3 }, nil, 1, 1 << 62) end, "padding must be in")
  T.errors(function() return md.conv2d(x, md.zeros { 4, 3, 7, 7 }) end, "kernel 7 is larger than the padded input 5 x 5")
  T.errors(function() return md.conv2d(x, md.zeros { 4, 3, 0, 0 }) end, "kernel size must be at least 1")
  T.errors(function() return md.conv2d(x, "w") end, "Tensor expected")
  T.errors(function() return md.linear(x, md.zeros { 2, 4 }) end, "linear: weight expects 4 input features")
  T.errors(function() return md.linear(md.zeros { 2, 4 }, md.zeros { 3, 4 }, md.zeros { 2 }) end, "bias must have 3 elements")
  T.errors(function() return md.upsample_nearest(x, 0) end, "scale must be a positive integer")
  T.errors(function() return md.upsample_nearest(x, 1 << 40) end, "too large")
  T.errors(function() return md.avg_pool2d(x, 6) end, "kernel 6 is larger than the input")
  T.errors(function() return md.avg_pool2d(md.zeros { 5, 5 }, 2) end, "input must be N x C x H x W")
end)

T.test("empty batches and channels", function()
  for _, e in ipairs(engines) do
    md.set_conv_backend(e)
    T.eq(table.concat(md.conv2d(md.zeros { 0, 3, 5, 5 }, md.zeros { 4, 3, 3, 3 }, nil, 1, 1):shape(), "x"), "0x4x5x5")
    T.near(md.conv2d(md.zeros { 1, 0, 2, 2 }, md.zeros { 2, 0, 1, 1 }, md.tensor { 1, 2 }),
      { { { { 1, 1 }, { 1, 1 } }, { { 2, 2 }, { 2, 2 } } } })
  end
  md.set_conv_backend(default_backend)
end)

T.finish()
