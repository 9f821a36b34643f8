-- Nothing fails silently: options tables, numbers, sizes, CLI flags,
-- checkpoints and loaders off the golden path give clear errors.
local T = require "harness"
local md = require "moondust"

local dir = os.tmpname()
os.remove(dir)
md.core.mkdir_p(dir)
local function path(name) return dir .. "/" .. name end
local function write(p, s) local f = assert(io.open(p, "wb")); f:write(s); f:close() end

local tiny = { model_channels = 8, channel_mult = { 1, 2 }, num_res_blocks = 1, num_head_channels = 8,
               norm_groups = 4, attention_resolutions = {} }
local function tiny_cfg(extra)
  local c = {}
  for k, v in pairs(tiny) do c[k] = v end
  for k, v in pairs(extra or {}) do c[k] = v end
  return c
end

T.test("a misspelled option is an error naming the nearest", function()
  T.errors(function() md.nn.UNet { model_chanels = 16 } end, "did you mean 'model_channels'")
  local m = md.nn.Linear(2, 1)
  T.errors(function() md.optim.AdamW(m, { learning_rate = 1e-3 }) end, "unknown option 'learning_rate'")
  T.errors(function() md.optim.SGD(m, { momentun = 0.9 }) end, "did you mean 'momentum'")
  T.errors(function() md.optim.EMA(m, 0.9, { warmpu = false }) end, "did you mean 'warmup'")
  T.errors(function() md.nn.Conv2d(1, 1, 3, { paddng = 1 }) end, "did you mean 'padding'")
  T.errors(function() md.schedule.linear { beta_strat = 1e-4 } end, "did you mean 'beta_start'")
  T.errors(function() md.schedule.get("cosin") end, "did you mean 'cosine'")
  T.errors(function() md.data.fashion_mnist { splt = "test" } end, "did you mean 'split'")
  T.errors(function() md.data.loader({ images = md.zeros { 2, 1, 2, 2 }, labels = md.zeros { 2 }, n = 2 },
    { batchsize = 2 }) end, "did you mean 'batch_size'")
  T.errors(function() md.image.make_grid(md.zeros { 1, 1, 2, 2 }, { nrows = 2 }) end, "did you mean 'nrow'")
  T.errors(function() md.trainer.train { model = m, data = {}, stpes = 3 } end, "did you mean 'steps'")
  T.errors(function() md.vae.VAE { latnet = 4 } end, "did you mean 'latent'")
  T.errors(function() md.save(path("x.safetensors"), { a = md.zeros { 1 } }, nil, { allow_nan = true }) end,
    "unknown option 'allow_nan'")
end)

T.test("md.sample checks its options, labels and class names", function()
  local m = md.nn.UNet(tiny_cfg { num_classes = 3, image_size = 8 })
  m.image_size = 8
  m.classes = { "T-shirt/top", "Ankle boot", "Bag" }
  local base = { n = 2, steps = 2, progress = false, seed = 4 }
  local function with(extra)
    local o = {}
    for k, v in pairs(base) do o[k] = v end
    for k, v in pairs(extra) do o[k] = v end
    return o
  end
  T.errors(function() md.sample(m, with { gudiance = 3 }) end, "did you mean 'guidance'")
  T.errors(function() md.sample(m, 5) end, "expected an options table, got a number")
  T.errors(function() md.sample({ w = md.zeros { 2 } }, base) end, "expected a model")
  T.errors(function() md.sample(m, with { n = 0 }) end, "n must be at least 1")
  T.errors(function() md.sample(m, with { class = 3 }) end, "class must be 0 to 2")
  T.errors(function() md.sample(m, with { class = { 0, 1, 2 } }) end, "3 class labels for 2 images")
  T.errors(function() md.sample(m, with { steps = 1001 }) end, "steps must be 1 to 1000")
  T.errors(function() md.sample(m, with { sampler = "ddmi" }) end, "did you mean 'ddim'")
  T.errors(function() md.sample(m, with { class = "boots" }) end, "no class 'boots'")
  T.errors(function() md.sample(m, with { sampler = "ddpm", eta = 0.5 }) end, "eta is DDIM's")
  T.errors(function() md.sample(m, with { variance = "large" }) end, "variance is DDPM's")
  T.errors(function() md.sample(m, with { schedule = md.schedule.cosine { T = 50 }, T = 400 }) end,
    "T = 400, but the schedule has T = 50")
  local by_label = md.sample(m, with { class = 1 })
  T.near(md.sample(m, with { class = "ankle boot" }), by_label, 0, "a name, in any case")
  T.near(md.sample(m, with { class = { "T-shirt", "bag" } }), md.sample(m, with { class = { 0, 2 } }), 0, "a list of names")
  m.classes = nil
  T.errors(function() md.sample(m, with { class = "bag" }) end, "stores no class names")
  local u = md.nn.UNet(tiny_cfg { image_size = 8, num_classes = false })
  T.errors(function() md.sample(u, with { class = 1 }) end, "unconditional")
  m:train()
  T.errors(function() md.sample(m, with { cond_fn = function() error("stop here") end }) end, "stop here")
  T.truthy(m.training, "the model is back in training mode after an error")
end)

T.test("md.save(path, model) comes back from md.load ready to sample, in either argument order", function()
  local m = md.nn.UNet(tiny_cfg { num_classes = 3, image_size = 8 })
  m.image_size, m.classes, m.schedule = 8, { "a", "b", "c" }, md.schedule.cosine { T = 300 }
  md.save(path("own.safetensors"), m)
  md.save(m, path("own2.safetensors"))
  for _, name in ipairs { "own.safetensors", "own2.safetensors" } do
    local back = md.load(path(name))
    T.truthy(md.nn.Module.is_module(back), name .. " is a model")
    T.eq(back.schedule.T, 300)
    local opts = { n = 1, class = "b", steps = 2, progress = false }
    T.near(md.sample(back, opts), md.sample(m, opts), 0, "the same model")
  end
  local Tiny = md.nn.Module:extend("TinyUserNet")
  function Tiny:init(cfg) self.config = cfg; self.w = self:add_parameter("w", md.ones { cfg.k }) end
  function Tiny:forward(x) return x * self.w end
  md.checkpoint.register("tiny_user_net", Tiny, function(cfg) return Tiny(cfg) end)
  md.save(path("user.safetensors"), Tiny { k = 3 })
  local u = md.load(path("user.safetensors"))
  T.eq(getmetatable(u).__name, "TinyUserNet")
  T.eq(u.config.k, 3)
  T.errors(function() md.save(path("t.safetensors"), md.zeros { 2 }) end, "put the tensor in a table")
end)

T.test("U-Net sizes and numbers are checked by name at construction", function()
  T.errors(function() md.nn.UNet { model_channels = 0 } end, "model_channels must be 1 to 4096, got 0")
  T.errors(function() md.nn.UNet { model_channels = -20 } end, "model_channels must be 1 to 4096, got -20")
  T.errors(function() md.nn.UNet { num_res_blocks = 1.5 } end, "num_res_blocks must be a whole number")
  T.errors(function() md.nn.UNet { norm_groups = 0 } end, "norm_groups must be 1 to 4096, got 0")
  T.errors(function() md.nn.UNet(tiny_cfg { norm_groups = 3 }) end, "norm_groups (3) must divide")
  T.errors(function() md.nn.UNet { attention_resolutions = "a" } end, "attention_resolutions' must be a table")
  T.errors(function() md.nn.UNet { attention_resolutions = { 0 } } end, "attention_resolutions[1] must be at least 1")
  T.errors(function() md.nn.UNet { attention_resolutions = { x = 2 } } end, "list of whole numbers")
  T.errors(function() md.nn.UNet { channel_mult = {} } end, "channel_mult must list 1 to")
  T.errors(function() md.nn.UNet { num_head_channels = 24 } end, "num_head_channels (24) must divide")
  T.errors(function() md.nn.UNet { dropout = 1.5 } end, "dropout must be 0 to 1")
  T.errors(function() md.nn.UNet { num_res_blocks = 1e6 } end, "num_res_blocks must be 1 to 64")
  T.errors(function() md.nn.Conv2d(1, -3, 3) end, "out_channels must be at least 1, got -3")
  T.errors(function() md.nn.GroupNorm(3, 8) end, "3 groups do not divide 8 channels")
  T.errors(function() md.nn.Linear(4) end, "out_features is required")
  -- the default model is still guided-diffusion's, with 1,624,577 parameters
  T.eq(md.nn.UNet():num_parameters(), 1624577)
end)

T.test("image sizes the U-Net cannot take are caught with the sizes it can", function()
  local err = T.errors(function() md.nn.UNet { channel_mult = { 1, 2, 2 }, image_size = 10 } end,
    "cannot take 10x10 images")
  T.truthy(err:find("multiples of 4", 1, true) and err:find("nearest: height 8 or 12", 1, true), err)
  T.errors(function() md.nn.UNet { image_size = { 28, 0 } } end, "image_size[2] (width) must be at least 1")
  local m = md.nn.UNet(tiny_cfg()) -- no image_size: checked at forward, before any layer runs
  T.errors(function() m(md.zeros { 1, 1, 5, 6 }, 0) end, "cannot take 5x6 images")
  local ok = md.no_grad(function() return m(md.zeros { 1, 1, 6, 6 }, 0) end)
  T.eq(table.concat(ok:shape(), "x"), "1x1x6x6")
  -- the encoder half has no skips: any size
  local e = md.nn.EncoderUNet(tiny_cfg { image_size = 5 })
  T.eq(table.concat(md.no_grad(function() return e(md.zeros { 2, 1, 5, 5 }) end):shape(), "x"), "2x10")
end)

T.test("timesteps into the U-Net must be finite, in range, one per image", function()
  local m = md.nn.UNet(tiny_cfg())
  local x = md.zeros { 2, 1, 4, 4 }
  md.no_grad(function()
    T.errors(function() m(x, md.tensor { 0 / 0, 1 }) end, "NaN or Inf")
    T.errors(function() m(x, md.tensor { 1, 1e9 }) end, "timesteps must be in [0, 1000)")
    T.errors(function() m(x, md.tensor { -1, 1 }) end, "timesteps must be in [0, 1000)")
    T.errors(function() m(x, 1000) end, "timestep 1000 is outside [0, 1000)")
    T.truthy(T.errors(function() m(x, 0 / 0) end, "is outside [0, 1000)"):find("nan"))
    T.errors(function() m(x, md.tensor { 5 }) end, "1 timesteps for a batch of 2")
    -- a number is the explicit way to use one timestep for the whole batch
    T.near(m(x, 5), m(x, md.tensor { 5, 5 }), 0)
    m.schedule = md.schedule.linear { T = 10 }
    T.errors(function() m(x, 10) end, "outside [0, 10)")
  end)
end)

T.test("optimizer, schedule, data and image numbers are range-checked", function()
  local m = md.nn.Linear(2, 1)
  T.errors(function() md.optim.AdamW(m, { lr = 1e39 }) end, "lr must be 0 to 1000")
  T.errors(function() md.optim.AdamW(m, { lr = 0 / 0 }) end, "lr must be finite")
  T.errors(function() md.optim.AdamW(m, { betas = { 0.9 } }) end, "betas must be {beta1, beta2}")
  T.errors(function() md.optim.AdamW(m, { weight_decay = -1 }) end, "weight_decay must be at least 0")
  T.errors(function() md.optim.EMA(m, 1.5) end, "decay must be 0 to 1")
  T.errors(function() md.optim.clip_grad_norm(m, -1) end, "max_norm must be at least 0")
  T.errors(function() md.optim.warmup(md.optim.SGD(m), -5) end, "steps must be at least 0")
  T.errors(function() md.schedule.linear { T = 0 } end, "T must be 1 to")
  T.errors(function() md.schedule.cosine { T = 2.5 } end, "T must be a whole number")
  T.errors(function() md.data.fashion_mnist { split = "tset" } end, "did you mean 'test'")
  T.errors(function() md.data.fashion_mnist { limit = 0 } end, "limit must be at least 1")
  T.errors(function() md.data.loader({ images = md.zeros { 2, 1, 2, 2 }, labels = md.zeros { 2 }, n = 2 },
    { batch_size = 0 }) end, "batch_size must be at least 1")
  T.errors(function() md.data.loader(5) end, "expected a data set")
  T.errors(function() md.image.make_grid(md.zeros { 1, 1, 2, 2 }, { nrow = 0 }) end, "nrow must be at least 1")
  T.errors(function() md.data.png_folder(dir, { channels = 2 }) end, "channels must be one of 1, 3")
  T.errors(function() md.vae.VAE { kind = "cnv" } end, "did you mean 'conv'")
  T.errors(function() md.vae.VAE { kind = "conv", image_size = 30 } end, "multiple of 4")
end)

T.test("trainer options: bad numbers fail before anything runs", function()
  local m = md.nn.UNet(tiny_cfg())
  local ds = { images = md.zeros { 4, 1, 4, 4 }, labels = md.zeros { 4 }, n = 4, classes = { "a" } }
  local ck = path("never/ck.safetensors")
  T.errors(function() md.trainer.train { model = m, data = ds, steps = -3, checkpoint = ck } end,
    "steps must be at least 1, got -3")
  T.errors(function() md.trainer.train { model = m, data = ds, steps = 1, lr = 1e39, checkpoint = ck } end,
    "lr must be 0 to 1000")
  T.errors(function() md.trainer.train { model = m, data = ds, steps = 1, prediction = "x", checkpoint = ck } end,
    "prediction must be one of eps, x0, v")
  T.errors(function() md.trainer.train { model = m, data = ds, minutes = 0, checkpoint = ck } end,
    "minutes must be positive")
  local f = io.open(ck, "rb")
  T.truthy(f == nil, "no checkpoint was written")
end)

T.test("the trainer finds an unwritable checkpoint folder before training", function()
  write(path("file"), "x")
  local m = md.nn.UNet(tiny_cfg())
  local ds = { images = md.zeros { 4, 1, 4, 4 }, labels = md.zeros { 4 }, n = 4, classes = { "a" } }
  T.errors(function()
    md.trainer.train { model = m, data = ds, steps = 1, checkpoint = path("file/sub/ck.safetensors"), progress = false }
  end, "cannot write checkpoints into " .. path("file/sub"))
  T.eq(#m.config.attention_resolutions, 0)
end)

-- The CLI, run in this process: cli.run returns the exit status.
local cli = require "moondust.cli"
local function run_cli(...)
  local args = { ... }
  local err = {}
  local real = io.stderr
  io.stderr = { write = function(_, ...) for _, s in ipairs { ... } do err[#err + 1] = s end end }
  local ok, status = pcall(cli.run, args)
  io.stderr = real
  assert(ok, status)
  return status, table.concat(err)
end

T.test("CLI flags are checked against the command's table", function()
  local status, err = run_cli("sample", "--gudance", "3")
  T.eq(status, 2)
  T.eq(err, "moondust sample: unknown option '--gudance' (did you mean '--guidance'?)\n")
  status, err = run_cli("train", "--bogus")
  T.eq(status, 2)
  T.truthy(err:find("unknown option '--bogus'", 1, true), err)
  for _, case in ipairs {
    { { "train", "--steps", "-3" }, "--steps must be at least 1, got -3" },
    { { "train", "--steps", "abc" }, "--steps must be a number, got 'abc'" },
    { { "train", "--steps", "2.5" }, "--steps must be a whole number" },
    { { "train", "--minutes", "0" }, "--minutes must be positive" },
    { { "train", "--lr", "-1" }, "--lr must be positive" },
    { { "train", "--lr", "1e39" }, "--lr must be at most 1000" },
    { { "sample", "--n", "0" }, "--n must be at least 1, got 0" },
    { { "train", "--fresh", "yes" }, "unexpected argument 'yes'" },
    { { "train", "--steps" }, "--steps needs a value" },
    { { "sample", "--sampler", "ddpn" }, "did you mean 'ddpm'" },
    { { "train", "--threads", "0" }, "--threads must be at least 1" },
  } do
    status, err = run_cli(table.unpack(case[1]))
    T.eq(status, 2, table.concat(case[1], " "))
    T.truthy(err:find(case[2], 1, true), err)
    T.truthy(not err:find("%.lua:%d+:"), "no Lua positions: " .. err)
  end
  local o = cli.parse("train", { "--fresh", "--batch-size=64", "--steps", "7" })
  T.eq(o.fresh, true)
  T.eq(o.batch_size, 64)
  T.eq(math.type(o.steps), "integer")
  T.eq(o.lr, 5e-4) -- the table's default
  T.truthy(cli.usage("sample"):find("--guidance N", 1, true))
end)

T.test("CLI errors from a command print the message only, exit 1", function()
  local status, err = run_cli("sample", "--checkpoint", path("absent.safetensors"))
  T.eq(status, 1)
  T.truthy(err:find("^moondust sample: load: safetensors: cannot open"), err)
  T.truthy(not err:find("%.lua:%d+:"), err)
end)

T.test("probe faults: empty batches, thread counts, NaN timesteps, long cat/stack lists", function()
  local ab = md.schedule.linear {}.alphas_cumprod
  local empty = md.zeros { 0, 1, 4, 4 }
  T.eq(table.concat(md.q_sample(empty, md.zeros { 0 }, empty, ab):shape(), "x"), "0x1x4x4")
  T.eq(table.concat(md.v_target(empty, md.zeros { 0 }, empty, ab):shape(), "x"), "0x1x4x4")
  T.errors(function() md.set_num_threads(0) end, "expected 1 to 4096 threads, got 0")
  T.errors(function() md.set_num_threads(-3) end, "got -3")
  T.errors(function() md.timestep_embedding(md.tensor { 1, 0 / 0 }, 8) end, "timestep 2 is")
  T.errors(function() md.timestep_embedding(md.tensor { 1 / 0 }, 8) end, "timestep 1 is inf")
  local list, flat = {}, {}
  for i = 1, 300 do list[i] = md.full({ 1, 2 }, i); flat[2 * i - 1], flat[2 * i] = i, i end
  T.near(md.cat(list):view(600), flat, 0)
  T.near(md.stack(list):view(600), flat, 0)
  T.eq(table.concat(md.stack(list):shape(), "x"), "300x1x2")
  -- the gradient reaches every one of many inputs
  local xs = {}
  for i = 1, 70 do xs[i] = md.full({ 1 }, i):requires_grad(true) end
  local w = md.tensor((function() local t = {} for i = 1, 70 do t[i] = i end return t end)())
  ;(md.cat(xs) * w):sum():backward()
  for i = 1, 70 do T.near(xs[i].grad, { i }, 0) end
end)

T.test("loaders refuse declared sizes the file cannot hold, before allocating", function()
  md.core.mkdir_p(path("fm4g"))
  -- 12 bytes asking for 65535 x 65535 bytes (4 GiB), plain and gzip-wrapped
  write(path("fm4g/big.idx"), string.pack(">I4I4I4", 0x00000802, 65535, 65535))
  T.errors(function() md.core.idx_read(path("fm4g/big.idx")) end, "expected 4294836225 bytes of images, got 0")
  os.execute("gzip -c " .. path("fm4g/big.idx") .. " > " .. path("fm4g/big.idx.gz"))
  T.errors(function() md.core.idx_read(path("fm4g/big.idx.gz")) end, "more than a")
  -- a valid PNG signature and IHDR declaring 16384 x 16384 RGB, nothing else
  local function crc32(str)
    local c = 0xffffffff
    for i = 1, #str do
      c = c ~ str:byte(i)
      for _ = 1, 8 do c = (c & 1 ~= 0) and (0xedb88320 ~ (c >> 1)) or (c >> 1) end
    end
    return c ~ 0xffffffff
  end
  local function chunk(kind, data) return string.pack(">I4", #data) .. kind .. data .. string.pack(">I4", crc32(kind .. data)) end
  local ihdr = string.pack(">I4I4BBBBB", 16384, 16384, 8, 2, 0, 0, 0)
  write(path("huge.png"), "\137PNG\r\n\26\n" .. chunk("IHDR", ihdr) .. chunk("IDAT", string.rep("\0", 100)))
  T.errors(function() md.image.load(path("huge.png"), { channels = 3 }) end, "declares a 16384 x 16384 image")
  -- safetensors: a shape far beyond the file, and offsets past its end
  local function st(header) return string.pack("<I8", #header) .. header end
  write(path("shape.safetensors"), st('{"w":{"dtype":"F32","shape":[1000000,1000000],"data_offsets":[0,4000000000000]}}'))
  T.errors(function() md.core.safetensors_read(path("shape.safetensors")) end, "truncated")
  write(path("offs.safetensors"), st('{"w":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}}') .. string.rep("\0", 8))
  T.errors(function() md.core.safetensors_read(path("offs.safetensors")) end, "not a valid safetensors file")
end)

T.test("non-finite weights are never saved, and loading them is an error", function()
  local bad = { w = md.tensor { 1, 0 / 0 }, v = md.tensor { 1 / 0 }, ok = md.zeros { 2 } }
  T.errors(function() md.save(path("nan.safetensors"), bad) end, "refusing to save NaN/Inf values (in v, w)")
  md.save(path("nan.safetensors"), bad, nil, { allow_nonfinite = true })
  T.errors(function() md.load(path("nan.safetensors")) end, "holds NaN/Inf in v, w")
  local tensors = md.load(path("nan.safetensors"), { allow_nonfinite = true })
  T.eq(tensors.ok:numel(), 2)
end)

T.test("md.load checks a model config and the file's tensors before building", function()
  local m = md.nn.UNet(tiny_cfg { num_classes = false })
  md.save(path("u.safetensors"), { model = m }, { model = "unet", config = m.config })
  local back = md.load(path("u.safetensors")) -- unconditional stays unconditional
  T.eq(back.config.num_classes, false)
  local function with_config(cfg)
    local tensors = md.checkpoint.read(path("u.safetensors"))
    md.save(path("forged.safetensors"), tensors, { model = "unet", config = cfg })
    return function() md.load(path("forged.safetensors")) end
  end
  T.errors(with_config(tiny_cfg { num_classes = false, num_res_blocks = 1e6 }), "num_res_blocks must be 1 to 64")
  T.errors(with_config(tiny_cfg { num_classes = false, norm_groups = 0 }), "norm_groups must be")
  T.errors(with_config(tiny_cfg { num_classes = false, attention_resolutions = "a" }), "must be a table")
  T.errors(with_config(tiny_cfg { num_classes = false, num_res_blocks = 2 }), "the config asks for tensor")
  T.errors(with_config(tiny_cfg { num_classes = false, model_channels = 16, norm_groups = 4 }),
    "the config gives tensor 'input_blocks.0.0.weight' the shape [16, 1, 3, 3], the file holds [8, 1, 3, 3]")
  local err = T.errors(with_config(tiny_cfg { num_classes = false, bogus = 1 }), "unknown option 'bogus'")
  T.truthy(not err:find("%.lua:%d+: .*%.lua:%d+:"), err)
end)

-- A model whose one extra weight gets a NaN gradient while the loss stays finite.
local NaNGrad = md.nn.Module:extend("NaNGrad")
function NaNGrad:init(inner)
  self:add_module("inner", inner)
  self:add_parameter("p", md.ones { 1 })
  self.config = inner.config
end
function NaNGrad:forward(x, t, y) return self.inner(x, t, y) + (self.p - self.p):sqrt():sum() end

T.test("the trainer stops before saving weights an update made non-finite", function()
  local m = NaNGrad(md.nn.UNet(tiny_cfg()))
  local ds = { images = md.zeros { 4, 1, 4, 4 }, labels = md.zeros { 4 }, n = 4, classes = { "a" } }
  local ck = path("nan/ck.safetensors")
  T.errors(function()
    md.trainer.train { model = m, data = ds, steps = 3, batch_size = 2, checkpoint = ck, progress = false }
  end, "the weights became NaN/Inf at step 1")
  T.truthy(io.open(ck, "rb") == nil, "nothing saved")
end)

-- Interrupts itself from inside the 3rd forward: what Ctrl-C does.
local SelfInterrupt = md.nn.Module:extend("SelfInterrupt")
function SelfInterrupt:init(inner, at)
  self:add_module("inner", inner)
  self.config, self.calls, self.at = inner.config, 0, at or 3
end
function SelfInterrupt:forward(...)
  self.calls = self.calls + 1
  -- $PPID of the shell is this process; popen, as system() would ignore SIGINT meanwhile
  if self.calls == self.at then io.popen("kill -INT $PPID"):close() end
  return self.inner(...)
end

T.test("Ctrl-C during training saves a checkpoint and stops cleanly", function()
  local m = SelfInterrupt(md.nn.UNet(tiny_cfg()))
  local ds = { images = md.zeros { 4, 1, 4, 4 }, labels = md.zeros { 4 }, n = 4, classes = { "a" } }
  local ck = path("int/ck.safetensors")
  local r = md.trainer.train { model = m, data = ds, steps = 50, batch_size = 2, checkpoint = ck, progress = false }
  T.eq(r.interrupted, true)
  T.eq(r.steps, 3)
  local _, meta = md.checkpoint.read(ck)
  T.eq(meta.step, 3)
  T.eq(md.core.interrupted(), false)
end)

T.test("a cosine lr decay resumes exactly after Ctrl-C, and ends at 0 with the step budget", function()
  local ds = { images = md.randn { 16, 1, 4, 4 }:clamp(-1, 1), labels = md.randint(0, 2, { 16 }), n = 16,
               classes = { "a", "b" } }
  local function run(ck, at, resume)
    md.manual_seed(0)
    local m = SelfInterrupt(md.nn.UNet(tiny_cfg { num_classes = 2 }), at)
    return md.trainer.train { model = m, data = ds, steps = 6, batch_size = 4, warmup = 0, lr = 1e-2,
                              lr_decay = "cosine", checkpoint = ck, resume = resume, checkpoint_every = 0,
                              progress = false, log_every = 1, run_dir = ck .. "-run" }
  end
  T.errors(function() md.trainer.train { model = md.nn.UNet(tiny_cfg { num_classes = 2 }), data = ds, steps = 1,
                                         lr_final = 0.1 } end, "lr_final is where the lr decay ends")
  local full = run(path("cos/full.safetensors"), 0, false)
  T.eq(run(path("cos/half.safetensors"), 3, false).interrupted, true)
  local resumed = run(path("cos/half.safetensors"), 0, true)
  T.eq(#resumed.losses, 6)
  T.near(resumed.losses, full.losses, 1e-6)
  -- the logged lr of each step: lr * (1 + cos(pi * step / 6)) / 2, steps 0..5
  local lrs = {}
  for line in io.lines(path("cos/full.safetensors-run/log.jsonl")) do
    local v = line:match('"lr":([-%d.e]+)')
    if v then lrs[#lrs + 1] = tonumber(v) end
  end
  T.eq(#lrs, 6)
  for i, v in ipairs(lrs) do T.near(v, 1e-2 * (1 + math.cos(math.pi * (i - 1) / 6)) / 2, 1e-9) end
end)

T.finish()
