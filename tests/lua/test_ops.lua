-- Every differentiable op against finite differences, plus forward values
-- checked against hand-computed results.
local T = require "harness"
local md = require "moondust"

md.manual_seed(7)
local function r(...) return md.randn { ... } end
local function pos(...) return md.rand { ... } + 0.5 end
-- A scalar of f's output that weights every element differently, so no
-- gradient can hide behind a symmetric sum.
local weights = {}
local function wsum(y)
  local key = table.concat(y:shape(), "x")
  weights[key] = weights[key] or md.randn(y:shape())
  return (y * weights[key]):sum()
end

T.test("forward values of arithmetic and reductions", function()
  local a = md.tensor { { 1, 2, 3 }, { 4, 5, 6 } }
  T.near(a + md.tensor { 10, 20, 30 }, { { 11, 22, 33 }, { 14, 25, 36 } })
  T.near(a * md.tensor { { 2 }, { 3 } }, { { 2, 4, 6 }, { 12, 15, 18 } })
  T.near(1 - a, { { 0, -1, -2 }, { -3, -4, -5 } })
  T.near(6 / a, { { 6, 3, 2 }, { 1.5, 1.2, 1 } })
  T.near(a ^ 2, { { 1, 4, 9 }, { 16, 25, 36 } })
  T.near(a:sum(), 21)
  T.near(a:sum(1), { 5, 7, 9 })
  T.near(a:mean(2, true), { { 2 }, { 5 } })
  T.near(a:var(2), { 1, 1 })
  T.near(a:var(2, false), { 2 / 3, 2 / 3 })
  T.near(a:std(), math.sqrt(3.5))
  local v, i = a:max(1)
  T.near(v, { 4, 5, 6 }); T.near(i, { 1, 1, 1 })
  T.near(a:argmax(2), { 2, 2 })
  T.near(a:min(), 1)
  T.near(a:gt(3), { { 0, 0, 0 }, { 1, 1, 1 } })
  T.near(md.where(a:gt(3), a, 0), { { 0, 0, 0 }, { 4, 5, 6 } })
  T.near(a:clamp(2, 5), { { 2, 2, 3 }, { 4, 5, 5 } })
  T.near(md.matmul(a, a:t()), { { 14, 32 }, { 32, 77 } })
  T.near(md.cat({ a, a }, 2):shape(), { 2, 6 })
  T.near(md.stack({ a, a }, 1):shape(), { 2, 2, 3 })
  T.near(a:transpose(1, 2), { { 1, 4 }, { 2, 5 }, { 3, 6 } })
  T.near(md.index_select(a, 2, md.tensor { 2, 0 }), { { 3, 1 }, { 6, 4 } })
end)

T.test("in-place ops, views and copies", function()
  local a = md.zeros { 2, 3 }
  a:add_(1):mul_(3):sub_(md.tensor { 1, 2, 3 })
  T.near(a, { { 2, 1, 0 }, { 2, 1, 0 } })
  local v = a:view(6)
  v[1] = 9
  T.eq(a[1][1], 9, "views share storage")
  local row = a[2]
  row:fill_(5)
  T.near(a[2], { 5, 5, 5 })
  local c = a:clone()
  c:zero_()
  T.eq(a[1][1], 9, "clone copies")
  T.near(a:narrow(1, 2, 1), { { 5, 5, 5 } })
  a:add_(md.ones { 3 }, 2)
  T.near(a[2], { 7, 7, 7 })
end)

T.test("gradients: broadcasting arithmetic", function()
  T.gradcheck(function(a, b) return wsum(a + b) end, { r(3, 4), r(4) })
  T.gradcheck(function(a, b) return wsum(a - b) end, { r(3, 1), r(1, 4) })
  T.gradcheck(function(a, b) return wsum(a * b) end, { r(2, 3, 4), r(3, 1) })
  T.gradcheck(function(a, b) return wsum(a / b) end, { r(3, 4), pos(3, 4) })
  T.gradcheck(function(a, b) return wsum(a ^ b) end, { pos(3, 4), r(4) })
  T.gradcheck(function(a) return wsum(-a * 3 + 2 - 1 / (a * a + 1)) end, { r(5) })
  T.gradcheck(function(a, b) return wsum(md.maximum(a, b) + md.minimum(a, b) * 2) end, { r(6), r(6) })
  T.gradcheck(function(a, b) return wsum(md.where(a:gt(0), a, b)) end, { r(3, 4), r(4) })
end)

T.test("gradients: unary functions", function()
  for _, name in ipairs { "exp", "sin", "cos", "tanh", "sigmoid", "silu", "relu", "abs", "neg" } do
    T.gradcheck(function(a) return wsum(a[name](a)) end, { r(4, 5) })
  end
  for _, name in ipairs { "sqrt", "log", "rsqrt" } do
    T.gradcheck(function(a) return wsum(a[name](a)) end, { pos(4, 5) })
  end
  T.gradcheck(function(a) return wsum(a:pow(3)) end, { r(6) })
  T.gradcheck(function(a) return wsum(a:clamp(-0.5, 0.5)) end, { r(10) })
end)

T.test("gradients: reductions", function()
  T.gradcheck(function(a) return a:sum() end, { r(3, 4) })
  T.gradcheck(function(a) return wsum(a:sum(2)) end, { r(3, 4, 2) })
  T.gradcheck(function(a) return wsum(a:mean(1, true)) end, { r(3, 4) })
  T.gradcheck(function(a) return wsum(a:var(2)) end, { r(3, 5) })
  T.gradcheck(function(a) return a:var() end, { r(3, 5) })
  T.gradcheck(function(a) return wsum(a:std(1)) end, { r(6, 3) })
  T.gradcheck(function(a) return wsum((a:max(2))) end, { r(3, 7) })
  T.gradcheck(function(a) return a:min() end, { r(3, 7) })
end)

T.test("gradients: layout ops and products", function()
  T.gradcheck(function(a, b) return wsum(md.cat({ a, b, a }, 2)) end, { r(2, 3), r(2, 2) })
  T.gradcheck(function(a, b) return wsum(md.stack({ a, b }, 2)) end, { r(2, 3), r(2, 3) })
  T.gradcheck(function(a) return wsum(a:permute(3, 1, 2)) end, { r(2, 3, 4) })
  T.gradcheck(function(a) return wsum(md.index_select(a, 1, md.tensor { 2, 0, 2 })) end, { r(3, 4) })
  T.gradcheck(function(a) return wsum(a:reshape(2, -1)[2]) end, { r(3, 4) })
  T.gradcheck(function(a, b) return wsum(md.matmul(a, b)) end, { r(3, 4), r(4, 5) })
  T.gradcheck(function(a, b) return wsum(md.matmul(a, b)) end, { r(2, 3, 4), r(4, 5) })
  T.gradcheck(function(a, b) return wsum(md.bmm(a, b)) end, { r(2, 3, 4), r(2, 4, 2) })
  T.gradcheck(function(a, b) return wsum(md.matmul(a, b)) end, { r(4), r(4, 3) })
  T.gradcheck(function(x, w, b) return wsum(md.linear(x, w, b)) end, { r(2, 3, 4), r(5, 4), r(5) })
end)

-- A loss that adds two scalar losses (VAE: reconstruction + KL): the 0-dim
-- operands reduce into their gradient, which must be zeroed first.
T.test("gradients through sums of scalars", function()
  T.gradcheck(function(a, b) return a:sum() + (b * b):sum() * 0.5 end, { r(3, 4), r(5) })
  local x = r(4)
  x:requires_grad(true)
  local loss = (x * 2):sum() + (x * x):mean()
  loss:backward()
  T.near(x.grad, x:detach() * 0.5 + 2, 1e-5)
end)

T.test("gradients: convolution, normalisation, attention, pooling", function()
  for _, cfg in ipairs { { k = 3, s = 1, p = 1 }, { k = 3, s = 2, p = 1 }, { k = 1, s = 1, p = 0 }, { k = 3, s = 1, p = 0 } } do
    T.gradcheck(function(x, w, b) return wsum(md.conv2d(x, w, b, cfg.s, cfg.p)) end,
      { r(2, 3, 7, 7), r(4, 3, cfg.k, cfg.k), r(4) })
  end
  T.gradcheck(function(x, w, b) return wsum(md.group_norm(x, 2, w, b)) end, { r(2, 4, 3, 3), r(4), r(4) })
  T.gradcheck(function(x, w, b) return wsum(md.group_norm(x, 2, w, b, 1e-5, "silu")) end, { r(2, 4, 3, 3), r(4), r(4) })
  T.gradcheck(function(x, w, b, e) return wsum(md.group_norm(x, 2, w, b, 1e-5, "silu", e)) end,
    { r(2, 4, 3, 3), r(4), r(4), r(2, 4) })
  local x = r(2, 4, 3, 3)
  T.near(md.group_norm(x, 2, nil, nil, 1e-5, "silu"), md.group_norm(x, 2):silu(), 1e-6)
  -- the fused shift is the ResBlock's embedding add, done in the same pass
  local e, w, b = r(2, 4), r(4), r(4)
  T.near(md.group_norm(x, 2, w, b, 1e-5, "silu", e), md.group_norm(x + e:reshape(2, 4, 1, 1), 2, w, b):silu(), 1e-5)
  T.errors(function() return md.group_norm(x, 2, w, b, 1e-5, "silu", r(2, 3)) end, "shift must be N x C = 2 x 4")
  T.gradcheck(function(x) return wsum(md.softmax(x, 2)) end, { r(3, 5) })
  T.gradcheck(function(x) return wsum(md.log_softmax(x, 1)) end, { r(4, 3) })
  T.gradcheck(function(x) return wsum(md.attention(x, 2)) end, { r(2, 12, 3, 3) })
  T.gradcheck(function(x) return wsum(md.upsample_nearest(x, 2)) end, { r(2, 2, 3, 3) })
  T.gradcheck(function(x) return wsum(md.avg_pool2d(x, 2)) end, { r(2, 2, 4, 4) })
  T.gradcheck(function(w) return wsum(md.embedding(md.tensor { { 1, 0 }, { 2, 1 } }, w)) end, { r(3, 4) })
end)

T.test("gradients: losses", function()
  local labels = md.tensor { 0, 2, 1 }
  T.gradcheck(function(a, b) return md.mse_loss(a, b) end, { r(3, 4), r(3, 4) })
  T.gradcheck(function(x) return md.cross_entropy(x, labels) end, { r(3, 4) })
  T.gradcheck(function(x) return md.nll_loss(md.log_softmax(x, 2), labels) end, { r(3, 4) })
  T.gradcheck(function(p) return md.binary_cross_entropy(p, md.tensor { 0, 1, 1, 0 }) end,
    { md.tensor { 0.2, 0.7, 0.4, 0.9 } }, { eps = 1e-3 })
  T.gradcheck(function(x, y) return md.binary_cross_entropy_with_logits(x, y) end, { r(5), md.rand { 5 } })
  T.gradcheck(function(m, lv) return md.gaussian_kl(m, lv) end, { r(3, 4), r(3, 4) })
end)

T.test("loss values match closed forms", function()
  T.near(md.mse_loss(md.tensor { 1, 2 }, md.tensor { 0, 0 }), 2.5)
  T.near(md.cross_entropy(md.tensor { { 0, 0 } }, md.tensor { 1 }), math.log(2))
  T.near(md.binary_cross_entropy(md.tensor { 0.5 }, md.tensor { 1 }), math.log(2))
  T.near(md.binary_cross_entropy_with_logits(md.tensor { 0 }, md.tensor { 1 }), math.log(2))
  -- KL(N(1, e) || N(0, 1)) per element = 0.5 (e + 1 - 1 - 1)
  T.near(md.gaussian_kl(md.tensor { { 1 } }, md.tensor { { 1 } }), 0.5 * (math.exp(1) - 1), 1e-5)
  T.near(md.softmax(md.tensor { 0, math.log(3) }, 1), { 0.25, 0.75 })
end)

T.test("clear errors for bad shapes and arguments", function()
  T.errors(function() return md.zeros { 2, 3 } + md.zeros { 4 } end, "add: shapes [2, 3] and [4] cannot broadcast")
  T.errors(function() return md.matmul(md.zeros { 2, 3 }, md.zeros { 4, 5 }) end, "do not multiply")
  T.errors(function() return md.conv2d(md.zeros { 1, 3, 5, 5 }, md.zeros { 4, 1, 3, 3 }) end,
    "conv2d: weight expects 1 input channels, input has 3")
  T.errors(function() return md.group_norm(md.zeros { 1, 6, 2, 2 }, 4) end, "6 channels are not divisible into 4 groups")
  T.errors(function() return md.cross_entropy(md.zeros { 2, 10 }, md.tensor { 1, 10 }) end, "label 10 out of range for 10 classes")
  T.errors(function() return md.zeros { 2, 3 }:reshape(4, 2) end, "has 6 elements")
  T.errors(function() return md.zeros { 2 }[3] end, "out of range")
  T.errors(function() return md.zeros { 2 }:sum(3) end, "dimension")
  T.errors(function() return md.mse_loss(md.zeros { 2 }, md.zeros { 3 }) end, "same shape")
  T.errors(function() return md.zeros("x") end)
  T.errors(function() return md.tensor { { 1, 2 }, { 3 } } end, "ragged")
  T.errors(function() return md.index_select(md.zeros { 3 }, 1, md.tensor { 3 }) end, "out of range")
  T.errors(function() return md.embedding(md.tensor { -1 }, md.zeros { 3, 2 }) end, "out of range")
end)

T.test("random numbers: seeded, counter-based, per-generator", function()
  md.manual_seed(42)
  local a = md.randn { 1000 }
  md.manual_seed(42)
  local b = md.randn { 1000 }
  T.near(a, b, 0)
  T.truthy(math.abs(a:mean():item()) < 0.15 and math.abs(a:std():item() - 1) < 0.1, "N(0, 1)")
  local u = md.rand { 10000 }
  T.truthy(u:min():item() >= 0 and u:max():item() < 1 and math.abs(u:mean():item() - 0.5) < 0.02, "U[0, 1)")
  local k = md.randint(0, 10, { 1000 })
  T.truthy(k:min():item() == 0 and k:max():item() == 9, "randint range")
  local g1, g2 = md.Generator(5), md.Generator(5)
  local x = g1:randn { 3 }
  T.near(x, g2:randn { 3 }, 0)
  local st = g1:get_state()
  local y = g1:randn { 4 }
  g1:set_state(st)
  T.near(g1:randn { 4 }, y, 0)
  -- one draw of 8 equals two draws of 4 from the same stream
  local h1, h2 = md.Generator(9), md.Generator(9)
  local whole = h1:randn { 8 }
  T.near(md.cat({ h2:randn { 4 }, h2:randn { 4 } }), whole, 0)
end)

T.test("same numbers whatever the thread count", function()
  local n = md.get_num_threads()
  md.set_num_threads(1)
  md.manual_seed(3)
  local a = md.randn { 200000 }
  md.set_num_threads(math.max(2, n))
  md.manual_seed(3)
  local b = md.randn { 200000 }
  md.set_num_threads(n)
  T.near(a, b, 0)
end)

T.test("a loop that allocates does not grow", function()
  local function live() collectgarbage(); collectgarbage(); return (md.memory()) end
  local x = md.randn { 256, 1024 }
  for _ = 1, 50 do local _ = (x * 2 + 1):sum() end
  local before = live()
  for _ = 1, 400 do local _ = (x * 2 + 1):exp():sum() end
  local after = live()
  T.truthy(after - before < 8 * 2 ^ 20, ("live tensor memory grew by %d bytes"):format(after - before))
  do
    local big <close> = md.zeros { 1024, 1024 }
  end
end)

T.test("printing is short and readable", function()
  local s = tostring(md.zeros { 1000, 1000 })
  T.truthy(#s < 400, "summary of a million elements is short")
  T.truthy(s:find("tensor([[0., 0., 0.,  ..., 0., 0., 0.],", 1, true), s)
  T.truthy(tostring(md.tensor { 1.5, 2 }):find("1.5", 1, true))
end)

T.finish()
