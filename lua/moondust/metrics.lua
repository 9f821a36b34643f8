-- md.metrics: sample quality on the features of a small CNN trained on the
-- data set (lua/moondust/assets/fashion_features.safetensors for Fashion-MNIST,
-- trained by scripts/train_feature_net.lua).
--
--   local m = md.metrics.score(images [, labels] [, opts])
--   -- {fid, kid, kid_se, precision, recall, is, class_accuracy, per_class, n}
--
-- All figures compare the images with a reference set (Fashion-MNIST's test
-- split by default) whose features are computed once and cached on disk,
-- keyed by data set name, size and a hash of the network's weights.
-- Pairwise products run as C matmuls; the D x D algebra of the Frechet
-- distance runs in double precision in Lua.
local md = require "moondust"
local options = require "moondust.options"
local nn = md.nn

local metrics = {}

-- The feature network: 3x3 convolutions with GroupNorm and ReLU at three
-- resolutions (28, 14, 7 for Fashion-MNIST), then a linear layer from the
-- flattened last map to `features` numbers: the penultimate layer whose
-- (pre-activation) values the figures compare. The classifier head is
-- ReLU, dropout and a linear layer to the classes.
--   md.metrics.FeatureNet{in_channels = 1, height = 28, width = 28, channels = 32, features = 128,
--                         num_classes = 10, dropout = 0.3}
local FeatureNet = nn.Module:extend("FeatureNet")
metrics.FeatureNet = FeatureNet

local function conv_block(seq, cin, cout)
  seq:append(nn.Conv2d(cin, cout, 3, { padding = 1 }))
  seq:append(nn.GroupNorm(8, cout))
  seq:append(nn.ReLU())
end

function FeatureNet:init(cfg)
  local where = "md.metrics.FeatureNet"
  options.check(where, cfg, { in_channels = "number", height = "number", width = "number", channels = "number",
                              features = "number", num_classes = "number", dropout = "number" })
  cfg = cfg or {}
  local c = {
    in_channels = options.integer(where, "in_channels", cfg.in_channels, 1) or 1,
    height = options.integer(where, "height", cfg.height, 4) or 28,
    width = options.integer(where, "width", cfg.width, 4) or 28,
    channels = options.integer(where, "channels", cfg.channels, 8) or 32,
    features = options.integer(where, "features", cfg.features, 1) or 128,
    num_classes = options.integer(where, "num_classes", cfg.num_classes, 1) or 10,
    dropout = options.number(where, "dropout", cfg.dropout, 0, 0.99) or 0.3,
  }
  if c.channels % 8 ~= 0 then
    error(("%s: channels must be a multiple of 8 (GroupNorm's groups), got %d"):format(where, c.channels), 2)
  end
  self.config = c
  local w = c.channels
  local body = self:add_module("body", nn.Sequential())
  conv_block(body, c.in_channels, w)
  body:append(nn.AvgPool2d(2))
  conv_block(body, w, 2 * w)
  body:append(nn.AvgPool2d(2))
  conv_block(body, 2 * w, 2 * w)
  body:append(nn.Flatten())
  body:append(nn.Linear(2 * w * (c.height // 4) * (c.width // 4), c.features))
  self:add_module("head", nn.Sequential(nn.ReLU(), nn.Dropout(c.dropout), nn.Linear(c.features, c.num_classes)))
end

-- N x C x H x W in [-1, 1] -> N x features (the penultimate layer).
function FeatureNet:features(x)
  local c = self.config
  if x:dim() ~= 4 or x:size(2) ~= c.in_channels or x:size(3) ~= c.height or x:size(4) ~= c.width then
    error(("FeatureNet: expects N x %d x %d x %d images, got %s"):format(c.in_channels, c.height, c.width,
      table.concat(x:shape(), " x ")), 3)
  end
  return self.body(x)
end

-- -> logits (N x num_classes), features
function FeatureNet:forward(x)
  local f = self:features(x)
  return self.head(f), f
end

-- The number of images of a tensor or a data set.
local function count(images) return md.is_tensor(images) and images:size(1) or images.n end

-- One pass of net over images (a tensor or a data set, whose byte store is
-- turned into floats a batch at a time) in batches, without grad and in
-- eval mode: -> logits (N x K), features (N x D).
local function run(net, images, batch_size)
  local was_training = net.training
  net:eval()
  local logits, feats = {}, {}
  local n = count(images)
  md.no_grad(function()
    for start = 1, n, batch_size do
      local l, f = net(md.data.rows(images, start, math.min(batch_size, n - start + 1)))
      logits[#logits + 1], feats[#feats + 1] = l, f
    end
  end)
  if was_training then net:train() end
  local function join(list) return #list == 1 and list[1] or md.cat(list, 1) end
  return join(logits), join(feats)
end
metrics.run = run

-- Share of ds (a data set table) that net labels correctly.
function metrics.accuracy(net, ds)
  local logits = run(net, ds, 500)
  return logits:argmax(2):eq(ds.labels):sum():item() / ds.n
end

-- The shipped network ----------------------------------------------------------

local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
metrics.DEFAULT_NET = here .. "/assets/fashion_features.safetensors"

local default_net
-- The Fashion-MNIST feature network that ships with moondust (loaded once).
function metrics.default_net()
  if not default_net then
    local net = md.load(metrics.DEFAULT_NET)
    if not nn.Module.is_module(net) then error("metrics: " .. metrics.DEFAULT_NET .. " holds no feature network", 2) end
    default_net = net
  end
  return default_net
end

local function check_images(where, images, net)
  local set = not md.is_tensor(images) and md.data.is_image_set(images)
  if not set and (not md.is_tensor(images) or images:dim() ~= 4) then
    error(where .. ": images must be an N x C x H x W tensor in [-1, 1] or a data set", 3)
  end
  local c = net.config.in_channels
  local have = set and md.data.image_shape(images) or images:size(2)
  if have ~= c then
    error(("%s: the feature network takes %d channel(s), the images have %d"):format(where, c, have), 3)
  end
end

-- images (N x C x H x W in [-1, 1], or a data set) -> N x D features of the penultimate layer.
function metrics.features(images, net)
  net = net or metrics.default_net()
  check_images("metrics.features", images, net)
  local _, feats = run(net, images, 250)
  return feats
end

-- Gaussian statistics in double precision ---------------------------------------
-- A D x D matrix is a flat Lua array, row-major: a[(i - 1) * d + j].

-- N x D tensor -> {mean = {D}, cov = flat D x D (unbiased), d = D, n = N}
function metrics.gaussian(feats)
  local n, d = feats:size(1), feats:size(2)
  if n < 2 then error("metrics: a covariance needs at least 2 feature vectors, got " .. n, 2) end
  local x = feats:flat()
  local mean = {}
  for j = 1, d do mean[j] = 0 end
  for i = 0, n - 1 do
    local base = i * d
    for j = 1, d do mean[j] = mean[j] + x[base + j] end
  end
  for j = 1, d do mean[j] = mean[j] / n end
  -- the centred cross products as float32 matmuls of 256 rows at a time
  -- (short sums, little rounding), added up in double
  local centred = feats - md.core.from_flat(mean, { 1, d })
  local cov = {}
  for k = 1, d * d do cov[k] = 0 end
  for start = 1, n, 256 do
    local rows = centred:narrow(1, start, math.min(256, n - start + 1))
    local part = md.matmul(rows:t(), rows):flat()
    for k = 1, d * d do cov[k] = cov[k] + part[k] end
  end
  for a = 1, d do -- exactly symmetric (BLAS need not be)
    for b = a, d do
      local v = (cov[(a - 1) * d + b] + cov[(b - 1) * d + a]) / (2 * (n - 1))
      cov[(a - 1) * d + b], cov[(b - 1) * d + a] = v, v
    end
  end
  return { mean = mean, cov = cov, d = d, n = n }
end

-- Eigenvalues (and, with vectors, the eigenvectors as the columns of a flat
-- D x D array) of the symmetric matrix a: Householder reduction to
-- tridiagonal form, then the implicit QL algorithm (EISPACK's tred2 and
-- tql2, as in JAMA), in double precision.
function metrics.sym_eig(a, n, vectors)
  local V, d, e = {}, {}, {}
  for i = 1, n do
    local row = {}
    for j = 1, n do row[j] = a[(i - 1) * n + j] end
    V[i], e[i] = row, 0
  end
  local abs, sqrt = math.abs, math.sqrt
  -- tred2
  for j = 1, n do d[j] = V[n][j] end
  for i = n, 2, -1 do
    local scale, h = 0, 0
    for k = 1, i - 1 do scale = scale + abs(d[k]) end
    if scale == 0 then
      e[i] = d[i - 1]
      for j = 1, i - 1 do d[j] = V[i - 1][j]; V[i][j] = 0; V[j][i] = 0 end
    else
      for k = 1, i - 1 do d[k] = d[k] / scale; h = h + d[k] * d[k] end
      local f = d[i - 1]
      local g = sqrt(h)
      if f > 0 then g = -g end
      e[i] = scale * g
      h = h - f * g
      d[i - 1] = f - g
      for j = 1, i - 1 do e[j] = 0 end
      for j = 1, i - 1 do
        f = d[j]
        V[j][i] = f
        g = e[j] + V[j][j] * f
        for k = j + 1, i - 1 do
          local vkj = V[k][j]
          g = g + vkj * d[k]
          e[k] = e[k] + vkj * f
        end
        e[j] = g
      end
      f = 0
      for j = 1, i - 1 do e[j] = e[j] / h; f = f + e[j] * d[j] end
      local hh = f / (h + h)
      for j = 1, i - 1 do e[j] = e[j] - hh * d[j] end
      for j = 1, i - 1 do
        f, g = d[j], e[j]
        for k = j, i - 1 do V[k][j] = V[k][j] - (f * e[k] + g * d[k]) end
        d[j] = V[i - 1][j]
        V[i][j] = 0
      end
    end
    d[i] = h
  end
  for i = 1, n - 1 do
    V[n][i] = V[i][i]
    V[i][i] = 1
    local h = d[i + 1]
    if h ~= 0 then
      for k = 1, i do d[k] = V[k][i + 1] / h end
      for j = 1, i do
        local g = 0
        for k = 1, i do g = g + V[k][i + 1] * V[k][j] end
        for k = 1, i do V[k][j] = V[k][j] - g * d[k] end
      end
    end
    for k = 1, i do V[k][i + 1] = 0 end
  end
  for j = 1, n do d[j] = V[n][j]; V[n][j] = 0 end
  V[n][n] = 1
  e[1] = 0
  -- tql2
  for i = 2, n do e[i - 1] = e[i] end
  e[n] = 0
  local f, tst1, eps = 0, 0, 2 ^ -52
  for l = 1, n do
    tst1 = math.max(tst1, abs(d[l]) + abs(e[l]))
    local m = l
    while m < n and abs(e[m]) > eps * tst1 do m = m + 1 end
    if m > l then
      repeat
        local g = d[l]
        local p = (d[l + 1] - g) / (2 * e[l])
        local r = sqrt(p * p + 1)
        if p < 0 then r = -r end
        d[l] = e[l] / (p + r)
        d[l + 1] = e[l] * (p + r)
        local dl1 = d[l + 1]
        local h = g - d[l]
        for i = l + 2, n do d[i] = d[i] - h end
        f = f + h
        p = d[m]
        local c, c2, c3, el1, s, s2 = 1, 1, 1, e[l + 1], 0, 0
        for i = m - 1, l, -1 do
          c3, c2, s2 = c2, c, s
          g = c * e[i]
          h = c * p
          r = sqrt(p * p + e[i] * e[i])
          e[i + 1] = s * r
          s = e[i] / r
          c = p / r
          p = c * d[i] - s * g
          d[i + 1] = h + s * (c * g + s * d[i])
          if vectors then
            for k = 1, n do
              local row = V[k]
              h = row[i + 1]
              row[i + 1] = s * row[i] + c * h
              row[i] = c * row[i] - s * h
            end
          end
        end
        p = -s * s2 * c3 * el1 * e[l] / dl1
        e[l] = s * p
        d[l] = c * p
      until abs(e[l]) <= eps * tst1
    end
    d[l] = d[l] + f
    e[l] = 0
  end
  if not vectors then return d end
  local v = {}
  for i = 1, n do for k = 1, n do v[(i - 1) * n + k] = V[i][k] end end
  return d, v
end

-- The PSD square root V diag(sqrt(max(l, 0))) V^T: rounding leaves a
-- covariance's zero eigenvalues slightly negative, and they are clamped.
function metrics.sqrt_psd(a, d)
  local values, v = metrics.sym_eig(a, d, true)
  local out = {}
  for i = 1, d * d do out[i] = 0 end
  for k = 1, d do
    local r = math.sqrt(math.max(values[k], 0))
    if r > 0 then
      for i = 1, d do
        local vik, off = v[(i - 1) * d + k] * r, (i - 1) * d
        for j = 1, d do out[off + j] = out[off + j] + vik * v[(j - 1) * d + k] end
      end
    end
  end
  return out
end

local function matmul_flat(a, b, d)
  local out = {}
  for i = 1, d do
    local off = (i - 1) * d
    for j = 1, d do out[off + j] = 0 end
    for k = 1, d do
      local aik, boff = a[off + k], (k - 1) * d
      for j = 1, d do out[off + j] = out[off + j] + aik * b[boff + j] end
    end
  end
  return out
end

-- Frechet distance between two Gaussians g1, g2 (from metrics.gaussian):
-- |m1 - m2|^2 + tr S1 + tr S2 - 2 tr sqrt(S1 S2), where tr sqrt(S1 S2) is
-- taken as tr sqrt(A S2 A) with A = sqrt(S1): A S2 A is symmetric PSD and
-- has the eigenvalues of S1 S2. g1.sqrt_cov is used (and kept) when present.
function metrics.frechet(g1, g2)
  local d = g1.d
  if g2.d ~= d then error(("metrics.frechet: %d features against %d"):format(d, g2.d), 2) end
  g1.sqrt_cov = g1.sqrt_cov or metrics.sqrt_psd(g1.cov, d)
  local a = g1.sqrt_cov
  local values = metrics.sym_eig(matmul_flat(matmul_flat(a, g2.cov, d), a, d), d, false)
  local dist, tr_sqrt = 0, 0
  for i = 1, d do
    dist = dist + (g1.mean[i] - g2.mean[i]) ^ 2 + g1.cov[(i - 1) * d + i] + g2.cov[(i - 1) * d + i]
    tr_sqrt = tr_sqrt + math.sqrt(math.max(values[i], 0))
  end
  return dist - 2 * tr_sqrt
end

-- Kernel distance (KID) -----------------------------------------------------------

-- `count` random subsets of 1..n of `size` each (each without replacement,
-- partial Fisher-Yates), as an n x count indicator matrix: column p marks
-- subset p, so that subset sums of a kernel matrix are matrix products.
local function subset_indicator(n, size, count, gen)
  local perm, flat = {}, {}
  for i = 1, n do perm[i] = i end
  for k = 1, n * count do flat[k] = 0 end
  for p = 1, count do
    local u = gen:rand({ size }):flat()
    for i = 1, size do
      local j = math.min(n, i + math.floor(u[i] * (n - i + 1)))
      perm[i], perm[j] = perm[j], perm[i]
      flat[(perm[i] - 1) * count + p] = 1
    end
  end
  return md.core.from_flat(flat, { n, count })
end

-- k(x, y) = (x.y / D + 1)^3 for every row pair of a and b.
local function poly_kernel(a, b)
  local k = md.matmul(a, b:t()) * (1 / a:size(2)) + 1
  return k * k * k
end

-- For each subset p: the sum of k(a_i, b_j) over i in subset p of a (column
-- p of va) and j in subset p of b (of vb), less the diagonal k(a_i, a_i)
-- when a is b. Rows in chunks, so the 10,000-image reference fits.
local function kernel_subset_sums(a, b, va, vb, same)
  local total
  for start = 1, a:size(1), 1000 do
    local rows = math.min(1000, a:size(1) - start + 1)
    local ar, var = a:narrow(1, start, rows), va:narrow(1, start, rows)
    local part = (md.matmul(poly_kernel(ar, b), vb) * var):sum(1)
    if same then
      local diag = (ar * ar):sum(2) * (1 / a:size(2)) + 1
      part = part - (var * (diag * diag * diag):reshape(rows, 1)):sum(1)
    end
    total = total and total + part or part
  end
  return total:flat()
end

-- Unbiased MMD^2 with the cubic polynomial kernel, averaged over `subsets`
-- random subsets of `size` images of each set (Binkowski et al. 2018;
-- torch-fidelity's defaults: 100 subsets of min(1000, n)). -> mean, and the
-- standard deviation of the subset estimates (torch-fidelity's kid_std).
-- cache (optional table) keeps the reference's own term between calls;
-- scale multiplies both sets first (the kernel is not scale-invariant).
function metrics.kid(fx, fy, opts)
  opts = options.check("metrics.kid", opts, { subsets = "number", subset_size = "number", seed = "number", cache = "table",
                                              scale = "number" })
  local scale = options.number("metrics.kid", "scale", opts.scale, 0) or 1
  if scale ~= 1 then fx, fy = fx * scale, fy * scale end
  local n, m = fx:size(1), fy:size(1)
  local subsets = options.integer("metrics.kid", "subsets", opts.subsets, 1) or 100
  local size = math.min(options.integer("metrics.kid", "subset_size", opts.subset_size, 2) or 1000, n, m)
  if size < 2 then error("metrics.kid: needs at least 2 feature vectors in each set", 2) end
  local seed = options.integer("metrics.kid", "seed", opts.seed, 0) or 0
  local vx = subset_indicator(n, size, subsets, md.Generator(seed + 1))
  local key = ("%d_%d_%d_%d_%.9g"):format(m, size, subsets, seed, scale)
  local yy = opts.cache and opts.cache[key]
  local vy = subset_indicator(m, size, subsets, md.Generator(seed))
  if not yy then
    yy = kernel_subset_sums(fy, fy, vy, vy, true)
    if opts.cache then opts.cache[key] = yy end
  end
  local xx, xy = kernel_subset_sums(fx, fx, vx, vx, true), kernel_subset_sums(fx, fy, vx, vy, false)
  local sum, sum2 = 0, 0
  for p = 1, subsets do
    local mmd = (xx[p] + yy[p]) / (size * (size - 1)) - 2 * xy[p] / (size * size)
    sum, sum2 = sum + mmd, sum2 + mmd * mmd
  end
  local mean = sum / subsets
  local var = subsets > 1 and math.max(sum2 - subsets * mean * mean, 0) / (subsets - 1) or 0
  return mean, math.sqrt(var)
end

-- Precision and recall on k-NN manifolds (Kynkaanniemi et al. 2019) -------------

-- Squared distances between the rows of a and of b: |a|^2 + |b|^2 - 2 a.b
local function sq_dists(a, b)
  local na = (a * a):sum(2):reshape(a:size(1), 1)
  local nb = (b * b):sum(2):reshape(1, b:size(1))
  return na + nb - md.matmul(a, b:t()) * 2
end

-- The squared distance from each row of a to its k-th nearest other row.
local function knn_radii(a, k)
  local n = a:size(1)
  if n <= k then error(("metrics: k-NN radii with k = %d need more than %d feature vectors"):format(k, k), 3) end
  local dist = sq_dists(a, a):flat()
  local radii, best = {}, {}
  for i = 0, n - 1 do
    -- the k + 1 smallest of row i, sorted (the row's own 0 is one of them)
    local count = 0
    for j = 1, n do
      local v = dist[i * n + j]
      if count <= k or v < best[count] then
        local pos = count <= k and count + 1 or count
        while pos > 1 and best[pos - 1] > v do best[pos] = best[pos - 1]; pos = pos - 1 end
        best[pos] = v
        if count <= k then count = count + 1 end
      end
    end
    radii[i + 1] = best[k + 1]
  end
  return md.core.from_flat(radii, { n })
end

-- Share of the rows of b inside the k-NN ball of at least one row of a.
local function coverage(a, radii_a, b)
  local margin = sq_dists(b, a) - radii_a:reshape(1, a:size(1))
  return margin:min(2):le(0):sum():item() / b:size(1)
end

-- real, fake: feature tensors -> precision (share of fake on the real
-- manifold), recall (share of real on the fake manifold).
function metrics.precision_recall(real, fake, k)
  k = k or 3
  return coverage(real, knn_radii(real, k), fake), coverage(fake, knn_radii(fake, k), real)
end

-- The classifier head: class accuracy and the Inception-score analogue ----------

-- logits (N x K), labels (N, or nil) -> is, class_accuracy, per_class
function metrics.classifier_figures(logits, labels)
  local n, classes = logits:size(1), logits:size(2)
  local p = md.softmax(logits, 2):flat()
  local marginal = {}
  for c = 1, classes do marginal[c] = 0 end
  for i = 0, n - 1 do for c = 1, classes do marginal[c] = marginal[c] + p[i * classes + c] / n end end
  local kl = 0
  for i = 0, n - 1 do
    for c = 1, classes do
      local pic = p[i * classes + c]
      if pic > 0 then kl = kl + pic * math.log(pic / marginal[c]) end
    end
  end
  local is = math.exp(kl / n)
  if labels == nil then return is end
  local pred, want = logits:argmax(2):flat(), labels:flat()
  local right, total, per_class = 0, {}, {}
  for i = 1, n do
    local c = math.tointeger(want[i])
    total[c] = (total[c] or 0) + 1
    per_class[c] = (per_class[c] or 0) + (pred[i] == want[i] and 1 or 0)
    right = right + (pred[i] == want[i] and 1 or 0)
  end
  for c, count in pairs(total) do per_class[c] = per_class[c] / count end
  return is, right / n, per_class
end

-- Reference statistics, cached on disk ------------------------------------------

-- FNV-1a (64 bits) over the parameter names and float32 bits of a network:
-- the cache key that changes whenever the weights do.
function metrics.net_hash(net)
  local h = -3750763034362895579 -- 14695981039346656037 as a signed 64-bit integer
  local prime = 1099511628211
  local function mix(x) h = (h ~ x) * prime end
  local named = net:named_parameters()
  table.sort(named, function(a, b) return a[1] < b[1] end)
  local pack, unpack = string.pack, string.unpack
  for _, pair in ipairs(named) do
    for i = 1, #pair[1] do mix(pair[1]:byte(i)) end
    for _, v in ipairs(pair[2]:flat()) do mix(unpack("<I4", pack("<f", v))) end
  end
  return ("%016x"):format(h)
end

local mkdir_p = md.core.mkdir_p

local function exists(path)
  local f = io.open(path, "rb")
  if f then f:close() end
  return f ~= nil
end

-- Where reference features are cached: $MOONDUST_CACHE, else $XDG_CACHE_HOME/moondust.
function metrics.cache_dir()
  local xdg = os.getenv("XDG_CACHE_HOME") or ((os.getenv("HOME") or ".") .. "/.cache")
  return os.getenv("MOONDUST_CACHE") or (xdg .. "/moondust")
end

local references = {} -- path or key -> reference, for this process

local function save_reference(ref)
  if not ref.path then return end
  mkdir_p(ref.path:match("^(.*)/[^/]*$") or ".")
  local g = ref.gaussian
  md.save(ref.path, { features = ref.features }, { name = ref.name, n = ref.n, net_hash = ref.net_hash,
    mean = g.mean, cov = g.cov, sqrt_cov = g.sqrt_cov, kid = ref.kid_cache })
end

-- The reference set of the figures: features, their Gaussian (with its
-- square root) and KID's reference terms, computed once and cached in
-- <cache_dir>/reference_<name>_<n>_<net hash>.safetensors.
--   md.metrics.reference{data = ds or images, name = "my_set", net = net, cache_dir = DIR, cache = true}
-- Default: Fashion-MNIST's test split (10,000 images), name "fashion_mnist_test".
-- Other data without a name are not cached on disk (the name is the key).
function metrics.reference(opts)
  opts = options.check("metrics.reference", opts, { data = true, name = "string", net = "table",
                                                    cache_dir = "string", cache = "boolean" })
  if opts.data ~= nil and not md.is_tensor(opts.data) and not md.data.is_image_set(opts.data) then
    error("metrics.reference: data must be a data set table (with .images) or an N x C x H x W tensor", 2)
  end
  local net = opts.net or metrics.default_net()
  local data, name = opts.data, opts.name
  if data == nil then data, name = md.data.fashion_mnist { split = "test" }, name or "fashion_mnist_test" end
  local images = data
  check_images("metrics.reference", images, net)
  local hash = metrics.net_hash(net)
  local path
  if name and opts.cache ~= false then
    path = ("%s/reference_%s_%d_%s.safetensors"):format(opts.cache_dir or metrics.cache_dir(),
      name:gsub("[^%w%-_.]", "_"), count(images), hash)
    if references[path] then return references[path] end
  end
  local ref = { name = name, n = count(images), net_hash = hash, path = path }
  if path and exists(path) then
    local tensors, meta = md.checkpoint.read(path)
    ref.features, ref.kid_cache = tensors.features, meta.kid or {}
    ref.gaussian = { mean = meta.mean, cov = meta.cov, sqrt_cov = meta.sqrt_cov, d = #meta.mean, n = ref.n }
  else
    ref.features = metrics.features(images, net)
    ref.gaussian = metrics.gaussian(ref.features)
    ref.gaussian.sqrt_cov = metrics.sqrt_psd(ref.gaussian.cov, ref.gaussian.d)
    ref.kid_cache = {}
    save_reference(ref)
  end
  if path then references[path] = ref end
  return ref
end

-- Scoring ---------------------------------------------------------------------------

local score_options = { net = "table", reference = "table", cache_dir = "string", k = "number", seed = "number",
                        kid_subsets = "number", kid_subset_size = "number" }

-- md.metrics.score(images [, labels] [, opts]) -> {fid, kid, kid_se, precision,
-- recall, is, n, and with labels: class_accuracy, per_class = {[label] = share}}
-- images: N x C x H x W in [-1, 1]; labels: the classes the images were asked
-- to be (a tensor, a table or one number for all). Options: net (default
-- the shipped one), reference (from md.metrics.reference; default
-- Fashion-MNIST test), cache_dir, k (3), kid_subsets (100), kid_subset_size
-- (1000), seed (0: the random subsets of KID and of precision/recall's
-- reference).
function metrics.score(images, labels, opts)
  if opts == nil and type(labels) == "table" and not md.is_tensor(labels) and labels[1] == nil and next(labels) then
    labels, opts = nil, labels
  end
  opts = options.check("md.metrics.score", opts, score_options)
  local net = opts.net or metrics.default_net()
  check_images("md.metrics.score", images, net)
  local n = images:size(1)
  if type(labels) == "number" then labels = md.full({ n }, labels)
  elseif type(labels) == "table" and not md.is_tensor(labels) then labels = md.tensor(labels) end
  if labels and labels:numel() ~= n then error(("md.metrics.score: %d labels for %d images"):format(labels:numel(), n), 2) end
  local k = options.integer("md.metrics.score", "k", opts.k, 1) or 3
  local seed = options.integer("md.metrics.score", "seed", opts.seed, 0) or 0
  local ref = opts.reference
  if ref == nil then
    ref = metrics.reference { net = net, cache_dir = opts.cache_dir }
  elseif ref.net_hash ~= metrics.net_hash(net) then
    error("md.metrics.score: the reference was computed with another feature network", 2)
  end
  local logits, feats = run(net, images, 250)
  local out = { n = n }
  out.fid = metrics.frechet(ref.gaussian, metrics.gaussian(feats))
  local cached = 0
  for _ in pairs(ref.kid_cache) do cached = cached + 1 end
  -- KID on features scaled to unit RMS over the reference: x.y / D stays
  -- near 1 (as for Inception features), and the float32 kernel sums keep
  -- their precision (at the network's raw scale the cubic kernel reaches
  -- 1e5 and the three terms of MMD^2 cancel to rounding noise)
  local g, ms = ref.gaussian, 0
  for j = 1, g.d do ms = ms + (g.mean[j] ^ 2 + g.cov[(j - 1) * g.d + j]) / g.d end
  out.kid, out.kid_se = metrics.kid(feats, ref.features, { subsets = opts.kid_subsets, subset_size = opts.kid_subset_size,
                                                         seed = seed, cache = ref.kid_cache, scale = 1 / math.sqrt(ms) })
  local now_cached = 0
  for _ in pairs(ref.kid_cache) do now_cached = now_cached + 1 end
  if now_cached > cached then save_reference(ref) end
  -- precision and recall compare sets of equal size, as in the paper
  local real = ref.features
  if real:size(1) > n then
    local pick = md.Generator(seed + 2):rand({ real:size(1) }):flat()
    local order = {}
    for i = 1, #pick do order[i] = i end
    table.sort(order, function(a, b) return pick[a] < pick[b] end)
    local idx = {}
    for i = 1, n do idx[i] = order[i] - 1 end
    real = md.index_select(real, 1, md.tensor(idx))
  end
  out.precision, out.recall = metrics.precision_recall(real, feats, k)
  out.is, out.class_accuracy, out.per_class = metrics.classifier_figures(logits, labels)
  return out
end

-- The figures as lines of text, for the CLI and the REPL.
function metrics.format(m)
  local lines = {
    ("FID %.4f   KID %.5f +- %.5f   precision %.3f   recall %.3f   IS %.3f   (n = %d)"):format(
      m.fid, m.kid, m.kid_se, m.precision, m.recall, m.is, m.n) }
  if m.class_accuracy then
    local parts, classes = {}, {}
    for c in pairs(m.per_class) do classes[#classes + 1] = c end
    table.sort(classes)
    for _, c in ipairs(classes) do parts[#parts + 1] = ("%d:%.1f%%"):format(c, 100 * m.per_class[c]) end
    lines[2] = ("class accuracy %.2f%%   per class %s"):format(100 * m.class_accuracy, table.concat(parts, " "))
  end
  return table.concat(lines, "\n")
end

return metrics
