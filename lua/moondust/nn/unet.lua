-- The ADM U-Net (guided-diffusion's UNetModel) and its encoder half for
-- noisy classifiers, with the same module names as guided-diffusion so that
-- state_dict keys line up with PyTorch checkpoints of the same model.
local md = require "moondust"
local Module = require "moondust.nn.module"
local L = require "moondust.nn.layers"

local U = {}

local function zeros_like_module(m)
  md.no_grad(function()
    for _, p in ipairs(m:parameters()) do p:zero_() end
  end)
  return m
end

-- GroupNorm then SiLU, fused into one C pass (same parameters as the two
-- modules, so state_dict names do not change); shift [N, C], when given, is
-- added to x first, in the same pass.
local function norm_silu(norm, x, shift)
  return md.group_norm(x, norm.groups, norm.weight, norm.bias, norm.eps, "silu", shift)
end

local function conv3(cin, cout, stride)
  return L.Conv2d(cin, cout, 3, { stride = stride or 1, padding = 1 })
end

-- A Sequential whose children may take the timestep embedding: ResBlocks get
-- (x, emb), everything else gets x.
U.EmbedSequential = L.Sequential:extend("EmbedSequential")
function U.EmbedSequential:forward(x, emb)
  for i = 0, self.n - 1 do
    local m = self[tostring(i)]
    if m.takes_embedding then x = m(x, emb) else x = m(x) end
  end
  return x
end

-- ResBlock: GroupNorm -> SiLU -> conv, plus the projected embedding (or a
-- scale and shift of the second norm), GroupNorm -> SiLU -> dropout -> conv
-- (zero-initialised), and a 1x1 conv on the skip when channels change.
U.ResBlock = Module:extend("ResBlock")
U.ResBlock.takes_embedding = true
function U.ResBlock:init(channels, emb_channels, out_channels, opts)
  opts = opts or {}
  local groups = opts.norm_groups or 32
  out_channels = out_channels or channels
  self.channels, self.out_channels = channels, out_channels
  self.use_scale_shift_norm = opts.use_scale_shift_norm or false
  self:add_module("in_layers", L.Sequential(L.GroupNorm(groups, channels), L.SiLU(), conv3(channels, out_channels)))
  self:add_module("emb_layers", L.Sequential(L.SiLU(),
    L.Linear(emb_channels, self.use_scale_shift_norm and 2 * out_channels or out_channels)))
  self:add_module("out_layers", L.Sequential(L.GroupNorm(groups, out_channels), L.SiLU(),
    L.Dropout(opts.dropout or 0), zeros_like_module(conv3(out_channels, out_channels))))
  if out_channels == channels then
    self:add_module("skip_connection", L.Identity())
  else
    self:add_module("skip_connection", L.Conv2d(channels, out_channels, 1))
  end
end

function U.ResBlock:forward(x, emb)
  local inl, out = self.in_layers, self.out_layers
  local h = inl:get(3)(norm_silu(inl:get(1), x))
  local e = self.emb_layers(emb)
  local n, c = e:size(1), self.out_channels
  if self.use_scale_shift_norm then
    local halves = e:reshape(n, 2, c):transpose(1, 2) -- [2, N, C]
    local scale, shift = halves[1]:reshape(n, c, 1, 1), halves[2]:reshape(n, c, 1, 1)
    h = (out:get(1)(h) * (scale + 1) + shift):silu()
  else
    h = norm_silu(out:get(1), h, e)
  end
  h = out:get(4)(out:get(3)(h)) -- dropout, zero-initialised conv
  return self.skip_connection(x) + h
end

-- Self-attention over the H*W positions: GroupNorm -> 1x1 conv to q, k, v
-- -> fused multi-head attention -> zero-initialised 1x1 projection, residual.
U.AttentionBlock = Module:extend("AttentionBlock")
function U.AttentionBlock:init(channels, num_head_channels, opts)
  opts = opts or {}
  assert(channels % num_head_channels == 0,
    ("AttentionBlock: %d channels do not split into heads of %d"):format(channels, num_head_channels))
  self.num_heads = channels // num_head_channels
  self:add_module("norm", L.GroupNorm(opts.norm_groups or 32, channels))
  self:add_module("qkv", L.Conv2d(channels, 3 * channels, 1))
  self:add_module("proj_out", zeros_like_module(L.Conv2d(channels, channels, 1)))
end
function U.AttentionBlock:forward(x)
  local h = md.attention(self.qkv(self.norm(x)), self.num_heads)
  return x + self.proj_out(h)
end

U.Downsample = Module:extend("Downsample")
function U.Downsample:init(channels) self:add_module("op", conv3(channels, channels, 2)) end
function U.Downsample:forward(x) return self.op(x) end

U.Upsample = Module:extend("Upsample")
function U.Upsample:init(channels) self:add_module("conv", conv3(channels, channels)) end
function U.Upsample:forward(x) return self.conv(md.upsample_nearest(x, 2)) end

local function contains(list, v)
  for _, x in ipairs(list or {}) do if x == v then return true end end
  return false
end

local defaults = {
  in_channels = 1, out_channels = 1, model_channels = 32, channel_mult = { 1, 2, 2 },
  num_res_blocks = 2, attention_resolutions = { 4 }, num_head_channels = 32, num_classes = 10,
  dropout = 0, use_scale_shift_norm = false, norm_groups = 8,
}

local function with_defaults(cfg)
  local out = {}
  for k, v in pairs(defaults) do out[k] = v end
  for k, v in pairs(cfg or {}) do out[k] = v end
  if out.num_classes == false then out.num_classes = nil end
  return out
end
U.defaults = defaults

-- The time embedding (sinusoidal, then Linear-SiLU-Linear), the input conv and
-- the encoder levels; shared by UNet and EncoderUNet. Returns the channel
-- count of every skip and the final (channels, downsampling factor).
local function build_encoder(self, c)
  local mc = c.model_channels
  local emb = 4 * mc
  local block_opts = { norm_groups = c.norm_groups, dropout = c.dropout,
                       use_scale_shift_norm = c.use_scale_shift_norm }
  self.block_opts = block_opts
  self:add_module("time_embed", L.Sequential(L.Linear(mc, emb), L.SiLU(), L.Linear(emb, emb)))
  if c.num_classes then self:add_module("label_emb", L.Embedding(c.num_classes + 1, emb)) end
  local input_blocks = self:add_module("input_blocks", L.Sequential())
  input_blocks:append(U.EmbedSequential(L.Conv2d(c.in_channels, mc, 3, { padding = 1 })))
  local chans, ch, ds = { mc }, mc, 1
  for level, mult in ipairs(c.channel_mult) do
    for _ = 1, c.num_res_blocks do
      local blk = U.EmbedSequential(U.ResBlock(ch, emb, mult * mc, block_opts))
      ch = mult * mc
      if contains(c.attention_resolutions, ds) then
        blk:append(U.AttentionBlock(ch, c.num_head_channels, block_opts))
      end
      input_blocks:append(blk)
      chans[#chans + 1] = ch
    end
    if level < #c.channel_mult then
      input_blocks:append(U.EmbedSequential(U.Downsample(ch)))
      chans[#chans + 1] = ch
      ds = ds * 2
    end
  end
  self:add_module("middle_block", U.EmbedSequential(U.ResBlock(ch, emb, ch, block_opts),
    U.AttentionBlock(ch, c.num_head_channels, block_opts), U.ResBlock(ch, emb, ch, block_opts)))
  return chans, ch, ds
end

-- The conditioning vector: time embedding plus class embedding. y may be a
-- tensor of labels, a number for the whole batch, or nil for "no class".
local function embed(self, x, t, y)
  local c = self.config
  local n = x:size(1)
  if type(t) == "number" then t = md.full({ n }, t) end
  local emb = self.time_embed(md.timestep_embedding(t, c.model_channels))
  if c.num_classes then
    if y == nil then y = c.num_classes end
    if type(y) == "number" then y = md.full({ n }, y) end
    emb = emb + self.label_emb(y)
  end
  return emb
end

-- md.nn.UNet{in_channels, out_channels, model_channels, channel_mult,
-- num_res_blocks, attention_resolutions (downsampling factors, as in
-- guided-diffusion: {4} is 7x7 at 28x28), num_head_channels, num_classes
-- (nil or false: unconditional; otherwise one extra "no class" row, index
-- num_classes), dropout, use_scale_shift_norm, norm_groups}
U.UNet = Module:extend("UNet")
function U.UNet:init(cfg)
  local c = with_defaults(cfg)
  self.config = c
  local mc = c.model_channels
  local chans, ch, ds = build_encoder(self, c)
  local output_blocks = self:add_module("output_blocks", L.Sequential())
  for level = #c.channel_mult, 1, -1 do
    local mult = c.channel_mult[level]
    for i = 0, c.num_res_blocks do
      local skip = table.remove(chans)
      local blk = U.EmbedSequential(U.ResBlock(ch + skip, 4 * mc, mc * mult, self.block_opts))
      ch = mc * mult
      if contains(c.attention_resolutions, ds) then
        blk:append(U.AttentionBlock(ch, c.num_head_channels, self.block_opts))
      end
      if level > 1 and i == c.num_res_blocks then
        blk:append(U.Upsample(ch))
        ds = ds // 2
      end
      output_blocks:append(blk)
    end
  end
  self:add_module("out", L.Sequential(L.GroupNorm(c.norm_groups, ch), L.SiLU(),
    zeros_like_module(L.Conv2d(mc, c.out_channels, 3, { padding = 1 }))))
end

-- x: N x C x H x W, t: N timesteps (0..T-1) or a number, y: N labels or a
-- number or nil. Returns the model output (the predicted noise).
-- GroupNorm -> SiLU -> conv, the two first fused
local function out_layers(seq, h) return seq:get(3)(norm_silu(seq:get(1), h)) end

function U.UNet:forward(x, t, y)
  local emb = embed(self, x, t, y)
  local hs, h = {}, x
  for i = 0, self.input_blocks.n - 1 do
    h = self.input_blocks[tostring(i)](h, emb)
    hs[#hs + 1] = h
  end
  h = self.middle_block(h, emb)
  for i = 0, self.output_blocks.n - 1 do
    h = self.output_blocks[tostring(i)](md.cat({ h, table.remove(hs) }, 2), emb)
  end
  return out_layers(self.out, h)
end

U.GlobalAvgPool = Module:extend("GlobalAvgPool")
function U.GlobalAvgPool:forward(x) return md.adaptive_avg_pool2d_1(x) end

-- The encoder half with the middle block, pooled to out_channels logits:
-- guided-diffusion's EncoderUNetModel (pool="adaptive"), for classifiers of
-- noisy images. forward(x, t).
U.EncoderUNet = Module:extend("EncoderUNet")
function U.EncoderUNet:init(cfg)
  cfg = cfg or {}
  local c = with_defaults(cfg)
  c.num_classes = cfg.num_classes -- a classifier is not class-conditional unless asked
  c.out_channels = cfg.out_channels or 10
  self.config = c
  local _, ch = build_encoder(self, c)
  self:add_module("out", L.Sequential(L.GroupNorm(c.norm_groups, ch), L.SiLU(), U.GlobalAvgPool(),
    zeros_like_module(L.Linear(ch, c.out_channels))))
end

function U.EncoderUNet:forward(x, t, y)
  local emb = embed(self, x, t or 0, y)
  local h = x
  for i = 0, self.input_blocks.n - 1 do h = self.input_blocks[tostring(i)](h, emb) end
  return self.out(self.middle_block(h, emb))
end

return U
