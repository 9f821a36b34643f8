-- Module: the base of every layer. A module holds parameters and child
-- modules in registration order, so named_parameters() and state_dict()
-- are stable across runs and match PyTorch's dotted names
-- ("input_blocks.1.0.in_layers.2.weight").
--
--   local Net = nn.Module:extend("Net")
--   function Net:init(n) self.fc = self:add_module("fc", nn.Linear(n, 1)) end
--   function Net:forward(x) return self.fc(x) end
--   local net = Net(4); local y = net(x)
local md = require "moondust"

local function shape_str(t) return "[" .. table.concat(t:shape(), ", ") .. "]" end

local Module = { __name = "Module" }
Module.__index = Module

-- Instances call :forward through __call.
local instance_mt_cache = setmetatable({}, { __mode = "k" })

local function instance_mt(class)
  local mt = instance_mt_cache[class]
  if not mt then
    mt = {
      __index = class,
      __call = function(self, ...) return self:forward(...) end,
      __tostring = function(self) return self:describe() end,
      __name = class.__name,
    }
    instance_mt_cache[class] = mt
  end
  return mt
end

-- A subclass: Class(...) builds an instance and runs Class.init on it.
function Module:extend(name)
  local class = setmetatable({ __name = name, super = self }, {
    __index = self,
    __call = function(class, ...)
      local obj = setmetatable({ _params = {}, _children = {}, training = true }, instance_mt(class))
      obj:init(...)
      return obj
    end,
  })
  class.__index = class
  return class
end

function Module:init() end

-- True for instances of Module and its subclasses.
function Module.is_module(x)
  if type(x) ~= "table" then return false end
  local mt = getmetatable(x)
  local class = mt and mt.__index
  while type(class) == "table" do
    if class == Module then return true end
    class = class.super
  end
  return false
end

function Module:forward()
  error(self.__name .. ": forward is not implemented", 2)
end

-- Registers t as a trainable parameter called `name` and returns it.
function Module:add_parameter(name, t)
  t:requires_grad(true)
  if self[name] == nil then self._params[#self._params + 1] = name end
  self[name] = t
  return t
end

function Module:add_module(name, m)
  name = tostring(name)
  if self[name] == nil then self._children[#self._children + 1] = name end
  self[name] = m
  return m
end

function Module:children()
  local out = {}
  for i, name in ipairs(self._children) do out[i] = self[name] end
  return out
end

-- { {name, tensor}, ... } in registration order, children depth-first.
function Module:named_parameters(prefix, out)
  prefix, out = prefix or "", out or {}
  for _, name in ipairs(self._params) do
    if self[name] then out[#out + 1] = { prefix .. name, self[name] } end
  end
  for _, name in ipairs(self._children) do
    self[name]:named_parameters(prefix .. name .. ".", out)
  end
  return out
end

function Module:parameters()
  local out = {}
  for i, pair in ipairs(self:named_parameters()) do out[i] = pair[2] end
  return out
end

function Module:num_parameters()
  local n = 0
  for _, p in ipairs(self:parameters()) do n = n + p:numel() end
  return n
end

function Module:state_dict()
  local sd = {}
  for _, pair in ipairs(self:named_parameters()) do sd[pair[1]] = pair[2] end
  return sd
end

-- Copies values from sd (name -> tensor). With strict (the default) missing,
-- unexpected and mis-shaped entries are errors that name every key at fault.
function Module:load_state_dict(sd, strict)
  strict = strict ~= false
  local problems, seen = {}, {}
  local pairs_list = self:named_parameters()
  for _, pair in ipairs(pairs_list) do
    local name, p = pair[1], pair[2]
    local src = sd[name]
    seen[name] = true
    if src == nil then
      if strict then problems[#problems + 1] = "missing '" .. name .. "'" end
    elseif shape_str(src) ~= shape_str(p) then
      problems[#problems + 1] = ("'%s' has shape %s in the state, %s in the model"):format(
        name, shape_str(src), shape_str(p))
    end
  end
  if strict then
    local extra = {}
    for name in pairs(sd) do
      if not seen[name] then extra[#extra + 1] = "unexpected '" .. name .. "'" end
    end
    table.sort(extra)
    for _, e in ipairs(extra) do problems[#problems + 1] = e end
  end
  if #problems > 0 then
    error("load_state_dict: " .. table.concat(problems, "; "), 2)
  end
  md.no_grad(function()
    for _, pair in ipairs(pairs_list) do
      local src = sd[pair[1]]
      if src then pair[2]:copy_(src) end
    end
  end)
  return self
end

function Module:train(on)
  self.training = on ~= false
  for _, c in ipairs(self:children()) do c:train(on) end
  return self
end

function Module:eval() return self:train(false) end

function Module:zero_grad()
  for _, p in ipairs(self:parameters()) do p.grad = nil end
end

-- A short tree, as PyTorch prints modules.
function Module:describe(indent)
  indent = indent or ""
  local head = self.__name .. (self.extra_repr and ("(" .. self:extra_repr() .. ")") or "")
  if #self._children == 0 then return head end
  local lines = { head .. " {" }
  for _, name in ipairs(self._children) do
    lines[#lines + 1] = indent .. "  (" .. name .. "): " .. self[name]:describe(indent .. "  ")
  end
  lines[#lines + 1] = indent .. "}"
  return table.concat(lines, "\n")
end

return Module
