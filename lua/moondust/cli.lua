-- The command-line tool behind scripts/moondust.
--
-- Each command is a function cli.<name>(o) and a table cli.flags.<name>:
-- a summary line and one entry per flag, {name, type, default, help, ...}.
-- That table makes the usage text and checks every flag before the command
-- runs. Types: "integer", "number", "string", "boolean" (a flag without a
-- value), "size" (N or HxW, becoming N or {H, W}); optional fields: min, max, positive (> 0), choices, meta (the
-- value's placeholder in the usage), default_text (when the default is not
-- a plain value). Every command also takes --threads, --precision and --help.
local md = require "moondust"
local options = require "moondust.options"

local cli = { flags = {} }

local DEFAULT_CHECKPOINT = "checkpoints/ddpm_fashion.safetensors"

local common_flags = {
  { "threads", "integer", nil, "threads for all parallel work", min = 1, default_text = "all cores" },
  { "precision", "string", "fp32", "convolution arithmetic (bf16: AVX512_BF16 CPUs)", choices = { "fp32", "bf16" } },
  { "help", "boolean", nil, "print this help" },
}

-- Flags the sampling commands share (sample, eval, img2img, inpaint) after their own.
local function with_sampling_flags(spec)
  local shared = {
    { "sampler", "string", nil, "sampler (md.samplers)", choices = require("moondust.samplers").registry,
      default_text = "the diffusion's: ddim, or heun for EDM" },
    { "steps", "integer", nil, "sampling steps (noise levels)", min = 1,
      default_text = "50; 1000 for ddpm, 18 for heun" },
    { "spacing", "string", nil, "timestep spacing", choices = { "linspace", "leading", "trailing", "karras" },
      default_text = "linspace; karras for dpmpp_*, unipc and EDM" },
    { "guidance", "number", 3, "classifier-free guidance scale", min = 0 },
    { "guidance-rescale", "number", nil, "rescale the guided output's std towards the conditional one's (0..1)",
      min = 0, max = 1, meta = "PHI" },
    { "eta", "number", nil, "noise of ddim, euler_ancestral, dpmpp_2m_sde", min = 0 },
    { "seed", "integer", 1, "first per-image seed" },
  }
  for _, f in ipairs(shared) do spec[#spec + 1] = f end
  return spec
end

-- Where the training images come from (train, autoencoder).
local data_flags = {
  { "data", "string", nil, "a folder of PNG/JPEG images instead of Fashion-MNIST (sub-folders are classes)",
    meta = "DIR" },
  { "image-channels", "integer", nil, "load the --data images as gray (1) or RGB (3)", choices = { 1, 3 },
    default_text = "3 if any image is colour, else 1" },
  { "image-size", "size", nil, "bring the --data images to N x N (or H x W)", meta = "N|HxW",
    default_text = "all images must share one size" },
  { "resize", "string", nil, "how --image-size is met", choices = { "center_crop", "resize", "random_crop" },
    default_text = "center_crop" },
  { "hflip", "boolean", nil, "mirror --data images at random (augmentation)" },
  { "strict", "boolean", nil, "an unreadable --data image is an error (default: skipped with a warning)" },
}
local function with_data_flags(spec)
  for _, f in ipairs(data_flags) do spec[#spec + 1] = f end
  return spec
end

cli.flags.autoencoder = with_data_flags {
  summary = "train a KL autoencoder (md.autoencoder) for latent diffusion, then report its reconstructions",
  { "minutes", "number", nil, "stop after M minutes", positive = true, meta = "M", default_text = "5 when --steps is not given" },
  { "steps", "integer", nil, "stop after N steps (whichever comes first)", min = 1 },
  { "out", "string", "checkpoints/autoencoder.safetensors", "where to save it", meta = "PATH" },
  { "channels", "integer", 16, "channels of the first level (the levels have 1, 2, 4 times that)", min = 8 },
  { "z-channels", "integer", 4, "latent channels", min = 1 },
  { "batch-size", "integer", 64, "images per step", min = 1 },
  { "lr", "number", 1e-3, "Adam learning rate", positive = true, max = 1 },
  { "reconstruction", "string", "l1", "pixel loss", choices = { "l1", "l2" } },
  { "perceptual-weight", "number", 1, "weight of the perceptual loss on md.metrics features (0 = none)", min = 0 },
  { "kl-weight", "number", 1e-6, "weight of the KL term", min = 0 },
  { "disc-start", "integer", nil, "start a patch discriminator (hinge GAN loss) at this step", min = 0,
    default_text = "no discriminator" },
  { "disc-weight", "number", nil, "adversarial weight (times the adaptive weight), with --disc-start", min = 0,
    default_text = "0.5" },
  { "per-channel", "boolean", nil, "scale latents by a mean and std per channel (default: one std)" },
  { "seed", "integer", 0, "random seed" },
  { "eval-n", "integer", 1000, "test images whose reconstructions are scored", min = 2 },
  { "grid", "string", "out/autoencoder.png", "PNG: 5 rows of test images, each followed by its reconstructions",
    meta = "PATH" },
}

cli.flags.train = with_data_flags {
  summary = "train a class-conditional DDPM U-Net on Fashion-MNIST (or a folder of PNG/JPEG images)",
  { "minutes", "number", nil, "stop after M minutes", positive = true, meta = "M", default_text = "10 when --steps is not given" },
  { "steps", "integer", nil, "stop after N steps (whichever comes first)", min = 1 },
  { "checkpoint", "string", nil, "where to save and resume", meta = "PATH",
    default_text = DEFAULT_CHECKPOINT .. "; with --data, checkpoints/<folder name>.safetensors" },
  { "fresh", "boolean", nil, "start over even if the checkpoint exists (default: resume)" },
  { "latent", "string", nil, "train on the latents of this md.autoencoder checkpoint (latent diffusion)",
    meta = "AUTOENCODER" },
  { "channels", "integer", nil, "model_channels of the U-Net", min = 1, default_text = "32; 64 with --latent" },
  { "batch-size", "integer", 128, "images per step", min = 1 },
  { "lr", "number", 5e-4, "AdamW learning rate", positive = true, max = 1e3 },
  { "lr-decay", "string", "constant", "learning-rate decay to 0 over the budget (--steps or --minutes)",
    choices = { "constant", "cosine", "linear" } },
  { "warmup", "integer", 200, "steps of linear learning-rate warm-up", min = 0 },
  { "ema-decay", "number", 0.999, "decay of the weights' exponential moving average (sampled from)", min = 0, max = 1 },
  { "dropout", "number", 0, "dropout in the ResBlocks (short runs do not overfit)", min = 0, max = 1 },
  { "schedule", "string", "linear", "noise schedule", choices = { "linear", "cosine", "scaled_linear" } },
  { "sample-every", "integer", 1000, "write <run-dir>/samples_<step>.png every N steps (0 = never)", min = 0 },
  { "seed", "integer", 0, "random seed" },
  { "run-dir", "string", "out", "the run folder: sample grids, log.jsonl, loss and metric plots", meta = "DIR" },
  { "eval-every", "integer", 0, "score EMA samples with md.metrics every N steps (0 = never)", min = 0 },
  { "eval-minutes", "number", nil, "score EMA samples every M minutes of training", positive = true, meta = "M" },
  { "eval-n", "integer", 500, "samples per evaluation", min = 2 },
  { "eval-steps", "integer", 20, "DDIM steps of the evaluation samples", min = 1 },
  { "prediction", "string", "eps", "what the U-Net predicts", choices = { "eps", "x0", "v" } },
  { "min-snr-gamma", "number", nil, "min-SNR-gamma loss weighting (e.g. 5)", positive = true, meta = "G" },
  { "offset-noise", "number", nil, "offset noise per image and channel (e.g. 0.1)", min = 0, max = 10 },
  { "zero-terminal-snr", "boolean", nil, "rescale the schedule to alpha-bar_T = 0 (needs --prediction v or x0)" },
  { "edm", "boolean", nil, "train in the EDM formulation (Karras et al. 2022) instead of the DDPM family" },
}

cli.flags.sample = with_sampling_flags {
  summary = "sample from a checkpoint into a PNG grid (and optionally single PNGs)",
  { "checkpoint", "string", DEFAULT_CHECKPOINT, "the trained model", meta = "PATH" },
  { "out", "string", "out/samples.png", "grid PNG", meta = "PATH" },
  { "n", "integer", nil, "number of images", min = 1,
    default_text = "10 per class, in class order, when --class is not given; else 16" },
  { "class", "string", nil, "class label 0..9 (or a class name) for all images; \"none\" for unconditional",
    meta = "C" },
  { "nrow", "integer", 10, "images per grid row", min = 1 },
  { "singles", "string", nil, "also write each image as DIR/<i>.png", meta = "DIR" },
}

cli.flags.compare = {
  summary = "overlay the loss and metric curves of run folders",
  positional = "RUN_DIR...",
  { "out", "string", "out/compare", "where the PNGs go", meta = "DIR" },
}

cli.flags.eval = with_sampling_flags {
  summary = "score samples of a checkpoint (or real images) with md.metrics",
  { "checkpoint", "string", DEFAULT_CHECKPOINT, "the diffusion checkpoint to sample", meta = "PATH" },
  { "n", "integer", 1000, "number of samples (classes in turn when the model has classes)", min = 1 },
  { "batch-size", "integer", 100, "sampling batch size", min = 1 },
  { "real", "integer", nil, "score N real Fashion-MNIST training images instead (the floor of each figure)",
    min = 1, meta = "N" },
  { "json", "string", nil, "also append the figures to PATH as one JSON line", meta = "PATH" },
}

local edit_flags = {
  { "checkpoint", "string", DEFAULT_CHECKPOINT, "the trained model", meta = "PATH" },
  { "input", "string", nil, "the image to start from (PNG, the model's size)", meta = "PNG" },
  { "out", "string", nil, "grid PNG of the results", meta = "PATH" },
  { "n", "integer", 8, "results (one per seed)", min = 1 },
  { "class", "string", nil, "class label or name to steer towards", meta = "C", default_text = "none" },
  { "nrow", "integer", 8, "images per grid row", min = 1 },
}
local function edit_command(summary, own)
  local spec = { summary = summary }
  for _, group in ipairs { edit_flags, own } do for _, f in ipairs(group) do spec[#spec + 1] = f end end
  return with_sampling_flags(spec)
end
cli.flags.img2img = edit_command("redraw an image: noise it part way and sample back (SDEdit)", {
  { "strength", "number", 0.6, "how far into the noise (0..1]", positive = true, max = 1 },
})
cli.flags.inpaint = edit_command("fill in an image where a mask is black (white = keep)", {
  { "mask", "string", nil, "PNG of the image's size: white pixels are kept, black ones sampled", meta = "PNG" },
  { "resample", "integer", 1, "RePaint: repeat each step this many times", min = 1, max = 100 },
})

-- The flags of a command (its own, then the common ones) by name.
local function flags_of(cmd)
  local list, by_name = {}, {}
  for _, group in ipairs { cli.flags[cmd], common_flags } do
    for _, f in ipairs(group) do
      list[#list + 1] = f
      by_name[f[1]] = f
    end
  end
  return list, by_name
end

local function commands()
  local names = {}
  for name in pairs(cli.flags) do names[#names + 1] = name end
  table.sort(names)
  return names
end

-- The usage text of one command, or of the tool when cmd is nil.
function cli.usage(cmd)
  if not cmd then
    local lines = { "usage: moondust <command> [options]", "commands:" }
    for _, name in ipairs(commands()) do lines[#lines + 1] = ("  %-8s %s"):format(name, cli.flags[name].summary) end
    lines[#lines + 1] = "run `moondust <command> --help` for its options"
    return table.concat(lines, "\n")
  end
  local spec = cli.flags[cmd]
  local lines = { ("usage: moondust %s [options]%s"):format(cmd, spec.positional and " " .. spec.positional or ""),
                  "  " .. spec.summary }
  for _, f in ipairs((flags_of(cmd))) do
    local name, kind, default, help = f[1], f[2], f[3], f[4]
    local meta = kind == "boolean" and "" or " " .. (f.meta or (f.choices and "X" or kind == "string" and "S" or "N"))
    local extra = {}
    if f.choices then
      local cs = {}
      for i, c in ipairs(f.choices) do cs[i] = tostring(c) end
      extra[#extra + 1] = table.concat(cs, " | ")
    end
    if f.default_text or default ~= nil then extra[#extra + 1] = "default " .. (f.default_text or tostring(default)) end
    local tail = #extra > 0 and (" (" .. table.concat(extra, "; ") .. ")") or ""
    lines[#lines + 1] = ("  %-22s %s%s"):format("--" .. name .. meta, help, tail)
  end
  return table.concat(lines, "\n")
end

-- One flag's value from its text, checked by type and range.
local function convert(where, f, text)
  local name, kind = "--" .. f[1], f[2]
  local v = text
  if kind == "integer" or kind == "number" then
    v = tonumber(text)
    if v == nil then error(("%s: %s must be a number, got '%s'"):format(where, name, text), 0) end
    if kind == "integer" then
      options.integer(where, name, v, f.min, f.max)
      v = math.tointeger(v)
    else
      options.number(where, name, v, f.min, f.max)
    end
    if f.positive and v <= 0 then error(("%s: %s must be positive, got %s"):format(where, name, text), 0) end
  elseif kind == "size" then
    local h, w = text:match("^(%d+)[xX](%d+)$")
    h, w = math.tointeger(tonumber(h or text)), math.tointeger(tonumber(w or h or text))
    if not h or not w then error(("%s: %s must be N or HxW, got '%s'"):format(where, name, text), 0) end
    options.integer(where, name, h, 1, 16384)
    options.integer(where, name, w, 1, 16384)
    v = h == w and h or { h, w }
  end
  if f.choices then options.choice(where, name, v, f.choices) end
  return v
end

-- The arguments after the command into {flag_name = value} (dashes in names
-- become underscores), every flag known and every value checked; the
-- defaults filled in.
function cli.parse(cmd, args, first)
  local where = "moondust " .. cmd
  local list, by_name = flags_of(cmd)
  local o = { args = {} }
  local i = first or 1
  while i <= #args do
    local a = args[i]
    local key, inline = a:match("^%-%-([%w%-_]+)=(.*)$")
    key = key or a:match("^%-%-([%w%-_]+)$")
    if not key and cli.flags[cmd].positional and not a:match("^%-") then
      o.args[#o.args + 1] = a
      i = i + 1
      goto next_arg
    end
    if not key then error(("%s: unexpected argument '%s' (try --help)"):format(where, a), 0) end
    local f = by_name[key]
    if not f then error(options.unknown_message(where, key, by_name, "--"), 0) end
    local value
    if f[2] == "boolean" then
      if inline then error(("%s: --%s takes no value"):format(where, key), 0) end
      value, i = true, i + 1
    elseif inline then
      value, i = inline, i + 1
    else
      value = args[i + 1]
      if value == nil or value:match("^%-%-") then error(("%s: --%s needs a value"):format(where, key), 0) end
      i = i + 2
    end
    o[(key:gsub("%-", "_"))] = f[2] == "boolean" and true or convert(where, f, value)
    ::next_arg::
  end
  for _, f in ipairs(list) do
    local k = f[1]:gsub("%-", "_")
    if o[k] == nil then o[k] = f[3] end
  end
  return o
end

local mkdir_p = md.core.mkdir_p

local function dirname(path) return path:match("^(.*)/[^/]*$") or "." end

-- The training images the data flags ask for, and the name of their set.
local function training_data(o)
  if o.data then
    local data = md.data.image_folder(o.data, { channels = o.image_channels, size = o.image_size, resize = o.resize,
                                                hflip = o.hflip, strict = o.strict })
    return data, o.data:gsub("/+$", ""):match("([^/]+)$") or "data"
  end
  for _, flag in ipairs { "image_channels", "image_size", "resize", "hflip", "strict" } do
    if o[flag] ~= nil then error(("--%s applies to --data folders, not Fashion-MNIST"):format((flag:gsub("_", "-"))), 0) end
  end
  return md.data.fashion_mnist { split = "train" }, nil
end

-- The autoencoder checkpoint --latent names.
local function load_autoencoder(path)
  local ae = md.load(path)
  if not (type(ae) == "table" and type(ae.latent_shape) == "function") then
    error(("--latent: %s holds no md.autoencoder model (make one with scripts/moondust autoencoder)"):format(path), 0)
  end
  if not ae.config.latent_std then error(("--latent: %s has no latent scaling (ae:fit_scale)"):format(path), 0) end
  return ae
end

function cli.autoencoder(o)
  local data, name = training_data(o)
  local c, h, w = md.data.image_shape(data)
  local ae = md.autoencoder.AutoencoderKL { in_channels = c, image_size = { h, w }, channels = o.channels,
                                           z_channels = o.z_channels, norm_groups = 8 }
  local shape = ae:latent_shape()
  io.stderr:write(("autoencoder: %d parameters, %dx%dx%d images -> %dx%dx%d latents\n"):format(ae:num_parameters(),
    c, h, w, shape[1], shape[2], shape[3]))
  local loss = { reconstruction = o.reconstruction, perceptual_weight = o.perceptual_weight, kl_weight = o.kl_weight,
                 disc_start = o.disc_start, disc_weight = o.disc_weight }
  if name and o.perceptual_weight > 0 then
    error("--data: the perceptual loss uses the Fashion-MNIST feature network; pass --perceptual-weight 0 "
      .. "(or train a feature network for your data with scripts/train_feature_net.lua)", 0)
  end
  local r = md.autoencoder.train { model = ae, data = data, minutes = o.minutes or (not o.steps and 5 or nil),
                                   steps = o.steps, batch_size = o.batch_size, lr = o.lr, loss = loss, seed = o.seed,
                                   per_channel = o.per_channel, checkpoint = o.out }
  print(("trained %d steps (%.1f images/s); latent std %.4f; saved %s"):format(r.steps, r.images_per_second,
    ae.config.latent_std[1], o.out))
  if not name then
    local test = md.data.fashion_mnist { split = "test" }
    local m, recon = md.autoencoder.evaluate(ae, test, { n = o.eval_n })
    print(("reconstructions of %d test images: PSNR %.2f dB, L1 %.4f"):format(m.n, m.psnr, m.l1))
    print(md.metrics.format(m))
    md.autoencoder.save_comparison(test.images, recon, o.grid)
    print("wrote " .. o.grid)
  end
end

function cli.train(o)
  local data, name = training_data(o)
  local checkpoint = o.checkpoint or (name and ("checkpoints/%s.safetensors"):format(name)) or DEFAULT_CHECKPOINT
  local classes = #data.classes > 1 and #data.classes or false
  if o.latent and (o.hflip or o.resize == "random_crop") then
    error("--latent encodes every image once: --hflip and --resize random_crop would be ignored", 0)
  end
  local ae = o.latent and load_autoencoder(o.latent)
  if ae then data = md.autoencoder.latent_data(ae, data) end
  local c, h, w = md.data.image_shape(data)
  local channels = o.channels or (ae and 64 or 32)
  -- latents are small (7 x 7 for Fashion-MNIST): one resolution, attention throughout
  local model = md.nn.UNet { in_channels = c, out_channels = c, model_channels = channels,
                             num_head_channels = math.min(32, channels), num_classes = classes,
                             dropout = o.dropout, image_size = { h, w }, channel_mult = ae and { 1 } or nil,
                             attention_resolutions = ae and { 1 } or nil }
  if md.dist.is_main() then
    if data.warning then io.stderr:write(data.warning .. "\n") end
    io.stderr:write(("U-Net: %d parameters, %d training images of %dx%dx%d%s\n"):format(model:num_parameters(),
      data.n, c, h, w, data.channels_detected and " (channels detected)" or ""))
  end
  local diffusion
  if o.edm then
    for _, k in ipairs { "min_snr_gamma", "offset_noise", "zero_terminal_snr" } do
      if o[k] then error(("--%s belongs to the DDPM family, not to --edm"):format(k:gsub("_", "-")), 0) end
    end
    if o.prediction ~= "eps" then error("--prediction belongs to the DDPM family; EDM predicts through its preconditioning", 0) end
    diffusion = md.diffusion.edm {}
  else
    diffusion = md.diffusion { schedule = o.schedule, prediction = o.prediction, min_snr_gamma = o.min_snr_gamma,
                               offset_noise = o.offset_noise, zero_terminal_snr = o.zero_terminal_snr }
  end
  local r = md.trainer.train {
    model = model, data = data, minutes = o.minutes or (not o.steps and 10 or nil), steps = o.steps,
    checkpoint = checkpoint, resume = not o.fresh, batch_size = o.batch_size, lr = o.lr, diffusion = diffusion,
    lr_decay = o.lr_decay, warmup = o.warmup, ema_decay = o.ema_decay,
    sample_every = o.sample_every, seed = o.seed, samples_dir = o.run_dir, run_dir = o.run_dir,
    eval_every = o.eval_every, eval_minutes = o.eval_minutes, eval_n = o.eval_n, eval_steps = o.eval_steps,
    autoencoder = ae or nil,
  }
  if not md.dist.is_main() then return end
  print(("trained to step %d (%.1f images/s); checkpoint %s; run folder %s"):format(r.steps, r.images_per_second,
    r.checkpoint, r.run_dir))
  if r.metrics then print(md.metrics.format(r.metrics)) end
end

function cli.compare(o)
  if #o.args == 0 then error("give the run folders to compare", 0) end
  local written = md.runlog.compare(o.args, o.out)
  if #written == 0 then error("nothing drawn (is gnuplot installed? apt-get install gnuplot-nox)", 0) end
  for _, path in ipairs(written) do print("wrote " .. path) end
end

-- --class: "none", a label number, or a name for md.sample to resolve.
local function class_option(text, classes)
  if text == nil or text == "none" then return nil end
  local label = tonumber(text)
  if label == nil then return text end
  if not classes then error("moondust sample: the model is unconditional; --class must be none", 0) end
  options.integer("moondust sample", "--class", label, 0, classes - 1)
  return math.tointeger(label)
end

-- md.sample's options from the shared sampling flags, plus the command's own.
local function sampling_options(o, extra)
  local opts = { sampler = o.sampler, steps = o.steps, spacing = o.spacing, eta = o.eta, seed = o.seed,
                 guidance_rescale = o.guidance_rescale }
  for k, v in pairs(extra) do opts[k] = v end
  return opts
end

-- The model of a checkpoint, or an error naming it.
local function load_model(path)
  local model = md.load(path)
  if not md.nn.Module.is_module(model) then error(path .. " holds no model config", 0) end
  return model
end

-- n copies of a 1 x C x H x W tensor, as one batch
local function copies(x, n)
  local t = {}
  for i = 1, n do t[i] = x end
  return md.cat(t, 1)
end

-- img2img and inpaint: --input as n copies, edited, into a grid.
local function edit(o, what)
  if not o.input then error("give the image with --input PNG", 0) end
  if not o.out then error("give the grid's path with --out PNG", 0) end
  local model = load_model(o.checkpoint)
  local c, h, w = table.unpack(md.sampler.image_shape(model.config, model.image_size))
  local img = md.image.load(o.input, { channels = c })
  if img:size(2) ~= h or img:size(3) ~= w then
    error(("%s is %dx%d; the model makes %dx%d images"):format(o.input, img:size(2), img:size(3), h, w), 0)
  end
  local images = copies(img:reshape(1, c, h, w), o.n)
  local class = class_option(o.class, model.config.num_classes)
  local opts = sampling_options(o, { guidance = class and o.guidance or nil, class = class })
  local x
  if what == "img2img" then
    opts.strength = o.strength
    x = md.edit.img2img(model, images, opts)
  else
    if not o.mask then error("give the mask with --mask PNG (white = keep)", 0) end
    local m = md.image.load(o.mask, { channels = 1 })
    if m:size(2) ~= h or m:size(3) ~= w then
      error(("the mask %s is %dx%d; the image is %dx%d"):format(o.mask, m:size(2), m:size(3), h, w), 0)
    end
    local mask = m:gt(0):reshape(1, 1, h, w)
    opts.resample = o.resample
    x = md.edit.inpaint(model, images, copies(mask, o.n), opts)
  end
  mkdir_p(dirname(o.out))
  md.image.save_grid(md.cat({ images:narrow(1, 1, 1), x }, 1), o.out, { nrow = o.nrow })
  print(("wrote %s (the input, then %d results)"):format(o.out, x:size(1)))
end

function cli.img2img(o) edit(o, "img2img") end
function cli.inpaint(o) edit(o, "inpaint") end

function cli.sample(o)
  local model = md.load(o.checkpoint)
  if not md.nn.Module.is_module(model) then error("the checkpoint holds no model config", 0) end
  local classes = model.config.num_classes
  local n, class = o.n, class_option(o.class, classes)
  if o.class == nil and classes then -- every class in turn, in contiguous groups
    n = n or 10 * classes
    class = {}
    for i = 1, n do class[i] = (i - 1) * classes // n end
  end
  local x = md.sample(model, sampling_options(o, { n = n or 16, class = class, guidance = class and o.guidance or nil }))
  mkdir_p(dirname(o.out))
  md.image.save_grid(x, o.out, { nrow = o.nrow })
  if o.singles then
    mkdir_p(o.singles)
    for i = 1, x:size(1) do md.image.save(x[i], ("%s/%04d.png"):format(o.singles, i)) end
  end
  print(("wrote %s (%d images)"):format(o.out, x:size(1)))
end

-- A message for the user: no "file.lua:12:" positions.
local function bare(msg)
  msg = tostring(msg)
  repeat
    local stripped = msg:gsub("^[^%s:]+%.lua:%d+: ", "", 1)
    local changed = stripped ~= msg
    msg = stripped
  until not changed
  return msg
end
cli.bare_message = bare

-- Runs a command; returns the exit status (0, 1 when the command failed,
-- 2 for a usage error) and writes messages to stdout / stderr.
function cli.run(args)
  local cmd = args[1]
  if cmd == nil or cmd == "--help" or cmd == "-h" or cmd == "help" then print(cli.usage()); return 0 end
  if not cli.flags[cmd] then
    io.stderr:write(options.unknown_message("moondust", cmd, cli.flags):gsub("unknown option", "unknown command")
      .. "\n" .. cli.usage() .. "\n")
    return 2
  end
  local ok, o = pcall(cli.parse, cmd, args, 2)
  if not ok then io.stderr:write(bare(o) .. "\n"); return 2 end
  if o.help then print(cli.usage(cmd)); return 0 end
  local ok2, err = pcall(function()
    if o.threads then md.set_num_threads(o.threads) end
    md.set_precision(o.precision)
    cli[cmd](o)
  end)
  if not ok2 then io.stderr:write("moondust " .. cmd .. ": " .. bare(err) .. "\n"); return 1 end
  return 0
end

-- Figures against Fashion-MNIST's test split (computed once, cached):
-- Frechet distance, KID, precision and recall (k = 3), the Inception-score
-- analogue and class accuracy.
function cli.eval(o)
  local images, labels, what, trained_steps
  local t0 = md.time()
  if o.real then
    local train = md.data.fashion_mnist { split = "train", limit = o.real }
    images, labels = train.images, train.labels
    what = ("%d real Fashion-MNIST training images"):format(train.n)
  else
    local model, meta = md.load(o.checkpoint)
    if not md.nn.Module.is_module(model) then error(o.checkpoint .. " holds no model config", 0) end
    trained_steps = type(meta.step) == "number" and math.tointeger(meta.step) or nil
    local classes = model.config.num_classes
    if classes then
      labels = {}
      for i = 1, o.n do labels[i] = (i - 1) % classes end
    end
    local guidance = labels and o.guidance or nil
    local info
    images, info = md.sample(model, sampling_options(o, { n = o.n, class = labels, guidance = guidance,
                                                          batch_size = o.batch_size }))
    what = ("%d samples of %s, %s-%d (%d network evaluations), guidance %s"):format(o.n, o.checkpoint, info.sampler,
      info.steps, info.nfe, guidance or "none")
  end
  local t1 = md.time()
  md.metrics.reference() -- computed once per feature network, then read from the cache
  local t2 = md.time()
  local m = md.metrics.score(images, labels)
  local t3 = md.time()
  print(what)
  print(md.metrics.format(m))
  print(("%s %.1f s, reference %.1f s, scoring %.1f s"):format(o.real and "loading" or "sampling", t1 - t0, t2 - t1, t3 - t2))
  if o.json then
    local line = { what = what, checkpoint = not o.real and o.checkpoint or nil, n = o.real or o.n,
                   precision_mode = md.get_precision(), sampling_seconds = t1 - t0,
                   trained_steps = trained_steps }
    for _, k in ipairs { "fid", "kid", "kid_se", "precision", "recall", "is", "class_accuracy" } do line[k] = m[k] end
    local dir = o.json:match("^(.*)/[^/]*$")
    if dir then md.core.mkdir_p(dir) end
    local f, err = io.open(o.json, "a")
    if not f then error("eval: cannot write --json: " .. tostring(err), 0) end
    f:write(md.core.json_encode(line), "\n")
    f:close()
  end
end

function cli.main(args)
  local status = cli.run(args)
  if md.dist.size() > 1 then -- under mpirun: end MPI properly, or end every rank when this one failed
    if status ~= 0 then md.core.dist_abort(status) end
    md.dist.finalize()
  end
  if status ~= 0 then os.exit(status) end
end

return cli
