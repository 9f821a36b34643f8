-- Optimizers, gradient clipping, learning-rate warm-up and parameter EMA.
-- The update loops run in C (csrc/optim.c) over all parameters in one call;
-- this file keeps the state tensors and the hyper-parameters, which users
-- may change between steps (opt.lr = ...).
local md = require "moondust"
local core = md.core
local options = require "moondust.options"

local optim = {}

-- A model (anything with :parameters()) or a list of tensors.
local function param_list(params)
  if type(params) == "table" and params.parameters then params = params:parameters() end
  assert(type(params) == "table", "optimizer: expected a model or a list of tensors")
  local out = {}
  for i, p in ipairs(params) do
    assert(md.is_tensor(p), ("optimizer: params[%d] is not a tensor"):format(i))
    out[i] = p
  end
  return out
end

local function zeros_like_all(params)
  local out = {}
  for i, p in ipairs(params) do out[i] = md.zeros_like(p) end
  return out
end

local Optimizer = {}
Optimizer.__index = Optimizer

function Optimizer:zero_grad()
  for _, p in ipairs(self.params) do p.grad = nil end
end

-- The state as name -> tensor (for checkpoints): every state buffer and the
-- step count, so a resumed run continues exactly.
function Optimizer:state_dict()
  local sd = { step = md.full({ 1 }, self.step_count) }
  for _, name in ipairs(self.buffer_names) do
    for i, t in ipairs(self[name]) do sd[name .. "." .. i] = t end
  end
  return sd
end

function Optimizer:load_state_dict(sd)
  assert(sd.step, "optimizer state: missing 'step'")
  self.step_count = math.floor(sd.step:view(1)[1] + 0.5)
  for _, name in ipairs(self.buffer_names) do
    for i, t in ipairs(self[name]) do
      local src = sd[name .. "." .. i]
      if not src then error(("optimizer state: missing '%s.%d'"):format(name, i), 2) end
      md.no_grad(function() t:copy_(src) end)
    end
  end
end

-- The largest learning rate accepted: far above any useful one, and below
-- what overflows float32 in the update.
local MAX_LR = 1e3

-- Checks opts against the defaults' names and types, and the values' ranges.
local function check_hyper(kind, opts, defaults)
  local known = {}
  for k, v in pairs(defaults) do known[k] = type(v) end
  options.check(kind, opts, known, 3)
  local function get(k) if opts[k] ~= nil then return opts[k] end return defaults[k] end
  options.number(kind, "lr", get("lr"), 0, MAX_LR, 3)
  options.number(kind, "weight_decay", get("weight_decay"), 0, nil, 3)
  if known.eps then options.number(kind, "eps", get("eps"), 0, nil, 3) end
  if known.betas then
    local b = get("betas")
    if #b ~= 2 then error(("%s: betas must be {beta1, beta2}, got %d values"):format(kind, #b), 4) end
    options.number(kind, "betas[1]", b[1], 0, 1, 3)
    options.number(kind, "betas[2]", b[2], 0, 1, 3)
  end
  if known.momentum then
    options.number(kind, "momentum", get("momentum"), 0, 1, 3)
    options.number(kind, "dampening", get("dampening"), 0, 1, 3)
  end
end

local function new(kind, params, opts, defaults, buffer_names)
  opts = opts or {}
  check_hyper(kind, opts, defaults)
  local self = setmetatable({ kind = kind, params = param_list(params), step_count = 0,
                              buffer_names = buffer_names }, Optimizer)
  for k, v in pairs(defaults) do self[k] = v end
  for k, v in pairs(opts) do self[k] = v end
  for _, name in ipairs(buffer_names) do self[name] = zeros_like_all(self.params) end
  return self
end

-- Adam / AdamW with PyTorch's defaults (AdamW: weight_decay 0.01, decoupled).
local function adam_step(self)
  self.step_count = self.step_count + 1
  core.adam_step(self.params, self.exp_avg, self.exp_avg_sq, self.step_count, self.lr,
                 self.betas[1], self.betas[2], self.eps, self.weight_decay, self.decoupled)
end

-- Adam(model or params, {lr = 1e-3, betas = {0.9, 0.999}, eps = 1e-8, weight_decay = 0}):
-- opt:zero_grad(), opt:step(), opt:state_dict(), opt:load_state_dict(sd)
function optim.Adam(params, opts)
  local self = new("Adam", params, opts, { lr = 1e-3, betas = { 0.9, 0.999 }, eps = 1e-8,
                   weight_decay = 0, decoupled = false }, { "exp_avg", "exp_avg_sq" })
  self.step = adam_step
  return self
end

-- AdamW(model or params, {lr = 1e-3, betas = {0.9, 0.999}, eps = 1e-8, weight_decay = 0.01}):
-- Adam with decoupled weight decay; opt:zero_grad(), opt:step()
function optim.AdamW(params, opts)
  local self = new("AdamW", params, opts, { lr = 1e-3, betas = { 0.9, 0.999 }, eps = 1e-8,
                   weight_decay = 0.01, decoupled = true }, { "exp_avg", "exp_avg_sq" })
  self.step = adam_step
  return self
end

-- SGD(model or params, {lr = 1e-2, momentum = 0, dampening = 0, weight_decay = 0, nesterov = false})
function optim.SGD(params, opts)
  local self = new("SGD", params, opts, { lr = 1e-2, momentum = 0, dampening = 0, weight_decay = 0,
                   nesterov = false }, { "momentum_buffer" })
  function self:step()
    core.sgd_step(self.params, self.momentum_buffer, self.step_count == 0, self.lr, self.momentum,
                  self.dampening, self.weight_decay, self.nesterov)
    self.step_count = self.step_count + 1
  end
  return self
end

-- Scales all gradients so that their joint 2-norm is at most max_norm;
-- returns the norm before clipping (as torch.nn.utils.clip_grad_norm_).
function optim.clip_grad_norm(params, max_norm)
  options.number("clip_grad_norm", "max_norm", max_norm, 0)
  if max_norm == nil then error("clip_grad_norm: max_norm is required", 2) end
  params = param_list(params)
  local norm = core.grad_norm(params)
  if norm ~= norm or norm == math.huge then return norm end
  if norm > max_norm then core.scale_grads(params, max_norm / (norm + 1e-6)) end
  return norm
end

-- The decay shapes of lr_schedule, over the share p of the budget spent.
local decays = {
  constant = function() return 1 end,
  linear = function(p) return 1 - p end,
  cosine = function(p) return 0.5 * (1 + math.cos(math.pi * p)) end,
}

-- The learning rate over a run: opt.lr as it is now, times a linear warm-up
-- over `warmup` optimizer steps, times a decay from 1 to `final` (a share
-- of that lr) as the run's progress goes from 0 to 1.
--   sched = lr_schedule(opt, {warmup = 0, decay = "constant" | "cosine" | "linear", final = 0})
--   sched:set_progress(p) before opt:step() (the share of the budget spent,
--   in steps or minutes: md.trainer sets it), sched:step() after it.
-- Cosine is SGDR's half cosine without restarts (diffusers' cosine schedule),
-- linear is torch's LinearLR to `final`.
function optim.lr_schedule(opt, opts)
  opts = options.check("lr_schedule", opts, { warmup = "number", decay = "string", final = "number" })
  options.integer("lr_schedule", "warmup", opts.warmup, 0)
  options.choice("lr_schedule", "decay", opts.decay, { "constant", "cosine", "linear" })
  options.number("lr_schedule", "final", opts.final, 0, 1)
  if opts.final and (opts.decay or "constant") == "constant" then
    error("lr_schedule: final is where a decay ends: give decay = \"cosine\" or \"linear\" with it", 2)
  end
  local base, warm, final = opt.lr, opts.warmup or 0, opts.final or 0
  local shape = decays[opts.decay or "constant"]
  local n, p = 0, 0
  local sched = {}
  local function apply()
    local ramp = warm > 0 and math.min(1, (n + 1) / warm) or 1
    opt.lr = base * ramp * (final + (1 - final) * shape(p))
  end
  function sched:step() n = n + 1; apply() end
  function sched:set_progress(q)
    if type(q) ~= "number" or q ~= q then error("lr_schedule: progress must be a number in [0, 1]", 2) end
    p = math.max(0, math.min(1, q))
    apply()
  end
  function sched:progress() return p end
  -- the warm-up steps taken (a number, as md.optim.warmup always stored)
  function sched:state() return n end
  function sched:set_state(k) n = k; apply() end
  apply()
  return sched
end

-- Linear learning-rate warm-up over `steps` optimizer steps: call
-- warm:step() after each opt:step().
function optim.warmup(opt, steps)
  options.size("warmup", "steps", steps, 0)
  return optim.lr_schedule(opt, { warmup = steps })
end

-- Exponential moving average of a model's parameters. With warmup (the
-- default) the decay ramps up as min(decay, (1 + n) / (10 + n)), so early
-- averages are not dominated by the random initialisation.
local EMA = {}
EMA.__index = EMA

-- EMA(model, decay = 0.9999, {warmup = true}): ema:update(model) after each
-- step, ema:copy_to(model) to use the averages.
function optim.EMA(model, decay, opts)
  opts = options.check("EMA", opts, { warmup = "boolean" })
  options.number("EMA", "decay", decay, 0, 1)
  local self = setmetatable({ decay = decay or 0.9999, warmup = opts.warmup ~= false, updates = 0 }, EMA)
  self.names, self.shadow = {}, {}
  for i, pair in ipairs(model:named_parameters()) do
    self.names[i] = pair[1]
    self.shadow[i] = pair[2]:detach():clone()
  end
  return self
end

function EMA:current_decay()
  if not self.warmup then return self.decay end
  return math.min(self.decay, (1 + self.updates) / (10 + self.updates))
end

function EMA:update(model)
  local params = model:parameters()
  assert(#params == #self.shadow, "EMA: the model's parameter count changed")
  core.ema_update(self.shadow, params, self:current_decay())
  self.updates = self.updates + 1
end

-- Copies the averaged weights into model (for sampling or evaluation).
function EMA:copy_to(model)
  local params = model:parameters()
  md.no_grad(function()
    for i, p in ipairs(params) do p:copy_(self.shadow[i]) end
  end)
end

-- The averaged weights under the model's parameter names (so a checkpoint's
-- "ema." tensors load straight into a model); the update count is
-- self.updates, which callers store alongside.
function EMA:state_dict()
  local sd = {}
  for i, name in ipairs(self.names) do sd[name] = self.shadow[i] end
  return sd
end

function EMA:load_state_dict(sd)
  for i, name in ipairs(self.names) do
    local src = sd[name]
    if not src then error("EMA state: missing '" .. name .. "'", 2) end
    md.no_grad(function() self.shadow[i]:copy_(src) end)
  end
end

return optim
