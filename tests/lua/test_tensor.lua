-- The tensor API contract from Lua: creation, generators and their state,
-- views and copies, operators with numbers on either side, reductions with
-- dims and keepdim, products with batch dims, layout ops, printing, and the
-- errors a user sees. (Op-by-op gradients live in test_ops.lua.)
local T = require "harness"
local md = require "moondust"

md.manual_seed(11)
local function r(...) return md.randn { ... } end
local weights = {}
local function wsum(y)
  local key = table.concat(y:shape(), "x")
  weights[key] = weights[key] or md.randn(y:shape())
  return (y * weights[key]):sum()
end

T.test("creation functions", function()
  local t = md.tensor { { 1, 2, 3 }, { 4, 5, 6 } }
  T.near(t:shape(), { 2, 3 })
  T.near(t, { { 1, 2, 3 }, { 4, 5, 6 } })
  T.eq(md.tensor(2.5):dim(), 0)
  T.eq(md.tensor(2.5):item(), 2.5)
  T.near(md.zeros { 2, 3 }, { { 0, 0, 0 }, { 0, 0, 0 } })
  T.near(md.zeros(2, 3):shape(), { 2, 3 }, 0, "sizes as numbers")
  T.near(md.ones { 3 }, { 1, 1, 1 })
  T.near(md.full({ 2 }, 7), { 7, 7 })
  T.near(md.arange(4), { 0, 1, 2, 3 })
  T.near(md.arange(2, 5), { 2, 3, 4 })
  T.near(md.arange(0, 1, 0.25), { 0, 0.25, 0.5, 0.75 })
  T.near(md.arange(3, 0, -1), { 3, 2, 1 })
  T.near(md.linspace(-1, 1, 5), { -1, -0.5, 0, 0.5, 1 })
  T.eq(md.linspace(0, 1, 0):numel(), 0)
  local like = md.randn { 2, 4 }
  T.near(md.zeros_like(like):shape(), { 2, 4 })
  T.near(md.ones_like(like):sum(), 8)
  T.near(md.full_like(like, 3):mean(), 3)
  T.near(md.randn_like(like):shape(), { 2, 4 })
  T.near(md.rand_like(like):shape(), { 2, 4 })
  local u = md.rand { 5000 }
  T.truthy(u:min():item() >= 0 and u:max():item() < 1, "rand in [0, 1)")
  local k = md.randint(-2, 3, { 5000 })
  T.truthy(k:min():item() == -2 and k:max():item() == 2, "randint in [lo, hi)")
  for _, v in ipairs(k:totable()) do
    if v ~= math.floor(v) then error("randint gave a non-integer " .. v) end
  end
  T.near(md.randint(0, 4, { 2, 3 }):shape(), { 2, 3 })
end)

T.test("generators: independent streams, exact state round trip", function()
  md.manual_seed(1)
  local a = md.randn { 6 }
  md.manual_seed(1)
  local g = md.Generator(1)
  T.near(g:randn { 6 }, a, 0, "same seed, same numbers")
  g:randn { 100 }
  T.near(md.randn { 6 }, a, 0, "a Generator's draws leave the global stream alone")
  T.near(md.randn({ 6 }, md.Generator(1)), a, 0, "md.randn(shape, gen)")
  T.near(md.rand({ 3 }, md.Generator(2)), md.Generator(2):rand { 3 }, 0)
  T.near(md.randint(0, 9, { 5 }, md.Generator(2)), md.Generator(2):randint(0, 9, { 5 }), 0)
  T.eq(g:manual_seed(1), g, "manual_seed returns the generator")
  T.near(g:randn { 6 }, a, 0, "re-seeding restarts the stream")
  -- a seed that uses all 64 bits and a state in the middle of a stream
  local big = md.Generator(math.mininteger + 12345)
  big:rand { 37 }
  local st = big:get_state()
  T.eq(math.type(st.seed), "integer")
  T.eq(st.seed, math.mininteger + 12345)
  T.eq(st.counter, 10, "37 numbers take 10 counter steps")
  local want = big:randn { 9 }
  local copy = md.Generator(0)
  copy:set_state { seed = st.seed, counter = st.counter }
  T.near(copy:randn { 9 }, want, 0)
  T.truthy(tostring(copy):find("Generator(seed=", 1, true))
  -- the global generator's state, as checkpoints store it
  local gs = md.get_rng_state()
  local x = md.rand { 7 }
  md.set_rng_state(gs)
  T.near(md.rand { 7 }, x, 0)
  T.truthy((md.Generator(3):randn { 4 } - md.Generator(4):randn { 4 }):abs():sum():item() > 0, "seeds differ")
end)

T.test("views share storage, copies do not", function()
  local t = md.arange(0, 12)
  local v = t:view(3, 4)
  T.near(v:shape(), { 3, 4 })
  T.near(t:reshape { 2, -1 }:shape(), { 2, 6 })
  T.near(t:view { 4, 3 }:shape(), { 4, 3 })
  v[2][3] = 100
  T.eq(t[7], 100, "view writes through")
  local n = v:narrow(1, 2, 2)
  T.near(n:shape(), { 2, 4 })
  n:fill_(-1)
  T.eq(t[5], -1, "narrow shares storage")
  T.eq(t[4], 3)
  local c = v:clone()
  c:zero_()
  T.eq(v[1][1], 0)
  T.eq(t[5], -1, "clone copies")
  T.near(v:contiguous(), v)
  local d = md.zeros { 2, 3 }
  d:copy_(md.tensor { 1, 2, 3 })
  T.near(d, { { 1, 2, 3 }, { 1, 2, 3 } }, 0, "copy_ broadcasts")
  d:copy_(md.arange(0, 6))
  T.near(d, { { 0, 1, 2 }, { 3, 4, 5 } }, 0, "copy_ of the same element count")
  T.near(md.tensor { { 1, 2 }, { 3, 4 } }:totable(), { { 1, 2 }, { 3, 4 } })
  T.eq(type(md.tensor { { 1 } }:totable()[1]), "table")
  T.eq(md.tensor(4):totable(), 4)
end)

T.test("operators with numbers on either side", function()
  local a = md.tensor { 1, 2, 4 }
  T.near(a + 1, { 2, 3, 5 }); T.near(1 + a, { 2, 3, 5 })
  T.near(a - 1, { 0, 1, 3 }); T.near(1 - a, { 0, -1, -3 })
  T.near(a * 2, { 2, 4, 8 }); T.near(2 * a, { 2, 4, 8 })
  T.near(a / 2, { 0.5, 1, 2 }); T.near(2 / a, { 2, 1, 0.5 })
  T.near(a ^ 2, { 1, 4, 16 }); T.near(2 ^ a, { 2, 4, 16 })
  T.near(-a, { -1, -2, -4 })
  T.near(a:pow(0.5), { 1, math.sqrt(2), 2 })
  T.near(a:sqrt(), { 1, math.sqrt(2), 2 })
  T.near(a:log():exp(), a)
  T.near(md.tensor { -1.5, 2 }:abs(), { 1.5, 2 })
  T.near(md.tensor { 0 }:sin(), { 0 }); T.near(md.tensor { 0 }:cos(), { 1 })
  T.near(a:clamp(1.5, 3), { 1.5, 2, 3 })
  local b = a:clone()
  b:add_(md.ones { 3 }, 2):mul_(2):sub_(1):div_(md.tensor { 1, 2, 4 })
  T.near(b, { 5, 3.5, 2.75 })
  b:add_(1)
  T.near(b, { 6, 4.5, 3.75 })
  -- comparisons give 0/1 floats with tensors or numbers, and no gradient
  local x = md.tensor { 1, 2, 3 }
  T.near(x:eq(2), { 0, 1, 0 }); T.near(x:ne(2), { 1, 0, 1 })
  T.near(x:lt(2), { 1, 0, 0 }); T.near(x:le(2), { 1, 1, 0 })
  T.near(x:gt(md.tensor { 0, 5, 3 }), { 1, 0, 0 }); T.near(x:ge(md.tensor { 0, 5, 3 }), { 1, 0, 1 })
  local w = md.randn { 3 }:requires_grad(true)
  T.truthy(not w:gt(0):requires_grad(), "comparisons are constants")
  T.near(md.where(x:gt(1), x, md.zeros { 3 }), { 0, 2, 3 })
  T.near(md.where(x:gt(1), 1, 0), { 0, 1, 1 })
end)

T.test("reductions over dims, negative dims and keepdim", function()
  local a = md.arange(0, 24):view(2, 3, 4)
  T.near(a:sum(), 276)
  T.near(a:sum(2):shape(), { 2, 4 })
  T.near(a:sum(-1, true):shape(), { 2, 3, 1 })
  T.near(a:sum(-1), a:sum(3))
  T.near(a:mean(1), md.arange(6, 18):view(3, 4))
  T.near(md.tensor { 1, 2, 3, 4 }:var(), 5 / 3, 1e-6, "unbiased by default")
  T.near(md.tensor { 1, 2, 3, 4 }:var(1, false), 1.25)
  T.near(md.tensor { { 1, 3 } }:var(2, true, true):shape(), { 1, 1 })
  T.near(md.tensor { 1, 2, 3, 4 }:std(), math.sqrt(5 / 3))
  local m = md.tensor { { 3, 9, 1 }, { 7, 2, 8 } }
  local v, i = m:max(2)
  T.near(v, { 9, 8 }); T.near(i, { 1, 2 }, 0, "indices are 0-based")
  v, i = m:min(1)
  T.near(v, { 3, 2, 1 }); T.near(i, { 0, 1, 0 })
  T.near(m:argmax(1), { 1, 0, 1 })
  T.near(m:max(), 9); T.near(m:min(), 1)
  T.eq(md.zeros { 0 }:sum():item(), 0, "empty sum")
end)

T.test("products: matmul with batch dims, bmm", function()
  local a, b = r(2, 3, 4, 5), r(3, 5, 2)
  local c = md.matmul(a, b)
  T.near(c:shape(), { 2, 3, 4, 2 })
  T.near(c[2][3], md.matmul(a[2][3], b[3]), 1e-5)
  T.near(md.matmul(r(4, 5), r(2, 5, 6)):shape(), { 2, 4, 6 })
  T.near(md.matmul(r(3), r(3)):dim(), 0)
  T.near(md.bmm(r(2, 3, 4), r(2, 4, 5)):shape(), { 2, 3, 5 })
  T.gradcheck(function(x, y) return wsum(md.matmul(x, y)) end, { r(2, 3, 2, 4), r(3, 4, 2) })
  T.gradcheck(function(x, y) return wsum(md.matmul(x, y)) end, { r(3, 4), r(2, 4, 2) })
  T.gradcheck(function(x, y) return wsum(md.matmul(x, y)) end, { r(3, 2, 4), r(4) })
end)

T.test("layout: cat, stack, permute, transpose, index_select", function()
  local a, b = md.tensor { { 1, 2 } }, md.tensor { { 3, 4 }, { 5, 6 } }
  T.near(md.cat({ a, b }, 1), { { 1, 2 }, { 3, 4 }, { 5, 6 } })
  T.near(md.cat({ b, b }, -1), { { 3, 4, 3, 4 }, { 5, 6, 5, 6 } })
  T.near(md.stack({ b, b }, 3):shape(), { 2, 2, 2 })
  T.near(md.stack({ b, b }, -1), md.stack({ b, b }, 3))
  local x = md.arange(0, 24):view(2, 3, 4)
  local p = x:permute(3, 1, 2)
  T.near(p:shape(), { 4, 2, 3 })
  T.eq(p[4][2][3], x[2][3][4])
  T.near(x:permute { 3, 1, 2 }, p)
  T.near(x:transpose(1, 3):shape(), { 4, 3, 2 })
  T.near(x:transpose(-1, 1), x:transpose(1, 3))
  T.near(md.index_select(x, 3, md.tensor { 3, 0 })[1], { { 3, 0 }, { 7, 4 }, { 11, 8 } })
  T.gradcheck(function(t) return wsum(md.index_select(t, 2, md.tensor { 1, 1, 0 })) end, { r(2, 3) })
  T.gradcheck(function(t) return wsum(t:transpose(1, 2)) end, { r(2, 3) })
  T.gradcheck(function(t) return wsum(t:view(3, 2):narrow(1, 2, 2)) end, { r(2, 3) })
  T.gradcheck(function(t) return wsum(t:clone() * 2) end, { r(4) })
end)

T.test("errors say what was expected and what was given", function()
  T.errors(function() return md.ones { 2, 3 } + md.ones { 4 } end, "add: shapes [2, 3] and [4] cannot broadcast")
  T.errors(function() return md.ones { 2, 3 } * md.ones { 4 } end, "mul: shapes [2, 3] and [4] cannot broadcast")
  T.errors(function() md.matmul(md.ones { 2, 3 }, md.ones { 2, 3 }) end, "matmul: shapes [2, 3] and [2, 3] do not multiply")
  T.errors(function() md.bmm(md.ones { 2, 3 }, md.ones { 3, 2 }) end, "bmm")
  T.errors(function() md.ones { 6 }:view(4, 2) end, "6 elements")
  T.errors(function() md.ones { 6 }:narrow(1, 5, 3) end, "narrow")
  T.errors(function() md.ones { 3 }:sum(2) end, "dimension 2 out of range")
  T.errors(function() md.ones { 3 }:sum(0) end, "1-based")
  T.errors(function() md.cat({ md.ones { 2, 3 }, md.ones { 2, 4 } }, 1) end, "[2, 4]")
  T.errors(function() md.cat({ md.ones { 2 }, 5 }, 1) end, "not a tensor")
  T.errors(function() md.index_select(md.ones { 3 }, 1, md.tensor { 3 }) end, "out of range")
  T.errors(function() md.index_select(md.ones { 3 }, 1, md.tensor { 0.5 }) end, "not an integer")
  T.errors(function() md.ones { 2, 3 }:permute(1, 1) end, "permutation")
  T.errors(function() md.tensor { { 1, 2 }, { 3 } } end, "ragged")
  T.errors(function() md.tensor { "a" } end, "got string")
  T.errors(function() md.randint(3, 3, { 2 }) end, "empty range")
  T.errors(function() md.zeros { -1 } end, "non-negative")
  T.errors(function() md.arange(0, 1, 0) end, "non-zero step")
  T.errors(function() md.ones { 3 }:copy_(md.ones { 4 }) end, "does not fit")
  T.errors(function() md.Generator(1):set_state {} end, "seed")
  T.errors(function() return md.ones { 2 } + "x" end, "Tensor expected")
  local leaf = md.ones { 2 }:requires_grad(true)
  T.errors(function() leaf:add_(1) end, "in-place")
  T.errors(function() md.ones { 1 }:var() end, "more than 1")
end)

T.test("printing", function()
  -- PyTorch's own output for the same values
  T.eq(tostring(md.tensor { 1, 2.5, -3 }), "tensor([ 1.0000,  2.5000, -3.0000])")
  T.eq(tostring(md.tensor { { 1, 2, 3 }, { 4, 5, 6 } }), "tensor([[1., 2., 3.],\n        [4., 5., 6.]])")
  T.eq(tostring(md.arange(0, 12):reshape(2, 2, 3)),
    "tensor([[[ 0.,  1.,  2.],\n         [ 3.,  4.,  5.]],\n\n        [[ 6.,  7.,  8.],\n         [ 9., 10., 11.]]])")
  T.eq(tostring(md.tensor(2.5)), "tensor(2.5000)")
  T.eq(tostring(md.tensor(-3)), "tensor(-3.)")
  T.eq(tostring(md.tensor { 1e-5, 1, 100 }), "tensor([1.0000e-05, 1.0000e+00, 1.0000e+02])")
  T.eq(tostring(md.tensor { 0 / 0, 1 / 0, 1.5 }), "tensor([   nan,    inf, 1.5000])")
  -- above 1000 elements: 3 entries at each end of every long dimension
  T.eq(tostring(md.arange(0, 1001)), "tensor([   0.,    1.,    2.,  ...,  998.,  999., 1000.])")
  T.eq(tostring(md.arange(0, 1400):reshape(2, 7, 100) + 100), table.concat({
    "tensor([[[ 100.,  101.,  102.,  ...,  197.,  198.,  199.],",
    "         [ 200.,  201.,  202.,  ...,  297.,  298.,  299.],",
    "         [ 300.,  301.,  302.,  ...,  397.,  398.,  399.],",
    "         ...,",
    "         [ 500.,  501.,  502.,  ...,  597.,  598.,  599.],",
    "         [ 600.,  601.,  602.,  ...,  697.,  698.,  699.],",
    "         [ 700.,  701.,  702.,  ...,  797.,  798.,  799.]],",
    "",
    "        [[ 800.,  801.,  802.,  ...,  897.,  898.,  899.],",
    "         [ 900.,  901.,  902.,  ...,  997.,  998.,  999.],",
    "         [1000., 1001., 1002.,  ..., 1097., 1098., 1099.],",
    "         ...,",
    "         [1200., 1201., 1202.,  ..., 1297., 1298., 1299.],",
    "         [1300., 1301., 1302.,  ..., 1397., 1398., 1399.],",
    "         [1400., 1401., 1402.,  ..., 1497., 1498., 1499.]]])" }, "\n"))
  -- a long row wraps at 80 columns, as PyTorch's does
  T.eq(tostring(md.arange(0, 20) / 10), "tensor([0.0000, 0.1000, 0.2000, 0.3000, 0.4000, 0.5000, 0.6000, 0.7000, 0.8000,\n"
    .. "        0.9000, 1.0000, 1.1000, 1.2000, 1.3000, 1.4000, 1.5000, 1.6000, 1.7000,\n"
    .. "        1.8000, 1.9000])")
  local s = tostring(md.randn { 100, 100, 100 })
  T.truthy(select(2, s:gsub("\n", "")) < 60, "a million elements print in a few lines")
  T.truthy(s:find("...", 1, true), "elided rows and columns")
  T.eq(tostring(md.tensor { 1, 2 }:requires_grad(true)), "tensor([1., 2.], requires_grad=True)")
  T.truthy(tostring(md.randn { 2 }:requires_grad(true) * 2):find(", grad_fn=<", 1, true))
  T.eq(tostring(md.zeros { 0, 3 }), "tensor([], size=[0, 3])")
  T.eq(tostring(md.zeros { 0 }), "tensor([])")
end)

T.test("a shape prints as a shape and stays a table of numbers", function()
  local s = md.zeros { 2, 3, 4 }:shape()
  T.eq(tostring(s), "md.Size([2, 3, 4])")
  T.eq(tostring(md.tensor(1):shape()), "md.Size([])")
  T.eq(#s, 3)
  T.eq(s[1] + s[2] + s[3], 9)
  T.eq(table.concat(s, "x"), "2x3x4")
  local a, b, c = table.unpack(s)
  T.eq(a * b * c, 24)
  local n = 0
  for i, v in ipairs(s) do n = n + i * v end
  T.eq(n, 2 + 6 + 12)
  T.truthy(s == md.ones { 2, 3, 4 }:size() and s == { 2, 3, 4 } and s ~= { 2, 3 } and s ~= { 2, 3, 5 })
  T.eq(md.zeros(s):numel(), 24, "a shape is accepted where a table of sizes is")
  T.eq(md.zeros { 2, 3, 4 }:size(2), 3)
end)

T.finish()
