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

-- Printing: the shape and a few values per dimension, never megabytes.
local function fmt(v)
  if v ~= v then return "nan" end
  if v == math.huge then return "inf" elseif v == -math.huge then return "-inf" end
  if v == math.floor(v) and math.abs(v) < 1e6 then return ("%d."):format(v) end
  return ("%.4g"):format(v)
end

local EDGE = 3 -- values shown at each end of a long dimension

local function render(t, indent)
  local n = t:dim()
  if n == 0 then return fmt(t:item()) end
  local size = t:size(1)
  local idx = {}
  if size <= 2 * EDGE then
    for i = 1, size do idx[#idx + 1] = i end
  else
    for i = 1, EDGE do idx[#idx + 1] = i end
    idx[#idx + 1] = false
    for i = size - EDGE + 1, size do idx[#idx + 1] = i end
  end
  local parts = {}
  for _, i in ipairs(idx) do
    if not i then parts[#parts + 1] = "..."
    elseif n == 1 then parts[#parts + 1] = fmt(t[i])
    else parts[#parts + 1] = render(t[i], indent .. " ") end
  end
  local sep = n == 1 and ", " or (",\n" .. indent .. " ")
  return "[" .. table.concat(parts, sep) .. "]"
end

mt.__tostring = function(t)
  local shape = t:shape()
  local head = "tensor of shape [" .. table.concat(shape, ", ") .. "]"
  local extra = {}
  if t:grad_fn() then extra[#extra + 1] = "grad_fn=" .. t:grad_fn()
  elseif t:requires_grad() then extra[#extra + 1] = "requires_grad" end
  if #extra > 0 then head = head .. " (" .. table.concat(extra, ", ") .. ")" end
  if t:numel() == 0 then return head .. " []" end
  -- at most 6 rows of the last two dimensions: flatten the leading ones
  local shown = t:detach()
  if #shape > 2 then shown = shown:reshape(-1, shape[#shape]) end
  return head .. "\n" .. render(shown, "")
end
mt.__name = "moondust.Tensor"

return md
