-- Whole-model parity with PyTorch, the llm.c way: a small class-conditional
-- U-Net's weights, a batch of inputs (x, distinct timesteps t, labels y with
-- the "no class" index), its output, an MSE loss against a fixed target and
-- every parameter's gradient, all computed by PyTorch in float64 from float32
-- weights and inputs, are stored in tests/fixtures/unet_parity.safetensors.
-- moondust loads the model from it (md.load reads meta.config), runs forward
-- and backward on every convolution engine, and must land on the same
-- numbers. This checks the fused GroupNorm+SiLU+shift, the blocked layout,
-- Winograd (the 28x28 level at batch 8, on AVX-512) and the overwritten gradient
-- buffers together, not kernel by kernel. It does not need PyTorch.
-- Each engine prints the kernel its 28x28 3x3 layers ran and its worst
-- tensor: on a machine without AVX-512 oneDNN has no Winograd kernel and
-- "dnnl" runs the direct one.
--
-- Regenerate the fixture (Debian's python3-torch, never the python3 on PATH):
--   /usr/bin/python3 scripts/bench/torch_unet.py --fixture tests/fixtures/unet_parity.safetensors
local T = require "harness"
local md = require "moondust"

local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local FIXTURE = here .. "../fixtures/unet_parity.safetensors"

-- Relative error on norms, ||a - b|| / ||b||, in double precision. This is
-- the measure that rounding in a different summation order keeps small for
-- the whole tensor; elementwise it would blow up on the entries that
-- cancel to near zero.
local function rel_err(a, b)
  local fa, fb = T.flat(a), T.flat(b)
  assert(#fa == #fb, "size mismatch")
  local diff, ref = 0, 0
  for i = 1, #fb do
    diff, ref = diff + (fa[i] - fb[i]) ^ 2, ref + fb[i] ^ 2
  end
  return math.sqrt(diff / ref)
end

-- Tolerances, relative on norms. float32 rounds each operand to 2^-24
-- (6e-8); sums of hundreds to thousands of products (3x3 convolutions over
-- 16-48 channels, the 6,272-element loss, weight gradients summed over batch
-- and positions) ~40 layers deep grow that to the 1e-6 range. PyTorch's own
-- float32 run shows that scale: its worst tensor against the float64
-- reference is at 2.4e-6 (meta.torch_fp32_worst_rel_err); moondust measured
-- 6.8e-7 (im2col) and 2.1e-6 (oneDNN direct). Winograd F(4x4, 3x3) rounds
-- more in its transforms: test_conv.lua holds single Winograd layers to
-- 1e-5 of im2col, and depth can multiply that a few times. 1e-4 leaves
-- that room and is ~50x over the direct engines' figures, yet a real
-- mistake shows well above it: scaling one layer's GroupNorm bias by 1.001
-- puts six gradients at 1.4e-4 to 3e-4.
local FP32_TOL = 1e-4

local default_backend = md.get_conv_backend()
local engines = { { name = "im2col", backend = "im2col", tol = FP32_TOL } }
if pcall(md.set_conv_backend, "dnnl") then
  engines[#engines + 1] = { name = "dnnl_direct", backend = "dnnl_direct", tol = FP32_TOL }
  engines[#engines + 1] = { name = "dnnl", backend = "dnnl", tol = FP32_TOL, winograd = true }
end
md.set_conv_backend(default_backend)
-- bf16 (md.set_precision("bf16")): every convolution's x, w and dy are
-- rounded to 8 mantissa bits (2^-9 = 2e-3 relative per operand), sums in
-- fp32. Through the fixture's depth the worst tensor measured 2.1e-2 (a
-- bias gradient of the first block); 5e-2 leaves about 2.5x room. It
-- catches a wrong bf16 pass (off by O(1)); subtle errors are the fp32 rows'.
local BF16_TOL = 5e-2
if pcall(md.set_precision, "bf16") then
  engines[#engines + 1] = { name = "dnnl_bf16", backend = "dnnl_bf16", tol = BF16_TOL }
end
md.set_precision("fp32")
md.set_conv_backend(default_backend)

local function run_on(engine)
  md.set_conv_backend(engine.backend)
  local model, _, fx = md.load(FIXTURE)
  local out = model(fx.x, fx.t, fx.y)
  local loss = md.mse_loss(out, fx.target)
  loss:backward()
  md.set_conv_backend(default_backend)
  local got = { { "output", out, fx.output }, { "loss", loss:reshape(1), fx.loss } }
  for _, pair in ipairs(model:named_parameters()) do
    local name, p = pair[1], pair[2]
    got[#got + 1] = { "grad." .. name, p.grad, fx["grad." .. name] }
  end
  return got
end

T.test("the fixture holds a non-zero gradient for every parameter and nothing else", function()
  local model, meta, fx = md.load(FIXTURE)
  T.eq(meta.model, "unet")
  local params = model:state_dict()
  for name, t in pairs(fx) do
    if name:sub(1, 5) == "grad." then T.truthy(params[name:sub(6)], "a gradient for no parameter: " .. name) end
  end
  for name in pairs(params) do
    local ref = fx["grad." .. name]
    T.truthy(ref, "fixture has no gradient for " .. name)
    -- a zero reference (a zero-initialised layer left at zero) would prove nothing
    T.truthy(ref:abs():max():item() > 0, "grad." .. name .. " is zero in the fixture")
  end
end)

T.test("md.core.dnnl_conv_kernel names the kernel, and no Winograd when not allowed", function()
  if #engines == 1 then return end
  local direct = md.core.dnnl_conv_kernel(8, 16, 28, 28, 16, 3, 1, 1, "dnnl_direct")
  T.truthy(type(direct) == "string" and not direct:find("wino"), tostring(direct))
  T.truthy(type(md.core.dnnl_conv_kernel(8, 16, 28, 28, 16, 3, 1, 1, "dnnl")) == "string")
  T.errors(function() md.core.dnnl_conv_kernel(8, 16, 2, 2, 16, 7, 1, 1, "dnnl") end, "not a valid convolution shape")
end)

for _, engine in ipairs(engines) do
  T.test(("output, loss and every gradient match PyTorch on %s"):format(engine.name), function()
    local got = run_on(engine)
    local errors, worst, worst_name = {}, 0, nil
    for _, row in ipairs(got) do
      local name, mine, ref = row[1], row[2], row[3]
      T.truthy(mine, "moondust computed no " .. name)
      local e = rel_err(mine, ref)
      if not (e <= worst) then worst, worst_name = e, name end -- NaN too
      if not (e <= engine.tol) then errors[#errors + 1] = { name = name, err = e } end
    end
    table.sort(errors, function(a, b) return not (a.err <= b.err) end) -- worst first, NaN first
    local listed = {}
    for i, row in ipairs(errors) do listed[i] = ("%s %.3g"):format(row.name, row.err) end
    T.truthy(#errors == 0, ("%s: %d tensors over tolerance %g (relative error on norms), worst first: %s")
      :format(engine.name, #errors, engine.tol, table.concat(listed, ", ")))
    -- which kernel the 28x28 16->16 3x3 layers ran: Winograd needs AVX-512,
    -- and oneDNN falls back to the direct kernel without a word
    local kernel = engine.backend == "im2col" and "im2col"
      or md.core.dnnl_conv_kernel(8, 16, 28, 28, 16, 3, 1, 1, engine.backend)
    print(("# %s (28x28 3x3 layers: %s): worst relative error %.3g (%s), tolerance %g")
      :format(engine.name, kernel, worst, worst_name, engine.tol))
  end)
end

T.finish()
