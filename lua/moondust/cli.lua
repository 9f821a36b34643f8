-- The command-line tool behind scripts/moondust.
--
-- Each command is a function cli.<name>(o) and a table cli.flags.<name>:
-- a summary line and one entry per flag, {name, type, default, help, ...}.
-- That table makes the usage text and checks every flag before the command
-- runs. Types: "integer", "number", "string", "boolean" (a flag without a
-- value), "size" (N or HxW, becoming N or {H, W}); optional fields: min, max, positive (> 0), choices, meta (the
-- value's placeholder in the usage), default_text (when the default is not
-- a plain value). Every command also takes --threads and --help.
local md = require "moondust"
local options = require "moondust.options"

local cli = { flags = {} }

local DEFAULT_CHECKPOINT = "checkpoints/ddpm_fashion.safetensors"

local common_flags = {
  { "threads", "integer", nil, "threads for all parallel work", min = 1, default_text = "all cores" },
  { "help", "boolean", nil, "print this help" },
}

cli.flags.train = {
  summary = "train a class-conditional DDPM U-Net on Fashion-MNIST (or a folder of PNG/JPEG images)",
  { "minutes", "number", nil, "stop after M minutes", positive = true, meta = "M", default_text = "10 when --steps is not given" },
  { "steps", "integer", nil, "stop after N steps (whichever comes first)", min = 1 },
  { "checkpoint", "string", nil, "where to save and resume", meta = "PATH",
    default_text = DEFAULT_CHECKPOINT .. "; with --data, checkpoints/<folder name>.safetensors" },
  { "fresh", "boolean", nil, "start over even if the checkpoint exists (default: resume)" },
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
  { "channels", "integer", 32, "model_channels of the U-Net", min = 1 },
  { "batch-size", "integer", 128, "images per step", min = 1 },
  { "lr", "number", 5e-4, "AdamW learning rate", positive = true, max = 1e3 },
  { "dropout", "number", 0, "dropout in the ResBlocks (short runs do not overfit)", min = 0, max = 1 },
  { "schedule", "string", "linear", "noise schedule", choices = { "linear", "cosine", "scaled_linear" } },
  { "sample-every", "integer", 1000, "write <run-dir>/samples_<step>.png every N steps (0 = never)", min = 0 },
  { "seed", "integer", 0, "random seed" },
  { "run-dir", "string", "out", "the run folder: sample grids, log.jsonl, loss and metric plots", meta = "DIR" },
  { "eval-every", "integer", 0, "score EMA samples with md.metrics every N steps (0 = never)", min = 0 },
  { "eval-minutes", "number", nil, "score EMA samples every M minutes of training", positive = true, meta = "M" },
  { "eval-n", "integer", 500, "samples per evaluation", min = 2 },
  { "eval-steps", "integer", 20, "DDIM steps of the evaluation samples", min = 1 },
}

cli.flags.sample = {
  summary = "sample from a checkpoint into a PNG grid (and optionally single PNGs)",
  { "checkpoint", "string", DEFAULT_CHECKPOINT, "the trained model", meta = "PATH" },
  { "out", "string", "out/samples.png", "grid PNG", meta = "PATH" },
  { "n", "integer", nil, "number of images", min = 1,
    default_text = "10 per class, in class order, when --class is not given; else 16" },
  { "class", "string", nil, "class label 0..9 (or a class name) for all images; \"none\" for unconditional",
    meta = "C" },
  { "sampler", "string", "ddim", "sampler", choices = { "ddim", "ddpm", "dpmpp_2m" } },
  { "steps", "integer", nil, "sampling steps", min = 1, default_text = "50 for ddim, 1000 for ddpm" },
  { "guidance", "number", 3, "classifier-free guidance scale", min = 0 },
  { "eta", "number", nil, "DDIM eta (ddim only)", min = 0, default_text = "0" },
  { "seed", "integer", 1, "first per-image seed" },
  { "nrow", "integer", 10, "images per grid row", min = 1 },
  { "singles", "string", nil, "also write each image as DIR/<i>.png", meta = "DIR" },
}

cli.flags.compare = {
  summary = "overlay the loss and metric curves of run folders",
  positional = "RUN_DIR...",
  { "out", "string", "out/compare", "where the PNGs go", meta = "DIR" },
}

cli.flags.eval = {
  summary = "score samples of a checkpoint (or real images) with md.metrics",
  { "checkpoint", "string", DEFAULT_CHECKPOINT, "the diffusion checkpoint to sample", meta = "PATH" },
  { "n", "integer", 1000, "number of samples (classes in turn when the model has classes)", min = 1 },
  { "sampler", "string", "ddim", "sampler", choices = { "ddim", "ddpm", "dpmpp_2m" } },
  { "steps", "integer", 50, "sampling steps", min = 1 },
  { "guidance", "number", 3, "classifier-free guidance scale", min = 0 },
  { "seed", "integer", 1, "first per-image seed" },
  { "batch-size", "integer", 100, "sampling batch size", min = 1 },
  { "real", "integer", nil, "score N real Fashion-MNIST training images instead (the floor of each figure)",
    min = 1, meta = "N" },
}

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

function cli.train(o)
  local data, checkpoint
  if o.data then
    data = md.data.image_folder(o.data, { channels = o.image_channels, size = o.image_size, resize = o.resize,
                                          hflip = o.hflip, strict = o.strict })
    local name = o.data:gsub("/+$", ""):match("([^/]+)$") or "data"
    checkpoint = o.checkpoint or ("checkpoints/%s.safetensors"):format(name)
  else
    for _, flag in ipairs { "image_channels", "image_size", "resize", "hflip", "strict" } do
      if o[flag] ~= nil then error(("--%s applies to --data folders, not Fashion-MNIST"):format((flag:gsub("_", "-"))), 0) end
    end
    data = md.data.fashion_mnist { split = "train" }
    checkpoint = o.checkpoint or DEFAULT_CHECKPOINT
  end
  local classes = #data.classes > 1 and #data.classes or false
  local c, h, w = md.data.image_shape(data)
  local model = md.nn.UNet { in_channels = c, out_channels = c, model_channels = o.channels, num_classes = classes,
                             dropout = o.dropout, image_size = { h, w } }
  if md.dist.is_main() then
    if data.warning then io.stderr:write(data.warning .. "\n") end
    io.stderr:write(("U-Net: %d parameters, %d training images of %dx%dx%d%s\n"):format(model:num_parameters(),
      data.n, c, h, w, data.channels_detected and " (channels detected)" or ""))
  end
  local r = md.trainer.train {
    model = model, data = data, minutes = o.minutes or (not o.steps and 10 or nil), steps = o.steps,
    checkpoint = checkpoint, resume = not o.fresh, batch_size = o.batch_size, lr = o.lr, schedule = o.schedule,
    sample_every = o.sample_every, seed = o.seed, samples_dir = o.run_dir, run_dir = o.run_dir,
    eval_every = o.eval_every, eval_minutes = o.eval_minutes, eval_n = o.eval_n, eval_steps = o.eval_steps,
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
  local x = md.sample(model, { n = n or 16, class = class, sampler = o.sampler, steps = o.steps,
                               guidance = class and o.guidance or nil, eta = o.eta, seed = o.seed })
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
    cli[cmd](o)
  end)
  if not ok2 then io.stderr:write("moondust " .. cmd .. ": " .. bare(err) .. "\n"); return 1 end
  return 0
end

-- Figures against Fashion-MNIST's test split (computed once, cached):
-- Frechet distance, KID, precision and recall (k = 3), the Inception-score
-- analogue and class accuracy.
function cli.eval(o)
  local images, labels, what
  local t0 = md.time()
  if o.real then
    local train = md.data.fashion_mnist { split = "train", limit = o.real }
    images, labels = train.images, train.labels
    what = ("%d real Fashion-MNIST training images"):format(train.n)
  else
    local model = md.load(o.checkpoint)
    if not md.nn.Module.is_module(model) then error(o.checkpoint .. " holds no model config", 0) end
    local classes = model.config.num_classes
    if classes then
      labels = {}
      for i = 1, o.n do labels[i] = (i - 1) % classes end
    end
    local guidance = labels and o.guidance or nil
    images = md.sample(model, { n = o.n, class = labels, sampler = o.sampler, steps = o.steps, seed = o.seed,
                                guidance = guidance, batch_size = o.batch_size })
    what = ("%d samples of %s, %s-%d, guidance %s"):format(o.n, o.checkpoint, o.sampler, o.steps, guidance or "none")
  end
  local t1 = md.time()
  md.metrics.reference() -- computed once per feature network, then read from the cache
  local t2 = md.time()
  local m = md.metrics.score(images, labels)
  local t3 = md.time()
  print(what)
  print(md.metrics.format(m))
  print(("%s %.1f s, reference %.1f s, scoring %.1f s"):format(o.real and "loading" or "sampling", t1 - t0, t2 - t1, t3 - t2))
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
