-- md.nn modules and md.optim: parameter counts of the reference U-Net,
-- state_dict round trips, training that lowers a loss, forward shapes.
local T = require "harness"
local md = require "moondust"
local nn, optim = md.nn, md.optim

T.test("reference U-Net parameter counts", function()
  local tiny = nn.UNet { model_channels = 32 }
  T.eq(tiny:num_parameters(), 1624577, "tiny")
  local small = nn.UNet { model_channels = 64 }
  T.eq(small:num_parameters(), 6472705, "small")
end)

T.test("named parameters follow guided-diffusion's names", function()
  local m = nn.UNet { model_channels = 32 }
  local names = {}
  for _, pair in ipairs(m:named_parameters()) do names[pair[1]] = pair[2] end
  T.truthy(names["time_embed.0.weight"])
  T.truthy(names["label_emb.weight"])
  T.eq(names["label_emb.weight"]:size(1), 11, "10 classes + no class")
  T.truthy(names["input_blocks.1.0.in_layers.2.weight"])
  T.truthy(names["middle_block.1.qkv.weight"])
  T.truthy(names["output_blocks.2.2.conv.weight"], "attention then upsample in the last block of a level")
  T.truthy(names["output_blocks.5.1.conv.weight"], "upsample at 14x14")
  T.eq(names["out.2.weight"]:abs():sum():item(), 0, "zero-initialised output conv")
end)

T.test("U-Net forward keeps the input shape at 28, 32 and 64", function()
  for _, size in ipairs { 28, 32, 64 } do
    local m = nn.UNet { model_channels = 16, num_head_channels = 16, attention_resolutions = { 4 } }
    local x = md.randn { 2, 1, size, size }
    local y = md.no_grad(function() return m(x, md.tensor { 3, 999 }, md.tensor { 1, 10 }) end)
    T.eq(table.concat(y:shape(), "x"), "2x1x" .. size .. "x" .. size)
  end
end)

T.test("scale-shift ResBlock and EncoderUNet give logits", function()
  local m = nn.EncoderUNet { model_channels = 16, num_head_channels = 16, use_scale_shift_norm = true,
                             out_channels = 10 }
  local out = md.no_grad(function() return m(md.randn { 3, 1, 28, 28 }, md.tensor { 0, 10, 500 }) end)
  T.eq(table.concat(out:shape(), "x"), "3x10")
end)

-- CLIP's attention pooling written out in plain Lua over the module's own
-- parameters: mean token first, positional embedding, per-head softmax
-- attention of the mean token over all tokens, then the output projection.
local function naive_attention_pool(pool, x)
  local xs, n, c = x:totable(), x:size(1), x:size(2)
  local h, w = x:size(3), x:size(4)
  local pe = pool.positional_embedding:totable()
  local wq, bq = pool.qkv_proj.weight:totable(), pool.qkv_proj.bias:totable()
  local wo, bo = pool.c_proj.weight:totable(), pool.c_proj.bias:totable()
  local heads = pool.num_heads
  local d = c // heads
  local out = {}
  for b = 1, n do
    local tok = {} -- tok[j][ch], j = 1 the mean token
    for j = 1, h * w + 1 do tok[j] = {} end
    for ch = 1, c do
      local s = 0
      for i = 1, h do for k = 1, w do s = s + xs[b][ch][i][k] end end
      tok[1][ch] = s / (h * w) + pe[ch][1]
      for i = 1, h do for k = 1, w do tok[(i - 1) * w + k + 1][ch] = xs[b][ch][i][k] + pe[ch][(i - 1) * w + k + 1] end end
    end
    local function proj(j, row)
      local s = bq[row]
      for ch = 1, c do s = s + wq[row][ch][1][1] * tok[j][ch] end
      return s
    end
    local pooled = {}
    for hd = 0, heads - 1 do
      local scores, mx = {}, -math.huge
      for j = 1, #tok do
        local s = 0
        for e = 1, d do s = s + proj(1, hd * d + e) * proj(j, c + hd * d + e) end
        scores[j] = s / math.sqrt(d)
        mx = math.max(mx, scores[j])
      end
      local z = 0
      for j = 1, #tok do scores[j] = math.exp(scores[j] - mx); z = z + scores[j] end
      for e = 1, d do
        local v = 0
        for j = 1, #tok do v = v + scores[j] / z * proj(j, 2 * c + hd * d + e) end
        pooled[hd * d + e] = v
      end
    end
    out[b] = {}
    for o = 1, #bo do
      local s = bo[o]
      for ch = 1, c do s = s + wo[o][ch][1][1] * pooled[ch] end
      out[b][o] = s
    end
  end
  return md.tensor(out)
end

T.test("AttentionPool2d matches a naive reference and its gradients", function()
  md.manual_seed(3)
  local pool = nn.AttentionPool2d(6, 4, 2, 3)
  local x = md.randn { 2, 4, 2, 3 }
  T.near(md.no_grad(function() return pool(x) end), naive_attention_pool(pool, x), 1e-5)
  local wsum = md.randn { 2, 3 }
  T.gradcheck(function(xx, pe) pool.positional_embedding = pe; return (pool(xx) * wsum):sum() end,
    { x, pool.positional_embedding }, { eps = 1e-2, tol = 2e-2 })
  T.errors(function() pool(md.randn { 1, 4, 3, 3 }) end, "built for 6 positions, got a 3x3 map")
  T.errors(function() nn.AttentionPool2d(6, 5, 2, 3) end, "5 channels do not split into heads of 2")
end)

T.test("EncoderUNet with the attention pool: logits, save and load, checked options", function()
  local cfg = { model_channels = 8, channel_mult = { 1, 2 }, num_res_blocks = 1, attention_resolutions = { 2 },
                num_head_channels = 8, norm_groups = 4, out_channels = 3, pool = "attention", image_size = 9 }
  md.manual_seed(4)
  local m = nn.EncoderUNet(cfg)
  local x, t = md.randn { 2, 1, 9, 9 }, md.tensor { 0, 700 }
  local y = md.no_grad(function() return m(x, t) end)
  T.eq(table.concat(y:shape(), "x"), "2x3")
  local path = T.tempdir() .. "/clf.safetensors"
  md.save(path, m)
  local back = md.load(path)
  T.near(md.no_grad(function() return back(x, t) end), y, 0)
  T.errors(function() m(md.randn { 1, 1, 8, 8 }, md.tensor { 0 }) end, "built for 25 positions")
  cfg.image_size = nil
  T.errors(function() nn.EncoderUNet(cfg) end, "pool = 'attention' needs image_size")
  cfg.image_size, cfg.pool = 9, "atention"
  T.errors(function() nn.EncoderUNet(cfg) end, "did you mean 'attention'")
  T.errors(function() nn.UNet { pool = "attention" } end, "pool is an option of EncoderUNet")
end)

T.test("state_dict round trip and strict errors", function()
  md.manual_seed(1)
  local a = nn.Sequential(nn.Linear(4, 8), nn.SiLU(), nn.Linear(8, 2))
  md.manual_seed(2)
  local b = nn.Sequential(nn.Linear(4, 8), nn.SiLU(), nn.Linear(8, 2))
  local x = md.randn { 5, 4 }
  b:load_state_dict(a:state_dict())
  T.near(b(x), a(x), 0)
  T.errors(function() b:load_state_dict({ ["0.weight"] = md.zeros { 8, 4 } }) end, "missing '0.bias'")
  local sd = a:state_dict()
  sd["2.weight"] = md.zeros { 3, 8 }
  T.errors(function() b:load_state_dict(sd) end, "'2.weight' has shape [3, 8]")
  sd["2.weight"], sd.extra = a:state_dict()["2.weight"], md.zeros { 1 }
  T.errors(function() b:load_state_dict(sd) end, "unexpected 'extra'")
end)

T.test("AdamW lowers a regression loss; SGD with momentum too", function()
  for _, make in ipairs { function(p) return optim.AdamW(p, { lr = 1e-2 }) end,
                          function(p) return optim.SGD(p, { lr = 0.05, momentum = 0.9 }) end } do
    md.manual_seed(3)
    local net = nn.Sequential(nn.Linear(3, 16), nn.Tanh(), nn.Linear(16, 1))
    local x = md.randn { 64, 3 }
    local y = (x:sum(2, true)):sin()
    local opt = make(net)
    local first, last
    for i = 1, 150 do
      opt:zero_grad()
      local loss = md.mse_loss(net(x), y)
      loss:backward()
      opt:step()
      if i == 1 then first = loss:item() end
      last = loss:item()
    end
    T.truthy(last < 0.3 * first, ("loss %g -> %g"):format(first, last))
  end
end)

T.test("optimizer state round trip continues identically", function()
  local function run(steps, resume_from)
    md.manual_seed(4)
    local net = nn.Linear(3, 2)
    local opt = optim.AdamW(net, { lr = 1e-2 })
    if resume_from then
      net:load_state_dict(resume_from.model)
      opt:load_state_dict(resume_from.opt)
    end
    local x = md.full({ 4, 3 }, 0.5)
    for _ = 1, steps do
      opt:zero_grad()
      md.mse_loss(net(x), md.zeros { 4, 2 }):backward()
      opt:step()
    end
    return net, opt
  end
  local full = run(6)
  local half_net, half_opt = run(3)
  local resumed = run(3, { model = half_net:state_dict(), opt = half_opt:state_dict() })
  T.near(resumed.weight, full.weight, 1e-6)
end)

T.test("clip_grad_norm and EMA", function()
  local p = md.zeros { 2 }
  p:requires_grad(true)
  p.grad = md.tensor { 3, 4 }
  T.near(optim.clip_grad_norm({ p }, 1), 5, 1e-6)
  T.near(p.grad, { 0.6, 0.8 }, 1e-5)
  local net = nn.Linear(1, 1, false)
  md.no_grad(function() net.weight:fill_(1) end)
  local ema = optim.EMA(net, 0.5, { warmup = false })
  md.no_grad(function() net.weight:fill_(3) end)
  ema:update(net)
  T.near(ema.shadow[1], { 2 }, 1e-6)
  ema:copy_to(net)
  T.near(net.weight, { 2 }, 1e-6)
end)

T.test("lr_schedule: warm-up times a cosine or linear decay to final", function()
  local opt = optim.SGD(nn.Linear(1, 1), { lr = 0.1 })
  local sched = optim.lr_schedule(opt, { warmup = 4, decay = "cosine", final = 0.1 })
  T.near(opt.lr, 0.025, 1e-12) -- step 1 of 4 of the warm-up
  for _ = 1, 3 do sched:step() end
  T.near(opt.lr, 0.1, 1e-12)
  sched:set_progress(0.5)
  T.near(opt.lr, 0.1 * (0.1 + 0.9 * 0.5), 1e-12)
  sched:set_progress(2) -- clamped to the end of the budget
  T.near(opt.lr, 0.01, 1e-12)
  T.eq(sched:progress(), 1)
  local lin = optim.SGD(nn.Linear(1, 1), { lr = 1 })
  optim.lr_schedule(lin, { decay = "linear" }):set_progress(0.25)
  T.near(lin.lr, 0.75, 1e-12)
  local const = optim.SGD(nn.Linear(1, 1), { lr = 1 })
  optim.lr_schedule(const, {}):set_progress(0.9)
  T.near(const.lr, 1, 1e-12)
  T.errors(function() optim.lr_schedule(opt, { decay = "cosin" }) end, "cosine")
  T.errors(function() optim.lr_schedule(opt, { final = 2 }) end, "final")
  T.errors(function() optim.lr_schedule(opt, { final = 0.1 }) end, "final is where a decay ends")
  T.errors(function() optim.lr_schedule(opt, { warm_up = 2 }) end, "warmup")
  T.errors(function() sched:set_progress(0 / 0) end, "progress must be a number")
end)

T.finish()
