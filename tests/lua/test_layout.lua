-- The blocked layout (nChw16c) from Lua: oneDNN convolutions with 16k output
-- channels keep their results blocked, and the ops that know the layout
-- pass it on; everything a user can observe (values, views, indexing,
-- in-place writes, gradients) must be exactly what plain NCHW gives.
local T = require "harness"
local md = require "moondust"

md.manual_seed(11)
if not pcall(md.set_conv_backend, "dnnl") then
  T.test("blocked layout needs oneDNN (skipped)", function() end)
  T.finish()
  return
end

local function rel_err(a, b)
  return ((a - b):pow(2):sum() / (b:pow(2):sum() + 1e-30)):item() ^ 0.5
end

-- the same computation on both engines: im2col never produces blocked tensors
local function on_engines(fn)
  local out = {}
  for i, e in ipairs { "im2col", "dnnl" } do
    md.set_conv_backend(e)
    md.manual_seed(5)
    out[i] = { fn() }
  end
  md.set_conv_backend("dnnl")
  return out[1], out[2]
end

T.test("a blocked conv output reads, views, indexes and prints like NCHW", function()
  local x, w = md.randn { 2, 3, 5, 5 }, md.randn { 16, 3, 3, 3 }
  local plain, blocked = on_engines(function() return md.conv2d(x, w, nil, 1, 1) end)
  local p, b = plain[1], blocked[1]
  T.eq(p:layout(), "nchw")
  T.eq(b:layout(), "nChw16c")
  T.near(b, p, 1e-5)
  T.near(b:view(2, 16, 25), p:view(2, 16, 25), 1e-5)
  T.near(b[2], p[2], 1e-5)
  T.near(b:sum(2), p:sum(2), 1e-4)
  T.near(b:permute(1, 3, 4, 2), p:permute(1, 3, 4, 2), 1e-5)
  T.eq(b:size(2), 16)
  T.eq(#b, 2)
  -- every value printed (under 1000 elements), as a plain tensor of the same values prints
  T.eq(tostring(b), tostring(md.core.from_flat(b:flat(), b:shape())))
  T.truthy(#tostring(b) > 800 * 8, "all values printed")
  -- pointwise ops, cat along channels, upsampling and group norm keep the
  -- layout and the values; other ops and mixed layouts work in NCHW
  local function same(got, want, layout)
    T.eq(got:layout(), layout)
    T.near(got, want, 1e-4)
  end
  same(md.cat({ b, b:silu() }, 2), md.cat({ p, p:silu() }, 2), "nChw16c")
  same(md.upsample_nearest(b, 2), md.upsample_nearest(p, 2), "nChw16c")
  same(b * b + b, p * p + p, "nChw16c")
  same(md.group_norm(b, 4, nil, nil, 1e-5, "silu"), md.group_norm(p, 4, nil, nil, 1e-5, "silu"), "nChw16c")
  same(b + p, p * 2, "nchw")
  same(md.cat({ b, b }, 1), md.cat({ p, p }, 1), "nchw")
  same(b:view(2, 16, 25), p:view(2, 16, 25), "nchw")
end)

T.test("in-place writes to a blocked tensor change its values", function()
  local x, w = md.randn { 1, 2, 4, 4 }, md.randn { 32, 2, 3, 3 }
  local y = md.no_grad(function() return md.conv2d(x, w, nil, 1, 1) end)
  local ref = md.no_grad(function() return y:clone() end)
  md.no_grad(function() y:add_(1) end)
  T.near(y, ref + 1, 1e-5)
  md.no_grad(function() y:mul_(2) end)
  T.near(y, (ref + 1) * 2, 1e-5)
  md.no_grad(function() y:clamp_(-100, 100) end)
  T.eq(y:layout(), "nChw16c", "pointwise in-place ops keep the layout")
  T.near(y, ((ref + 1) * 2):clamp(-100, 100), 1e-5)
  md.no_grad(function() y:add_(ref) end) -- a tensor operand: done in plain layout
  T.eq(y:layout(), "nchw")
  T.near(y, ((ref + 1) * 2):clamp(-100, 100) + ref, 1e-5)
  local z = md.no_grad(function() return md.conv2d(x, w, nil, 1, 1) end)
  md.no_grad(function() z:zero_() end)
  T.near(z:abs():sum(), 0, 0)
end)

T.test("gradients through blocked layers equal the plain engine's", function()
  local function run()
    local x = md.randn { 2, 3, 8, 8 }
    local w1, w2, w3 = md.randn { 16, 3, 3, 3 } * 0.3, md.randn { 32, 32, 3, 3 } * 0.1, md.randn { 1, 32, 3, 3 } * 0.1
    local gw, gb, e = md.randn { 32 }, md.randn { 32 }, md.randn { 2, 32 }
    for _, t in ipairs { x, w1, w2, w3, gw, gb, e } do t:requires_grad(true) end
    local h = md.conv2d(x, w1, nil, 1, 1)
    h = md.cat({ h, h:silu() }, 2)                              -- 32 channels
    h = md.group_norm(h, 8, gw, gb, 1e-5, "silu", e)
    h = md.conv2d(md.upsample_nearest(h, 2), w2, nil, 2, 1) + h -- stride 2 back to 8x8, residual
    local out = md.conv2d(h, w3, nil, 1, 1)
    local loss = (out * out):mean()
    loss:backward()
    return loss, x.grad, w1.grad, w2.grad, w3.grad, gw.grad, gb.grad, e.grad
  end
  local p, b = on_engines(run)
  for i = 1, #p do T.truthy(rel_err(b[i], p[i]) < 1e-5, ("result %d: relative error %.3g"):format(i, rel_err(b[i], p[i]))) end
end)

T.test("md.grad with respect to a blocked activation", function()
  local x, w = md.randn { 2, 3, 6, 6 }, md.randn { 16, 3, 3, 3 }
  w:requires_grad(true)
  local function run()
    local h = md.conv2d(x, w, nil, 1, 1)
    local y = (h:silu() * h):sum()
    return md.grad(y, { h })[1]
  end
  local p, b = on_engines(run)
  T.truthy(rel_err(b[1], p[1]) < 1e-5)
  T.eq(w.grad, nil, "md.grad leaves parameter grads alone")
end)

-- loss(model) on both engines: the loss and every parameter's gradient
-- must agree (a NaN anywhere fails)
local function model_agrees(make_model, loss_of)
  local function run()
    local model = make_model()
    local loss = loss_of(model)
    loss:backward()
    local out = { loss }
    for _, prm in ipairs(model:parameters()) do out[#out + 1] = prm.grad end
    return table.unpack(out)
  end
  local p, b = on_engines(run)
  T.eq(#b, #p)
  local worst = 0
  for i = 1, #p do
    local e = rel_err(b[i], p[i])
    if not (e <= worst) then worst = e end -- NaN too
  end
  T.truthy(worst < 1e-4, ("worst relative error %.3g"):format(worst))
end

T.test("the U-Net gives the same loss and gradients on both engines", function()
  model_agrees(function()
    local model = md.nn.UNet { model_channels = 16, channel_mult = { 1, 2 }, num_res_blocks = 1,
                               attention_resolutions = { 2 }, num_head_channels = 16, num_classes = 3, norm_groups = 4 }
    -- the zero-initialised layers would hide most of the network: wake them up
    md.no_grad(function() for _, prm in ipairs(model:parameters()) do prm:add_(md.randn(prm:shape()) * 0.05) end end)
    return model
  end, function(model)
    local x, t, y = md.randn { 3, 1, 12, 12 }, md.tensor { 1, 500, 999 }, md.tensor { 0, 2, 3 }
    return md.mse_loss(model(x, t, y), md.randn { 3, 1, 12, 12 })
  end)
end)

-- two heads on one blocked activation, a stride-2 encoder, upsampling, and
-- a loss that adds two scalar losses
T.test("the convolutional VAE gives the same loss and gradients on both engines", function()
  model_agrees(function() return md.vae.VAE { kind = "conv", latent_channels = 4, decoder = "gaussian", sigma = 0.1 } end,
    function(ae) return ae:loss(md.rand { 4, 1, 28, 28 } * 2 - 1, { gen = md.Generator(2), kl_weight = 1e-3 }) end)
end)

T.finish()
