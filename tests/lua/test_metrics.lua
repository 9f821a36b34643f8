-- md.metrics: the Frechet distance and KID against naive double-precision
-- references, precision/recall on sets with known answers, and the shipped
-- feature network on real, blurred and noised Fashion-MNIST test images.
local T = require "harness"
local md = require "moondust"
local M = md.metrics

-- Feature sets as tensors and as Lua tables of rows (the values the tensor holds).
local function features(n, d, scale, shift, seed)
  local t = md.Generator(seed):randn({ n, d }) * scale + shift
  return t, t:totable()
end

-- Naive references ------------------------------------------------------------------

local function mean_cov(rows)
  local n, d = #rows, #rows[1]
  local mean, cov = {}, {}
  for j = 1, d do
    mean[j] = 0
    for i = 1, n do mean[j] = mean[j] + rows[i][j] / n end
  end
  for a = 1, d do
    cov[a] = {}
    for b = 1, d do
      local s = 0
      for i = 1, n do s = s + (rows[i][a] - mean[a]) * (rows[i][b] - mean[b]) end
      cov[a][b] = s / (n - 1)
    end
  end
  return mean, cov
end

local function matmul(a, b)
  local out = {}
  for i = 1, #a do
    out[i] = {}
    for j = 1, #b[1] do
      local s = 0
      for k = 1, #b do s = s + a[i][k] * b[k][j] end
      out[i][j] = s
    end
  end
  return out
end

local function inverse(a) -- Gauss-Jordan with partial pivoting
  local n, m = #a, {}
  for i = 1, n do
    m[i] = {}
    for j = 1, n do m[i][j] = a[i][j]; m[i][n + j] = i == j and 1 or 0 end
  end
  for c = 1, n do
    local p = c
    for r = c + 1, n do if math.abs(m[r][c]) > math.abs(m[p][c]) then p = r end end
    m[c], m[p] = m[p], m[c]
    local piv = m[c][c]
    for j = 1, 2 * n do m[c][j] = m[c][j] / piv end
    for r = 1, n do
      if r ~= c then
        local f = m[r][c]
        for j = 1, 2 * n do m[r][j] = m[r][j] - f * m[c][j] end
      end
    end
  end
  local out = {}
  for i = 1, n do out[i] = table.move(m[i], n + 1, 2 * n, 1, {}) end
  return out
end

-- sqrt of a matrix with positive eigenvalues (not symmetric) by the
-- Denman-Beavers iteration: Y -> (Y + Z^-1) / 2, Z -> (Z + Y^-1) / 2.
local function sqrtm_db(a)
  local n, y, z = #a, a, {}
  for i = 1, n do z[i] = {}; for j = 1, n do z[i][j] = i == j and 1 or 0 end end
  for _ = 1, 60 do
    local yi, zi = inverse(y), inverse(z)
    local y2, z2 = {}, {}
    for i = 1, n do
      y2[i], z2[i] = {}, {}
      for j = 1, n do y2[i][j] = (y[i][j] + zi[i][j]) / 2; z2[i][j] = (z[i][j] + yi[i][j]) / 2 end
    end
    y, z = y2, z2
  end
  return y
end

local function naive_fd(x, y)
  local m1, s1 = mean_cov(x)
  local m2, s2 = mean_cov(y)
  local root = sqrtm_db(matmul(s1, s2))
  local fd = 0
  for i = 1, #m1 do fd = fd + (m1[i] - m2[i]) ^ 2 + s1[i][i] + s2[i][i] - 2 * root[i][i] end
  return fd
end

-- The unbiased MMD^2 of the whole sets with k(x, y) = (x.y / D + 1)^3, as a literal double sum.
local function naive_mmd(x, y)
  local d = #x[1]
  local function k(a, b)
    local s = 0
    for i = 1, d do s = s + a[i] * b[i] end
    return (s / d + 1) ^ 3
  end
  local xx, yy, xy = 0, 0, 0
  for i = 1, #x do for j = 1, #x do if i ~= j then xx = xx + k(x[i], x[j]) end end end
  for i = 1, #y do for j = 1, #y do if i ~= j then yy = yy + k(y[i], y[j]) end end end
  for i = 1, #x do for j = 1, #y do xy = xy + k(x[i], y[j]) end end
  return xx / (#x * (#x - 1)) + yy / (#y * (#y - 1)) - 2 * xy / (#x * #y)
end

-- Tests -------------------------------------------------------------------------------

T.test("Frechet distance matches a Denman-Beavers reference", function()
  local a, ra = features(40, 5, 1.0, 0.3, 1)
  local b, rb = features(50, 5, 1.7, -0.2, 2)
  local fd = M.frechet(M.gaussian(a), M.gaussian(b))
  T.near(fd, naive_fd(ra, rb), 1e-6)
  T.truthy(fd > 1, "different sets are apart")
  -- sqrt_psd squares back to the covariance
  local g = M.gaussian(a)
  local root = M.sqrt_psd(g.cov, 5)
  local sq = {}
  for i = 1, 5 do for j = 1, 5 do
    local s = 0
    for k = 1, 5 do s = s + root[(i - 1) * 5 + k] * root[(k - 1) * 5 + j] end
    sq[#sq + 1] = s
  end end
  T.near(sq, g.cov, 1e-10)
end)

T.test("Frechet distance: identical sets give 0, a shifted set more", function()
  local a = features(60, 8, 1.0, 0, 3)
  local ga = M.gaussian(a)
  T.truthy(math.abs(M.frechet(ga, M.gaussian(a))) < 1e-9, "identical sets")
  local shifted = M.frechet(ga, M.gaussian(a + 0.5))
  T.near(shifted, 8 * 0.25, 1e-5) -- a shift moves only the mean term: D * 0.5^2
  T.truthy(M.frechet(ga, M.gaussian(a * 1.5)) > 0.1, "a rescaled set is apart")
  -- fewer vectors than features: a singular covariance, zero eigenvalues clamped
  local few = features(4, 8, 1.0, 0, 4)
  local fd = M.frechet(M.gaussian(few), M.gaussian(few))
  T.truthy(fd == fd and math.abs(fd) < 1e-6, "singular covariance: " .. fd)
end)

T.test("KID matches the literal unbiased MMD^2", function()
  local a, ra = features(40, 6, 1.0, 0.2, 5)
  local b, rb = features(40, 6, 1.2, -0.1, 6)
  -- subsets of the full size are the whole sets: every subset agrees
  local kid, se = M.kid(a, b, { subsets = 3 })
  T.near(kid, naive_mmd(ra, rb), 1e-5)
  T.truthy(se < 1e-6 * math.abs(kid), "equal subsets have no spread")
  T.truthy(kid > 0.01, "different sets are apart")
end)

T.test("KID: identical sets about 0, a shifted set more, subsets of a larger set", function()
  local a = features(400, 6, 1.0, 0, 7)
  local same = M.kid(a, a, { subsets = 1 })
  local shifted = M.kid(a, a + 0.5, { subsets = 1 })
  -- identical sets are off 0 by O(1/n) only (a point meets its own copy across the sets)
  T.truthy(math.abs(same) < 0.1 * shifted, ("identical %g, shifted %g"):format(same, shifted))
  -- two halves of one distribution: within a few standard errors of 0
  local b = features(400, 6, 1.0, 0, 8)
  local kid, se = M.kid(a:narrow(1, 1, 100), b, { subset_size = 50, subsets = 50 })
  T.truthy(se > 0, "random subsets spread")
  T.truthy(math.abs(kid) < 4 * se + 1e-3 and kid < 0.1 * shifted, ("same distribution: %g +- %g"):format(kid, se))
  T.errors(function() M.kid(a, b, { subset = 10 }) end, "did you mean 'subsets'")
end)

T.test("precision and recall on constructed sets", function()
  -- real: 10 points on a line, 1 apart (3rd-neighbour radius 2 or more);
  -- fake: 5 points 0.25 apart between real 4 and 5, and 5 far away
  local real, fake = {}, {}
  for i = 0, 9 do real[#real + 1] = { i, 0 } end
  for i = 0, 4 do fake[#fake + 1] = { 4 + 0.25 * i, 0 } end
  for i = 0, 4 do fake[#fake + 1] = { 100 + 0.25 * i, 0 } end
  local p, r = M.precision_recall(md.tensor(real), md.tensor(fake), 3)
  T.eq(p, 0.5, "precision: the near half of fake is on the real manifold")
  -- fake radii are 0.5 or 0.75: only real 4 and 5 (on fake points) are covered
  T.eq(r, 0.2, "recall")
  local p2, r2 = M.precision_recall(md.tensor(real), md.tensor(real), 3)
  T.eq(p2, 1); T.eq(r2, 1)
end)

T.test("Inception-score analogue and class accuracy", function()
  -- confident and spread over 4 classes: IS = 4; one label wrong of 8
  local logits, labels = {}, {}
  for i = 0, 7 do
    local row = { -50, -50, -50, -50 }
    row[i % 4 + 1] = 50
    logits[#logits + 1], labels[#labels + 1] = row, i % 4
  end
  labels[8] = 0
  local is, acc, per = M.classifier_figures(md.tensor(logits), md.tensor(labels))
  T.near(is, 4, 1e-5)
  T.eq(acc, 7 / 8)
  T.eq(per[0], 2 / 3); T.eq(per[3], 1); T.eq(per[1], 1)
  T.near(M.classifier_figures(md.zeros { 5, 4 }), 1, 1e-6) -- uniform predictions: IS 1
end)

-- The shipped network --------------------------------------------------------------

local test_set = md.data.fashion_mnist { split = "test", limit = 800 }

T.test("the shipped feature network loads through md.load and classifies test images", function()
  local net, meta = md.load(M.DEFAULT_NET)
  T.truthy(md.nn.Module.is_module(net), "a model")
  T.eq(meta.model, "feature_net")
  local few = { images = test_set.images:narrow(1, 1, 200), labels = test_set.labels:narrow(1, 1, 200), n = 200 }
  local acc = M.accuracy(net, few)
  T.truthy(acc >= 0.9, ("accuracy %.3f on 200 test images"):format(acc))
  T.eq(M.features(few.images:narrow(1, 1, 3), net):size(2), net.config.features)
end)

T.test("the metric orders real < blurred < noised test images", function()
  local net = M.default_net()
  local ref = M.reference { data = test_set.images:narrow(1, 1, 500), net = net, cache = false }
  local real = test_set.images:narrow(1, 501, 300)
  local labels = test_set.labels:narrow(1, 501, 300)
  local box = md.full({ 1, 1, 3, 3 }, 1 / 9)
  local blurred = md.conv2d(real, box, nil, 1, 1)
  local noised = (real + md.Generator(9):randn(real:shape()) * 0.5):clamp(-1, 1)
  local s = {}
  for name, x in pairs { real = real, blurred = blurred, noised = noised } do
    s[name] = M.score(x, labels, { reference = ref, kid_subsets = 10, net = net })
  end
  for _, fig in ipairs { "fid", "kid" } do
    T.truthy(s.real[fig] < s.blurred[fig] and s.blurred[fig] < s.noised[fig],
      ("%s: real %.4g, blurred %.4g, noised %.4g"):format(fig, s.real[fig], s.blurred[fig], s.noised[fig]))
  end
  T.truthy(s.real.precision > s.noised.precision, "precision")
  T.truthy(s.real.class_accuracy >= 0.85 and s.real.class_accuracy > s.noised.class_accuracy, "class accuracy")
  T.errors(function() M.score(real, { refrence = ref }) end, "did you mean 'reference'")
  T.errors(function() M.score(real, labels:narrow(1, 1, 10), { reference = ref }) end, "10 labels for 300 images")
end)

T.finish()
