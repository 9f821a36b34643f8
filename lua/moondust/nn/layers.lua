-- The basic layers, each a thin Module over one C op. Initialisation follows
-- PyTorch's defaults, drawn from md's global generator so md.manual_seed
-- makes a model reproducible.
local md = require "moondust"
local Module = require "moondust.nn.module"
local options = require "moondust.options"
local size = options.size

local L = {}

-- U(-1/sqrt(fan_in), 1/sqrt(fan_in)): what PyTorch's kaiming_uniform(a=sqrt(5))
-- gives for Linear and Conv weights and biases.
local function uniform_fan_in(shape, fan_in)
  local bound = 1 / math.sqrt(fan_in)
  return md.rand(shape) * (2 * bound) - bound
end
L.uniform_fan_in = uniform_fan_in

-- Identity(): forward(x) returns x.
L.Identity = Module:extend("Identity")
function L.Identity:forward(x) return x end

L.Sequential = Module:extend("Sequential")
-- Children are named "0", "1", ... as in PyTorch, so state_dict keys match.
function L.Sequential:init(...)
  local mods = select("#", ...) == 1 and type((...)) == "table" and not getmetatable(...) and ... or { ... }
  self.n = 0
  for _, m in ipairs(mods) do self:append(m) end
end
function L.Sequential:append(m)
  self:add_module(tostring(self.n), m)
  self.n = self.n + 1
  return self
end
function L.Sequential:get(i) return self[tostring(i - 1)] end -- 1-based, Lua style
function L.Sequential:forward(x, ...)
  for i = 0, self.n - 1 do x = self[tostring(i)](x, ...) end
  return x
end

-- Linear(in_features, out_features [, bias = true]): x W^T + b.
L.Linear = Module:extend("Linear")
function L.Linear:init(in_features, out_features, bias)
  size("Linear", "in_features", in_features)
  size("Linear", "out_features", out_features)
  if bias ~= nil and type(bias) ~= "boolean" then error("Linear: bias must be a boolean, got " .. type(bias), 3) end
  self.in_features, self.out_features = in_features, out_features
  self:add_parameter("weight", uniform_fan_in({ out_features, in_features }, in_features))
  if bias ~= false then self:add_parameter("bias", uniform_fan_in({ out_features }, in_features)) end
end
function L.Linear:forward(x) return md.linear(x, self.weight, self.bias) end
function L.Linear:extra_repr() return ("%d -> %d"):format(self.in_features, self.out_features) end

-- Conv2d(in, out, kernel_size, {stride=1, padding=0, bias=true})
L.Conv2d = Module:extend("Conv2d")
function L.Conv2d:init(in_ch, out_ch, k, opts)
  opts = options.check("Conv2d", opts, { stride = "number", padding = "number", bias = "boolean" }, 2)
  size("Conv2d", "in_channels", in_ch)
  size("Conv2d", "out_channels", out_ch)
  size("Conv2d", "kernel_size", k)
  options.integer("Conv2d", "stride", opts.stride, 1)
  options.integer("Conv2d", "padding", opts.padding, 0)
  self.in_channels, self.out_channels, self.kernel_size = in_ch, out_ch, k
  self.stride, self.padding = opts.stride or 1, opts.padding or 0
  local fan_in = in_ch * k * k
  self:add_parameter("weight", uniform_fan_in({ out_ch, in_ch, k, k }, fan_in))
  if opts.bias ~= false then self:add_parameter("bias", uniform_fan_in({ out_ch }, fan_in)) end
end
function L.Conv2d:forward(x) return md.conv2d(x, self.weight, self.bias, self.stride, self.padding) end
function L.Conv2d:extra_repr()
  return ("%d -> %d, k=%d, stride=%d, padding=%d"):format(self.in_channels, self.out_channels,
    self.kernel_size, self.stride, self.padding)
end

-- GroupNorm(groups, channels [, eps = 1e-5]), with a learned scale and shift.
L.GroupNorm = Module:extend("GroupNorm")
function L.GroupNorm:init(groups, channels, eps)
  size("GroupNorm", "groups", groups)
  size("GroupNorm", "channels", channels)
  if channels % groups ~= 0 then
    error(("GroupNorm: %d groups do not divide %d channels"):format(groups, channels), 3)
  end
  options.number("GroupNorm", "eps", eps, 0)
  self.groups, self.channels, self.eps = groups, channels, eps or 1e-5
  self:add_parameter("weight", md.ones({ channels }))
  self:add_parameter("bias", md.zeros({ channels }))
end
function L.GroupNorm:forward(x) return md.group_norm(x, self.groups, self.weight, self.bias, self.eps) end
function L.GroupNorm:extra_repr() return ("%d groups, %d channels"):format(self.groups, self.channels) end

-- Embedding(num_embeddings, embedding_dim): forward(idx) gives the rows idx (0-based).
L.Embedding = Module:extend("Embedding")
function L.Embedding:init(num, dim)
  size("Embedding", "num_embeddings", num)
  size("Embedding", "embedding_dim", dim)
  self.num_embeddings, self.embedding_dim = num, dim
  self:add_parameter("weight", md.randn({ num, dim }))
end
function L.Embedding:forward(idx) return md.embedding(idx, self.weight) end
function L.Embedding:extra_repr() return ("%d x %d"):format(self.num_embeddings, self.embedding_dim) end

-- SiLU(): x * sigmoid(x).
L.SiLU = Module:extend("SiLU")
function L.SiLU:forward(x) return md.silu(x) end

-- ReLU(): max(x, 0).
L.ReLU = Module:extend("ReLU")
function L.ReLU:forward(x) return md.relu(x) end

-- Tanh(): tanh(x).
L.Tanh = Module:extend("Tanh")
function L.Tanh:forward(x) return md.tanh(x) end

-- Sigmoid(): 1 / (1 + e^-x).
L.Sigmoid = Module:extend("Sigmoid")
function L.Sigmoid:forward(x) return md.sigmoid(x) end

-- Dropout([p = 0.5]): zeroes elements with probability p in training mode.
L.Dropout = Module:extend("Dropout")
function L.Dropout:init(p)
  options.number("Dropout", "p", p, 0, 1)
  self.p = p or 0.5
end
function L.Dropout:forward(x) return md.dropout(x, self.p, self.training) end
function L.Dropout:extra_repr() return ("p=%g"):format(self.p) end

-- Flattens all but the first dimension.
L.Flatten = Module:extend("Flatten")
function L.Flatten:forward(x) return x:reshape(x:size(1), -1) end

-- AvgPool2d(kernel_size [, stride = kernel_size]).
L.AvgPool2d = Module:extend("AvgPool2d")
function L.AvgPool2d:init(k, stride)
  size("AvgPool2d", "kernel_size", k)
  options.integer("AvgPool2d", "stride", stride, 1)
  self.k, self.stride = k, stride or k
end
function L.AvgPool2d:forward(x) return md.avg_pool2d(x, self.k, self.stride) end

return L
