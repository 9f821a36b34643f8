-- The Lua side of tensors: construction from nested tables, *_like helpers,
-- conversions to Lua tables, printing, and small conveniences built from the
-- C ops (squeeze, unsqueeze, flatten, chunk of the first dimension).
local md = require "moondust"
local core = md.core
local Tensor = core.Tensor

local mt = getmetatable(core.zeros { 1 })

-- md.tensor{{1, 2}, {3, 4}} or md.tensor(3.5) (0-dim)
function md.tensor(data)
  if type(data) == "number" then return core.from_flat({ data }, {}) end
  if md.is_tensor(data) then return data:clone() end
  if type(data) ~= "table" then
    error("tensor: expected a number or a nested table of numbers, got " .. type(data), 2)
  end
  local shape, node = {}, data
  while type(node) == "table" do
    shape[#shape + 1] = #node
    node = node[1]
  end
  local flat = {}
  local function walk(t, d)
    if d > #shape then
      if type(t) ~= "number" then
        error(("tensor: expected a number at depth %d, got %s"):format(d - 1, type(t)), 4)
      end
      flat[#flat + 1] = t
      return
    end
    if type(t) ~= "table" or #t ~= shape[d] then
      error(("tensor: ragged nested table: dimension %d should have %d entries"):format(d, shape[d]), 4)
    end
    for i = 1, #t do walk(t[i], d + 1) end
  end
  walk(data, 1)
  return core.from_flat(flat, shape)
end

-- A new tensor of t's shape: zeros, ones, value v, uninitialised, uniform, normal.
function md.zeros_like(t) return core.zeros(t:shape()) end
function md.ones_like(t) return core.ones(t:shape()) end
function md.full_like(t, v) return core.full(t:shape(), v) end
function md.empty_like(t) return core.empty(t:shape()) end
function md.rand_like(t, gen) return core.rand(t:shape(), gen) end
function md.randn_like(t, gen) return core.randn(t:shape(), gen) end

-- Nested Lua tables (a number for a 0-dim tensor).
function Tensor.totable(t)
  local flat, shape = t:flat(), t:shape()
  if #shape == 0 then return flat[1] end
  local pos = 0
  local function build(d)
    local out = {}
    for i = 1, shape[d] do
      if d == #shape then
        pos = pos + 1
        out[i] = flat[pos]
      else
        out[i] = build(d + 1)
      end
    end
    return out
  end
  return build(1)
end

-- Shape conveniences (dimensions 1-based, negative from the end).
local function norm_dim(d, n) return d < 0 and d + n + 1 or d end

function Tensor.unsqueeze(t, d)
  local s = t:shape()
  table.insert(s, norm_dim(d, #s + 1), 1)
  return t:reshape(s)
end

function Tensor.squeeze(t, d)
  local s, out = t:shape(), {}
  d = d and norm_dim(d, #s)
  for i, v in ipairs(s) do
    if not (v == 1 and (d == nil or d == i)) then out[#out + 1] = v end
  end
  return t:reshape(out)
end

function Tensor.flatten(t, from)
  local s, out = t:shape(), {}
  from = from and norm_dim(from, #s) or 1
  for i = 1, from - 1 do out[i] = s[i] end
  out[from] = -1
  return t:reshape(out)
end

-- Views of n (nearly) equal pieces of the first dimension.
function Tensor.chunk(t, n)
  local rows, out = t:size(1), {}
  local step = (rows + n - 1) // n
  for start = 1, rows, step do out[#out + 1] = t:narrow(1, start, math.min(step, rows - start + 1)) end
  return out
end

function Tensor.type() return "torch.FloatTensor" end

-- Shapes print as md.Size([2, 3, 4]) and compare by value, and stay plain
-- arrays of numbers for #s, s[i], ipairs, table.concat and table.unpack.
local Size = { __name = "md.Size" }
Size.__tostring = function(s) return "md.Size([" .. table.concat(s, ", ") .. "])" end
Size.__eq = function(a, b)
  if #a ~= #b then return false end
  for i = 1, #a do if a[i] ~= b[i] then return false end end
  return true
end

local raw_shape, raw_size = Tensor.shape, Tensor.size
function Tensor.shape(t) return setmetatable(raw_shape(t), Size) end
function Tensor.size(t, d)
  if d == nil then return setmetatable(raw_shape(t), Size) end
  return raw_size(t, d)
end

-- Printing, as PyTorch prints: tensor([[...]]), every value in one width, and
-- above THRESHOLD elements only the EDGE first and last entries of each
-- dimension, so a big tensor prints in a few lines.
local THRESHOLD, EDGE, LINEWIDTH = 1000, 3, 80

-- The values shown: all of them, or the edges of each long dimension
-- (index_select, so a big tensor is never copied into a Lua table whole).
local function shown_values(t, summarize)
  local x, cut = t:detach(), {}
  for d = 1, summarize and x:dim() or 0 do
    local n = x:size(d)
    if n > 2 * EDGE then
      local idx = {}
      for i = 0, EDGE - 1 do idx[#idx + 1] = i end
      for i = n - EDGE, n - 1 do idx[#idx + 1] = i end
      x, cut[d] = x:index_select(d, md.tensor(idx)), true
    end
  end
  return x:flat(), raw_shape(x), cut
end

-- PyTorch's _Formatter: integers as "3.", else 4 decimals, or scientific
-- notation when the magnitudes span more than 1000x or leave [1e-4, 1e8].
local function formatter(vals)
  local int_mode, lo, hi = true, math.huge, 0
  for _, v in ipairs(vals) do
    if v == v and v ~= 0 and math.abs(v) ~= math.huge then
      lo, hi = math.min(lo, math.abs(v)), math.max(hi, math.abs(v))
      if v ~= math.ceil(v) then int_mode = false end
    end
  end
  local spec = "%.4f"
  if hi > 0 and (hi / lo > 1000 or hi > 1e8 or (not int_mode and lo < 1e-4)) then spec = "%.4e"
  elseif int_mode then spec = "%.0f." end
  local function raw(v)
    if v ~= v then return "nan" elseif v == math.huge then return "inf" elseif v == -math.huge then return "-inf" end
    return spec:format(v)
  end
  local width = 1
  for _, v in ipairs(vals) do
    if v == v and v ~= 0 and math.abs(v) ~= math.huge then width = math.max(width, #raw(v)) end
  end
  return function(v) local r = raw(v); return (" "):rep(width - #r) .. r end, width
end

-- The nested brackets: a slice per entry of each dimension, blank lines
-- between slices of 3 or more dimensions, rows wrapped at LINEWIDTH.
local function render(vals, shape, cut, fmt, width, indent)
  local nd, stride = #shape, { [#shape] = 1 }
  for d = nd - 1, 1, -1 do stride[d] = stride[d + 1] * shape[d + 1] end
  local function slice(d, base, ind)
    local parts = {}
    for i = 1, shape[d] do
      if cut[d] and i == EDGE + 1 then parts[#parts + 1] = d == nd and " ..." or "..." end
      local off = base + (i - 1) * stride[d]
      parts[#parts + 1] = d == nd and fmt(vals[off + 1]) or slice(d + 1, off, ind + 1)
    end
    if d < nd then return "[" .. table.concat(parts, "," .. ("\n"):rep(nd - d) .. (" "):rep(ind + 1)) .. "]" end
    local per, lines = math.max(1, (LINEWIDTH - ind) // (width + 2)), {}
    for i = 1, #parts, per do lines[#lines + 1] = table.concat(parts, ", ", i, math.min(i + per - 1, #parts)) end
    return "[" .. table.concat(lines, ",\n" .. (" "):rep(ind + 1)) .. "]"
  end
  return slice(1, 0, indent)
end

mt.__tostring = function(t)
  local prefix, body, suffixes = "tensor(", nil, {}
  if t:numel() == 0 then
    body = "[]"
    if t:dim() ~= 1 then suffixes[#suffixes + 1] = "size=[" .. table.concat(raw_shape(t), ", ") .. "]" end
  else
    local vals, shape, cut = shown_values(t, t:numel() > THRESHOLD)
    local fmt, width = formatter(vals)
    body = #shape == 0 and fmt(vals[1]) or render(vals, shape, cut, fmt, width, #prefix)
  end
  if t:grad_fn() then suffixes[#suffixes + 1] = "grad_fn=<" .. t:grad_fn() .. ">"
  elseif t:requires_grad() then suffixes[#suffixes + 1] = "requires_grad=True" end
  -- suffixes go on the last line, or on their own line past LINEWIDTH
  local out = { prefix .. body }
  local nl = out[1]:match(".*()\n")
  local last = #out[1] - (nl or 0) + 2
  for _, sfx in ipairs(suffixes) do
    if last + #sfx + 2 > LINEWIDTH then
      out[#out + 1] = ",\n" .. (" "):rep(#prefix) .. sfx
      last = #prefix + #sfx
    else
      out[#out + 1] = ", " .. sfx
      last = last + #sfx + 2
    end
  end
  return table.concat(out) .. ")"
end
mt.__name = "moondust.Tensor"

return md
