-- moondust: diffusion models in Lua over a C11 core.
--   local md = require "moondust"
--
-- This file is the public API: every name a user may call is listed below,
-- once. md.core holds everything the C core exposes, including internals
-- (the optimizer kernels, file formats, test hooks) that the Lua layer builds
-- on and users need not see. Submodules load on first use.
--
-- Index rule (as in Torch7): every position you give or get as a Lua number
-- is 1-based (dimensions, t[i], narrow, select, permute); integers stored in
-- tensors are data and 0-based (class labels, timesteps, embedding rows, the
-- indices of index_select and the results of argmax/argmin and max/min), so
-- md.argmax(logits, 2) compares directly with labels. See docs/DESIGN.md.
local core = require "moondust.core"

local md = { core = core, Tensor = core.Tensor, version = "0.1.0" }

-- The C functions that are public, by area (docs/DESIGN.md lists the files).
local public_core = {
  -- tensors and randomness
  "Generator", "empty", "zeros", "ones", "full", "arange", "linspace", "rand", "randn", "randint", "manual_seed",
  "get_rng_state", "set_rng_state", "is_tensor",
  -- pointwise, reductions, data movement, linear algebra
  "abs", "add", "sub", "mul", "div", "pow", "neg", "exp", "log", "sqrt", "rsqrt", "sin", "cos", "sigmoid", "tanh",
  "relu", "silu", "clamp", "maximum", "minimum", "where", "eq", "ne", "lt", "le", "gt", "ge",
  "sum", "mean", "var", "std", "max", "min", "argmax", "argmin",
  "cat", "stack", "permute", "transpose", "reshape", "index_select", "clone", "matmul", "bmm", "linear",
  -- network layers and losses
  "conv2d", "group_norm", "attention", "avg_pool2d", "upsample_nearest", "embedding", "timestep_embedding",
  "softmax", "log_softmax", "mse_loss", "cross_entropy", "nll_loss", "binary_cross_entropy",
  "binary_cross_entropy_with_logits",
  -- diffusion kernels (what samplers are written with)
  "q_sample", "v_target", "pred_to_x0_eps", "ddpm_step", "ddim_step",
  -- autograd and runtime
  "grad", "is_grad_enabled", "set_num_threads", "get_num_threads", "set_conv_backend", "get_conv_backend",
  "time", "memory",
}
for _, name in ipairs(public_core) do
  md[name] = core[name] or error("moondust: the core has no function '" .. name .. "' (init.lua is out of date)")
end

-- Public functions written in Lua, defined below or in the files named:
--   no_grad, enable_grad, save, load, sample, profile, pretrained (here);
--   tensor, zeros_like, ones_like, full_like, empty_like, rand_like, randn_like (tensor.lua);
--   dropout, adaptive_avg_pool2d_1, gaussian_kl, one_hot (functional.lua).

-- Grad mode -------------------------------------------------------------------
-- md.no_grad(fn, ...) runs fn with recording off and returns its results;
-- md.no_grad() returns a guard for `local _ <close> = md.no_grad()`.
local guard_mt = { __close = function(g) core.set_grad_enabled(g.prev) end }

-- md.no_grad(fn, ...) runs fn without recording for backward, returns its
-- results; `local _ <close> = md.no_grad()` turns recording off for a block.
function md.no_grad(fn, ...)
  local prev = core.set_grad_enabled(false)
  if fn == nil then return setmetatable({ prev = prev }, guard_mt) end
  local res = table.pack(pcall(fn, ...))
  core.set_grad_enabled(prev)
  if not res[1] then error(res[2], 0) end
  return table.unpack(res, 2, res.n)
end

-- md.enable_grad(fn, ...) runs fn with recording on (inside md.no_grad).
function md.enable_grad(fn, ...)
  local prev = core.set_grad_enabled(true)
  local res = table.pack(pcall(fn, ...))
  core.set_grad_enabled(prev)
  if not res[1] then error(res[2], 0) end
  return table.unpack(res, 2, res.n)
end

-- Submodules load lazily: md.nn, md.optim, md.image, md.data, ...
local submodules = {
  nn = "moondust.nn", optim = "moondust.optim", image = "moondust.image", data = "moondust.data",
  schedule = "moondust.schedule", sampler = "moondust.sampler", guidance = "moondust.guidance",
  vae = "moondust.vae", autoencoder = "moondust.autoencoder", checkpoint = "moondust.checkpoint", progress = "moondust.progress",
  trainer = "moondust.trainer", repl = "moondust.repl", options = "moondust.options", dist = "moondust.dist",
  metrics = "moondust.metrics", runlog = "moondust.runlog", diffusion = "moondust.diffusion",
  samplers = "moondust.samplers", edit = "moondust.edit", plot = "moondust.plot",
}
md.submodules = submodules
setmetatable(md, {
  __index = function(t, k)
    local name = submodules[k]
    if name then
      local m = require(name)
      rawset(t, k, m)
      return m
    end
    if core[k] ~= nil and type(k) == "string" then
      error(("md.%s is internal: use md.core.%s"):format(k, k), 2)
    end
  end,
})

-- Entry points implemented in submodules, loaded when first called.
function md.save(...) return require("moondust.checkpoint").save(...) end
function md.load(...) return require("moondust.checkpoint").load(...) end
function md.sample(...) return require("moondust.sampler").sample(...) end
function md.profile(...) return require("moondust.profile")(...) end

-- The models that ship with moondust (lua/moondust/assets/; the README says
-- how each was trained): "fashion", the main job's U-Net, for md.sample;
-- "noisy_classifier", its timestep-conditioned classifier, for
-- md.guidance.classifier.
local assets = (debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or ".") .. "/assets/"
md.pretrained_models = { fashion = "fashion_model.safetensors", noisy_classifier = "noisy_classifier.safetensors" }
-- md.pretrained(name): a shipped model ("fashion" or "noisy_classifier"), loaded.
function md.pretrained(name)
  local file = md.pretrained_models[name]
  if not file then
    local names = {}
    for k in pairs(md.pretrained_models) do names[#names + 1] = k end
    table.sort(names)
    error(("md.pretrained: no model '%s' (there is: %s)"):format(tostring(name), table.concat(names, ", ")), 2)
  end
  return md.load(assets .. file)
end

-- Precision -------------------------------------------------------------------
-- bf16 is mixed precision for convolutions (nearly all the U-Net's work):
-- their inputs and weights rounded to bfloat16, products summed in fp32,
-- outputs fp32; weights, gradients, norms, matmuls and the optimizer stay fp32.
-- The engine a forward pass ran on also runs its backward pass.
local fp32_backend = "dnnl" -- the engine set_precision("fp32") returns to

-- md.set_precision("fp32" | "bf16"): the arithmetic of convolutions; bf16
-- needs oneDNN and a CPU with AVX512_BF16.
function md.set_precision(p)
  local current = core.get_conv_backend()
  if p == "fp32" then
    if current == "dnnl_bf16" then core.set_conv_backend(fp32_backend) end
    return
  elseif p ~= "bf16" then
    error(("md.set_precision: precision must be \"fp32\" or \"bf16\", got %s"):format(tostring(p)), 2)
  end
  if current == "dnnl_bf16" then return end
  local ok = pcall(core.set_conv_backend, "dnnl_bf16") -- fails without oneDNN
  local kernel = ok and core.dnnl_conv_kernel(1, 16, 8, 8, 16, 3, 1, 1, "dnnl_bf16")
  -- oneDNN falls back to its slow reference kernel on CPUs without bf16
  if not (kernel and kernel:find("bf16", 1, true) and not kernel:find("ref", 1, true)) then
    core.set_conv_backend(current)
    error(("md.set_precision: bf16 needs oneDNN and a CPU with AVX512_BF16 (oneDNN offers %s)"):format(
      tostring(kernel or "nothing")), 2)
  end
  fp32_backend = current
end

-- md.get_precision() -> "fp32" or "bf16"
function md.get_precision() return core.get_conv_backend() == "dnnl_bf16" and "bf16" or "fp32" end

package.loaded.moondust = md
require "moondust.tensor" -- Lua-side tensor methods and creation helpers
require "moondust.functional" -- dropout, pooling and KL written in Lua
return md
