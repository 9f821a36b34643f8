-- The ADM U-Net (guided-diffusion's UNetModel) and its encoder half for
-- noisy classifiers, with the same module names as guided-diffusion so that
-- state_dict keys line up with PyTorch checkpoints of the same model.
local md = require "moondust"
local Module = require "moondust.nn.module"
local L = require "moondust.nn.layers"
local options = require "moondust.options"

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

-- norm_silu(norm, x [, shift]): a GroupNorm module's normalisation and SiLU in one pass.
U.norm_silu = norm_silu

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
  opts = options.check("ResBlock", opts, { norm_groups = "number", dropout = "number", use_scale_shift_norm = "boolean" }, 2)
  options.size("ResBlock", "channels", channels)
  options.size("ResBlock", "emb_channels", emb_channels)
  options.integer("ResBlock", "out_channels", out_channels, 1)
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
  opts = options.check("AttentionBlock", opts, { norm_groups = "number" }, 2)
  options.size("AttentionBlock", "channels", channels)
  options.size("AttentionBlock", "num_head_channels", num_head_channels)
  if channels % num_head_channels ~= 0 then
    error(("AttentionBlock: %d channels do not split into heads of %d"):format(channels, num_head_channels), 3)
  end
  self.num_heads = channels // num_head_channels
  self:add_module("norm", L.GroupNorm(opts.norm_groups or 32, channels))
  self:add_module("qkv", L.Conv2d(channels, 3 * channels, 1))
  self:add_module("proj_out", zeros_like_module(L.Conv2d(channels, channels, 1)))
end
function U.AttentionBlock:forward(x)
  local h = md.attention(self.qkv(self.norm(x)), self.num_heads)
  return x + self.proj_out(h)
end

-- Downsample(channels): a 3x3 convolution of stride 2.
U.Downsample = Module:extend("Downsample")
function U.Downsample:init(channels)
  options.size("Downsample", "channels", channels)
  self:add_module("op", conv3(channels, channels, 2)) end
function U.Downsample:forward(x) return self.op(x) end

-- Upsample(channels): nearest x2, then a 3x3 convolution.
U.Upsample = Module:extend("Upsample")
function U.Upsample:init(channels)
  options.size("Upsample", "channels", channels)
  self:add_module("conv", conv3(channels, channels)) end
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
U.defaults = defaults

-- The feature map size the pool sees: image_size over the downsamplings.
local function pool_positions(c)
  local s = c.image_size
  if type(s) == "number" then s = { s, s } end
  local f = 1 << (#c.channel_mult - 1)
  local h, w = (s[1] + f - 1) // f, (s[2] + f - 1) // f -- stride-2 3x3 convolutions with padding 1 round up
  return h * w
end

-- Every config name and its type. num_classes: a number, or nil / false
-- for an unconditional model; image_size: a number or {H, W}, optional.
local config_types = {
  in_channels = "number", out_channels = "number", model_channels = "number", channel_mult = "table",
  num_res_blocks = "number", attention_resolutions = "table", num_head_channels = "number", num_classes = true,
  dropout = "number", use_scale_shift_norm = "boolean", norm_groups = "number", image_size = true, pool = "string",
}

-- Caps far above any model of this toolkit, so that a config (a user's, or
-- one read from a checkpoint file) cannot ask for unbounded memory.
local MAX_CHANNELS, MAX_LEVELS, MAX_MULT, MAX_BLOCKS, MAX_CLASSES = 4096, 8, 64, 64, 1000000

-- A list (no holes, no named keys) of whole numbers in [lo, hi].
local function check_list(where, name, list, lo, hi)
  local n = #list
  for k in pairs(list) do
    if math.type(k) ~= "integer" or k < 1 or k > n then
      error(("%s: %s must be a list of whole numbers, got key %s"):format(where, name, tostring(k)), 4)
    end
  end
  for i, v in ipairs(list) do options.integer(where, ("%s[%d]"):format(name, i), v, lo, hi, 3) end
end

-- The U-Net halves the image at each of its #channel_mult - 1 downsamplings
-- and doubles it back, joining skips of equal size: height and width must be
-- multiples of 2^(levels - 1).
local function check_image_size(where, c, h, w, level)
  local f = 1 << (#c.channel_mult - 1)
  if h % f == 0 and w % f == 0 then return end
  local function nearest(v)
    local lo = v // f * f
    return lo == v and tostring(v) or lo == 0 and tostring(f) or ("%d or %d"):format(lo, lo + f)
  end
  local examples = {}
  for k = 1, 8 do examples[k] = f * k end
  error(("%s: cannot take %dx%d images: with %d levels in channel_mult (%d downsamplings) height and width must "
    .. "be multiples of %d (%s, ...); nearest: height %s, width %s"):format(where, h, w, #c.channel_mult,
    #c.channel_mult - 1, f, table.concat(examples, ", "), nearest(h), nearest(w)), level + 1)
end

-- The config with defaults, every value checked by name (types, ranges,
-- divisibility). overrides replace defaults (the EncoderUNet's).
function U.config(where, cfg, overrides, skips)
  options.check(where, cfg, config_types, 2)
  local c = {}
  for k, v in pairs(defaults) do c[k] = v end
  for k, v in pairs(overrides or {}) do c[k] = v end
  for k, v in pairs(cfg or {}) do c[k] = v end
  -- num_classes stays false (not nil) for an unconditional model: a config
  -- saved in a checkpoint must not come back with the default 10 classes
  local size = options.size
  size(where, "in_channels", c.in_channels, 1, MAX_CHANNELS, 2)
  size(where, "out_channels", c.out_channels, 1, MAX_CHANNELS, 2)
  size(where, "model_channels", c.model_channels, 1, MAX_CHANNELS, 2)
  size(where, "num_res_blocks", c.num_res_blocks, 1, MAX_BLOCKS, 2)
  size(where, "num_head_channels", c.num_head_channels, 1, MAX_CHANNELS, 2)
  size(where, "norm_groups", c.norm_groups, 1, MAX_CHANNELS, 2)
  if c.num_classes ~= false then size(where, "num_classes", c.num_classes, 1, MAX_CLASSES, 2) end
  options.number(where, "dropout", c.dropout, 0, 1, 2)
  if skips and c.pool ~= nil then error(where .. ": pool is an option of EncoderUNet (the classifier's head)", 3) end
  if c.pool ~= nil then options.choice(where, "pool", c.pool, U.POOLS, 2) end
  if c.pool == "attention" and c.image_size == nil then
    error(where .. ": pool = 'attention' needs image_size (a number or {H, W}): its positional embedding has one row per position", 3)
  end
  if #c.channel_mult < 1 or #c.channel_mult > MAX_LEVELS then
    error(("%s: channel_mult must list 1 to %d levels, got %d"):format(where, MAX_LEVELS, #c.channel_mult), 3)
  end
  check_list(where, "channel_mult", c.channel_mult, 1, MAX_MULT)
  check_list(where, "attention_resolutions", c.attention_resolutions, 1, nil)
  -- every level's channel count must split into norm groups (and, where
  -- there is attention, into heads; the middle block always has it)
  local mc, ds = c.model_channels, 1
  local function divides(d, ch, what, name)
    if ch % d ~= 0 then
      error(("%s: %s (%d) must divide the channels of every %s; %s has %d"):format(where, name, d, what,
        ch == mc and "model_channels" or ("level %d (model_channels x %d)"):format(ds, ch // mc), ch), 4)
    end
  end
  divides(c.norm_groups, mc, "level", "norm_groups")
  for level, mult in ipairs(c.channel_mult) do
    divides(c.norm_groups, mult * mc, "level", "norm_groups")
    if contains(c.attention_resolutions, ds) or level == #c.channel_mult then
      divides(c.num_head_channels, mult * mc, "attention block", "num_head_channels")
    end
    if level < #c.channel_mult then ds = ds * 2 end
  end
  if c.image_size ~= nil then
    local s = c.image_size
    if type(s) == "number" then s = { s, s } end
    if type(s) ~= "table" or #s ~= 2 then
      error(("%s: image_size must be a number or {height, width}, got %s"):format(where, type(c.image_size)), 3)
    end
    size(where, "image_size[1] (height)", s[1], 1, nil, 2)
    size(where, "image_size[2] (width)", s[2], 1, nil, 2)
    if skips then check_image_size(where, c, s[1], s[2], 3) end
  end
  return c
end

-- The blocks, from the config alone: the builder and the checkpoint check
-- (U.expected_shapes) both read this, so they cannot disagree.
local function plan(c, with_decoder)
  local mc = c.model_channels
  local p = { input = { { kind = "conv", cin = c.in_channels, cout = mc } }, output = {} }
  local chans, ch, ds = { mc }, mc, 1
  for level, mult in ipairs(c.channel_mult) do
    for _ = 1, c.num_res_blocks do
      p.input[#p.input + 1] = { kind = "res", cin = ch, cout = mult * mc, attn = contains(c.attention_resolutions, ds) }
      ch = mult * mc
      chans[#chans + 1] = ch
    end
    if level < #c.channel_mult then
      p.input[#p.input + 1] = { kind = "down", cin = ch, cout = ch }
      chans[#chans + 1] = ch
      ds = ds * 2
    end
  end
  p.middle = ch
  if with_decoder then
    for level = #c.channel_mult, 1, -1 do
      local mult = c.channel_mult[level]
      for i = 0, c.num_res_blocks do
        local up = level > 1 and i == c.num_res_blocks
        p.output[#p.output + 1] = { kind = "res", cin = ch + table.remove(chans), cout = mc * mult,
                                    attn = contains(c.attention_resolutions, ds), up = up }
        ch = mc * mult
        if up then ds = ds // 2 end
      end
    end
  end
  p.out = ch
  return p
end

local function build_block(self, b, c)
  if b.kind == "conv" then return U.EmbedSequential(L.Conv2d(b.cin, b.cout, 3, { padding = 1 })) end
  if b.kind == "down" then return U.EmbedSequential(U.Downsample(b.cin)) end
  local blk = U.EmbedSequential(U.ResBlock(b.cin, 4 * c.model_channels, b.cout, self.block_opts))
  if b.attn then blk:append(U.AttentionBlock(b.cout, c.num_head_channels, { norm_groups = c.norm_groups })) end
  if b.up then blk:append(U.Upsample(b.cout)) end
  return blk
end

-- The time embedding (sinusoidal, then Linear-SiLU-Linear), the class
-- embedding, the encoder levels and the middle block; shared by UNet and
-- EncoderUNet. Returns the plan.
local function build_encoder(self, c, with_decoder)
  local mc = c.model_channels
  local emb = 4 * mc
  local p = plan(c, with_decoder)
  self.block_opts = { norm_groups = c.norm_groups, dropout = c.dropout, use_scale_shift_norm = c.use_scale_shift_norm }
  self:add_module("time_embed", L.Sequential(L.Linear(mc, emb), L.SiLU(), L.Linear(emb, emb)))
  if c.num_classes then self:add_module("label_emb", L.Embedding(c.num_classes + 1, emb)) end
  local input_blocks = self:add_module("input_blocks", L.Sequential())
  for _, b in ipairs(p.input) do input_blocks:append(build_block(self, b, c)) end
  local ch = p.middle
  self:add_module("middle_block", U.EmbedSequential(U.ResBlock(ch, emb, ch, self.block_opts),
    U.AttentionBlock(ch, c.num_head_channels, { norm_groups = c.norm_groups }), U.ResBlock(ch, emb, ch, self.block_opts)))
  return p
end

-- name -> shape of the main weight of every block, from the config alone:
-- md.load compares a file's tensors with it before building anything.
function U.expected_shapes(c, with_decoder)
  local p = plan(c, with_decoder)
  local mc, emb = c.model_channels, 4 * c.model_channels
  local out = { ["time_embed.0.weight"] = { emb, mc }, ["time_embed.2.weight"] = { emb, emb },
                ["middle_block.0.in_layers.2.weight"] = { p.middle, p.middle, 3, 3 } }
  if c.num_classes then out["label_emb.weight"] = { c.num_classes + 1, emb } end
  local suffix = { conv = "weight", down = "op.weight", res = "in_layers.2.weight" }
  for _, part in ipairs { "input", "output" } do
    for i, b in ipairs(p[part]) do
      out[("%s_blocks.%d.0.%s"):format(part, i - 1, suffix[b.kind])] = { b.cout, b.cin, 3, 3 }
    end
  end
  if with_decoder then out["out.2.weight"] = { c.out_channels, p.out, 3, 3 }
  elseif c.pool == "attention" then
    out["out.2.c_proj.weight"] = { c.out_channels, p.middle, 1, 1 }
    out["out.2.positional_embedding"] = { p.middle, pool_positions(c) + 1 }
  else out["out.3.weight"] = { c.out_channels, p.middle } end
  return out
end

-- Timesteps are model timesteps 0..T-1, T the model's schedule's (attached
-- by the trainer; 1000, every schedule's default, when none is).
function U.num_timesteps(model)
  local s = model.schedule
  return type(s) == "table" and (s.parent_T or s.T) or 1000
end

local function check_timesteps(self, t, n)
  local T = U.num_timesteps(self)
  local where = self.__name
  if type(t) == "number" then
    if not (t >= 0 and t < T) then error(("%s: timestep %s is outside [0, %d)"):format(where, tostring(t), T), 4) end
    return
  end
  if not md.is_tensor(t) then error(("%s: t must be a number or a tensor of timesteps, got %s"):format(where, type(t)), 4) end
  if t:dim() ~= 1 or t:size(1) ~= n then
    error(("%s: t holds %d timesteps for a batch of %d (pass a number for one timestep for the whole batch)"):format(
      where, t:numel(), n), 4)
  end
  if n == 0 then return end
  local sum, lo, hi = t:sum():item(), t:min():item(), t:max():item()
  if sum ~= sum or sum == math.huge or sum == -math.huge then error(where .. ": t holds NaN or Inf timesteps", 4) end
  if not (lo >= 0 and hi < T) then
    error(("%s: timesteps must be in [0, %d), got %s to %s"):format(where, T, tostring(lo), tostring(hi)), 4)
  end
end

-- The conditioning vector: time embedding plus class embedding. t may be a
-- tensor of one timestep per image or a number for the whole batch; y a
-- tensor of labels, a number for the whole batch, or nil for "no class".
local function embed(self, x, t, y)
  local c = self.config
  local n = x:size(1)
  check_timesteps(self, t, n)
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
-- num_classes), dropout, use_scale_shift_norm, norm_groups, image_size}.
-- Height and width must be multiples of 2^(#channel_mult - 1): checked at
-- construction when image_size (a number or {H, W}) is given, and at
-- every forward.
U.UNet = Module:extend("UNet")
function U.UNet:init(cfg)
  local c = U.config("UNet", cfg, nil, true)
  self.config = c
  if type(c.image_size) == "number" then self.image_size = c.image_size end
  local p = build_encoder(self, c, true)
  local output_blocks = self:add_module("output_blocks", L.Sequential())
  for _, b in ipairs(p.output) do output_blocks:append(build_block(self, b, c)) end
  self:add_module("out", L.Sequential(L.GroupNorm(c.norm_groups, p.out), L.SiLU(),
    zeros_like_module(L.Conv2d(p.out, c.out_channels, 3, { padding = 1 }))))
end

-- GroupNorm -> SiLU -> conv, the two first fused
local function out_layers(seq, h) return seq:get(3)(norm_silu(seq:get(1), h)) end

-- x: N x C x H x W, t: N timesteps (0..T-1) or a number, y: N labels or a
-- number or nil. Returns the model output (the predicted noise).
function U.UNet:forward(x, t, y)
  if x:dim() == 4 then check_image_size("UNet", self.config, x:size(3), x:size(4), 2) end
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

-- GlobalAvgPool(): [N, C, H, W] -> [N, C], the mean over positions.
U.GlobalAvgPool = Module:extend("GlobalAvgPool")
function U.GlobalAvgPool:forward(x) return md.adaptive_avg_pool2d_1(x) end

-- AttentionPool2d(positions, channels, num_head_channels, out_channels):
-- CLIP's attention pooling, as guided-diffusion's classifiers use it. The
-- mean of the positions joins them as one more token, every token gets a
-- learned positional embedding, one multi-head self-attention layer mixes
-- them, and the mean token's output, projected to out_channels, is the
-- result: [N, C, H, W] (H * W = positions) -> [N, out_channels].
U.AttentionPool2d = Module:extend("AttentionPool2d")
function U.AttentionPool2d:init(positions, channels, num_head_channels, out_channels)
  options.size("AttentionPool2d", "positions", positions)
  options.size("AttentionPool2d", "channels", channels)
  options.size("AttentionPool2d", "num_head_channels", num_head_channels)
  options.size("AttentionPool2d", "out_channels", out_channels)
  if channels % num_head_channels ~= 0 then
    error(("AttentionPool2d: %d channels do not split into heads of %d"):format(channels, num_head_channels), 3)
  end
  self.positions, self.num_heads = positions, channels // num_head_channels
  self:add_parameter("positional_embedding", md.randn { channels, positions + 1 } / math.sqrt(channels))
  self:add_module("qkv_proj", L.Conv2d(channels, 3 * channels, 1))
  self:add_module("c_proj", L.Conv2d(channels, out_channels, 1))
end
local FIRST_TOKEN = md.tensor { 0 }
function U.AttentionPool2d:forward(x)
  local n, c = x:size(1), x:size(2)
  local l = x:size(3) * x:size(4)
  if l ~= self.positions then
    error(("AttentionPool2d: built for %d positions, got a %dx%d map (%d); the encoder's image_size must match the "
      .. "images"):format(self.positions, x:size(3), x:size(4), l), 3)
  end
  -- tokens as [N, C, L + 1, 1], so that the 1x1 convolutions and md.attention apply
  local flat = x:reshape(n, c, l, 1)
  local tokens = md.cat({ flat:mean(3, true), flat }, 3) + self.positional_embedding:reshape(1, c, l + 1, 1)
  local h = md.attention(self.qkv_proj(tokens), self.num_heads)
  -- the 1x1 projection acts per token: project only the one that is kept
  return self.c_proj(md.index_select(h, 3, FIRST_TOKEN)):reshape(n, -1)
end

U.encoder_defaults = { num_classes = false, out_channels = 10, pool = "adaptive" }
U.POOLS = { "adaptive", "attention" }


-- The encoder half with the middle block, pooled to out_channels logits:
-- guided-diffusion's EncoderUNetModel, for classifiers of noisy images.
-- pool = "adaptive" (the mean over positions, then a linear layer) or
-- "attention" (AttentionPool2d; needs image_size). forward(x, t). Not
-- class-conditional unless num_classes is given; out_channels defaults to 10.
U.EncoderUNet = Module:extend("EncoderUNet")
function U.EncoderUNet:init(cfg)
  local c = U.config("EncoderUNet", cfg, U.encoder_defaults, false)
  self.config = c
  local p = build_encoder(self, c, false)
  local head
  if c.pool == "attention" then
    head = U.AttentionPool2d(pool_positions(c), p.middle, c.num_head_channels, c.out_channels)
  else
    head = U.GlobalAvgPool()
  end
  self:add_module("out", L.Sequential(L.GroupNorm(c.norm_groups, p.middle), L.SiLU(), head))
  if c.pool == "adaptive" then self.out:append(zeros_like_module(L.Linear(p.middle, c.out_channels))) end
end

function U.EncoderUNet:forward(x, t, y)
  local emb = embed(self, x, t or 0, y)
  local h = x
  for i = 0, self.input_blocks.n - 1 do h = self.input_blocks[tostring(i)](h, emb) end
  return self.out(self.middle_block(h, emb))
end

return U
