-- The DDPM trainer shared by examples/ddpm_fashion.lua and scripts/moondust:
-- noise-prediction MSE at t drawn uniformly from 0..T-1, AdamW with warm-up,
-- gradient clipping, EMA, label dropout for classifier-free guidance, a
-- progress bar, sample grids and checkpoints that resume exactly.
--
--   md.trainer.train{model = md.nn.UNet{...}, data = md.data.fashion_mnist{},
--                    steps = 10000 or minutes = 10, checkpoint = "checkpoints/ddpm.safetensors"}
--
-- Options (defaults): schedule ("linear", T 1000), batch_size (128), lr
-- (2e-4), weight_decay (0), warmup (200 steps), grad_clip (1.0), ema_decay
-- (0.999), label_dropout (0.1), prediction ("eps" | "v"), seed (0),
-- sample_every (steps, 0 = never), samples_dir ("out"), checkpoint_every
-- (500 steps), resume (true: continue from the checkpoint if it exists),
-- progress (true), model_kind ("unet", how md.load rebuilds the model),
-- meta (extra metadata). Training is bounded: steps, minutes, or both;
-- Ctrl-C saves a checkpoint after the current step and stops (result.interrupted).
local md = require "moondust"
local options = require "moondust.options"

local trainer = {}

local function exists(path)
  local f = io.open(path, "rb")
  if f then f:close() end
  return f ~= nil
end

local function dirname(path) return path:match("^(.*)/[^/]*$") or "." end

-- Everything a resumed run needs, in one safetensors file.
local function save_state(o, s)
  md.core.mkdir_p(dirname(o.checkpoint))
  local meta = {
    model = o.model_kind, config = o.model.config, step = s.step, schedule = md.schedule.serialize(o.sched),
    prediction = o.prediction, loader = s.loader:state(), trainer_rng = s.gen:get_state(),
    global_rng = md.get_rng_state(), ema_updates = s.ema.updates, warmup = s.warm:state(),
    losses = s.losses, image_size = o.image_size,
  }
  for k, v in pairs(o.meta or {}) do meta[k] = v end
  md.save(o.checkpoint, { model = o.model, ema = s.ema, opt = s.opt }, meta)
end

local function restore_state(o, s)
  local tensors, meta = md.checkpoint.read(o.checkpoint)
  -- A resumed run continues the same diffusion: a different schedule would
  -- train a model that no longer fits the one it saves.
  if meta.schedule then
    local stored = md.schedule.get(meta.schedule, 1000)
    local same = stored.T == o.sched.T
    for i = 1, same and stored.T or 0 do
      if math.abs(stored.betas_list[i] - o.sched.betas_list[i]) > 1e-12 then same = false; break end
    end
    if not same then
      error(("train: %s was trained with a %s schedule of T = %d; this run asks for a %s schedule of T = %d "
        .. "(pass the same schedule, or fresh = true)"):format(o.checkpoint, stored.kind, stored.T, o.sched.kind,
        o.sched.T), 0)
    end
  end
  local sub = md.checkpoint.sub
  o.model:load_state_dict(sub(tensors, "model."))
  s.ema:load_state_dict(sub(tensors, "ema."))
  s.ema.updates = meta.ema_updates or 0
  s.opt:load_state_dict(sub(tensors, "opt."))
  s.loader:set_state(meta.loader)
  s.gen:set_state(meta.trainer_rng)
  md.set_rng_state(meta.global_rng)
  s.warm:set_state(meta.warmup or 0)
  s.step = meta.step
  s.losses = meta.losses or {}
end

-- One grid of samples from the EMA weights: a row per class (or 8 x 8
-- unconditional samples), DDIM 25 steps, guidance 3.
function trainer.sample_grid(model, ema, path, opts)
  opts = options.check("sample_grid", opts, { schedule = true, prediction = "string", image_size = "number",
                                              model_kind = "string", steps = "number", guidance = "number" })
  local cfg = model.config
  local sampler_model = md.checkpoint.builders[opts.model_kind or "unet"](cfg)
  ema:copy_to(sampler_model)
  local classes, per = cfg.num_classes, 8
  local labels
  if classes then
    labels = {}
    for c = 0, classes - 1 do for _ = 1, per do labels[#labels + 1] = c end end
  end
  local x = md.sample(sampler_model, { n = labels and #labels or 64, class = labels, steps = opts.steps or 25,
                                       guidance = labels and (opts.guidance or 3) or nil, seed = 1,
                                       schedule = opts.schedule, prediction = opts.prediction, progress = false,
                                       shape = { cfg.in_channels, opts.image_size, opts.image_size } })
  md.core.mkdir_p(dirname(path))
  md.image.save_grid(x, path, { nrow = per })
  return path
end

local train_options = {
  model = "table", data = "table", steps = "number", minutes = "number", checkpoint = "string", schedule = true,
  T = "number", batch_size = "number", lr = "number", weight_decay = "number", warmup = "number",
  grad_clip = "number", ema_decay = "number", label_dropout = "number", prediction = "string", seed = "number",
  sample_every = "number", samples_dir = "string", checkpoint_every = "number", resume = "boolean",
  progress = "boolean", model_kind = "string", meta = "table",
}

-- Every option by name, before anything runs.
local function check_options(opts)
  local w = "train"
  options.check(w, opts, train_options, 2)
  if not opts.model or not opts.data then error("train: needs model and data", 4) end
  if not opts.steps and not opts.minutes then error("train: give steps or minutes (training is always bounded)", 4) end
  if not md.is_tensor(opts.data.images) or opts.data.images:dim() ~= 4 then
    error("train: data.images must be an N x C x H x W tensor", 4)
  end
  options.integer(w, "steps", opts.steps, 1, nil, 2)
  options.number(w, "minutes", opts.minutes, 0, nil, 2)
  if opts.minutes == 0 then error("train: minutes must be positive, got 0", 4) end
  options.integer(w, "T", opts.T, 1, nil, 2)
  options.integer(w, "batch_size", opts.batch_size, 1, nil, 2)
  options.number(w, "lr", opts.lr, 0, 1e3, 2)
  options.number(w, "weight_decay", opts.weight_decay, 0, nil, 2)
  options.integer(w, "warmup", opts.warmup, 0, nil, 2)
  options.number(w, "grad_clip", opts.grad_clip, 0, nil, 2)
  options.number(w, "ema_decay", opts.ema_decay, 0, 1, 2)
  options.number(w, "label_dropout", opts.label_dropout, 0, 1, 2)
  options.choice(w, "prediction", opts.prediction, { "eps", "v" }, 2)
  options.integer(w, "seed", opts.seed, nil, nil, 2)
  options.integer(w, "sample_every", opts.sample_every, 0, nil, 2)
  options.integer(w, "checkpoint_every", opts.checkpoint_every, 0, nil, 2)
  options.choice(w, "model_kind", opts.model_kind, (function()
    local kinds = {}
    for k in pairs(md.checkpoint.builders) do kinds[#kinds + 1] = k end
    table.sort(kinds)
    return kinds
  end)(), 2)
end

-- Found now rather than at the first save, 500 steps or an hour later.
local function check_writable(dir)
  local made, why = pcall(md.core.mkdir_p, dir)
  if not made then error(("train: cannot write checkpoints into %s: %s"):format(dir, tostring(why)), 0) end
  local probe = ("%s/.moondust-write-test-%d-%d"):format(dir, os.time(), math.random(1 << 30))
  local f, err = io.open(probe, "wb")
  if not f then error(("train: cannot write checkpoints into %s: %s"):format(dir, tostring(err)), 0) end
  f:close()
  os.remove(probe)
end

-- True when every parameter is finite.
local function finite_params(model)
  return #md.checkpoint.nonfinite(model:state_dict()) == 0
end

function trainer.train(opts)
  check_options(opts)
  local o = setmetatable({}, { __index = opts })
  o.model_kind = opts.model_kind or "unet"
  local sched = md.schedule.get(opts.schedule or "linear", opts.T)
  o.prediction = opts.prediction or "eps"
  o.checkpoint = opts.checkpoint or "checkpoints/ddpm.safetensors"
  o.image_size = opts.data.images:size(3)
  local model, cfg = opts.model, opts.model.config
  model.schedule = sched
  o.sched = sched
  local bs = opts.batch_size or 128
  local s = {
    step = 0, losses = {},
    loader = md.data.loader(opts.data, { batch_size = bs, drop_last = true, generator = md.Generator((opts.seed or 0) + 1) }),
    gen = md.Generator((opts.seed or 0) + 2),
  }
  check_writable(dirname(o.checkpoint))
  md.manual_seed(opts.seed or 0)
  s.opt = md.optim.AdamW(model, { lr = opts.lr or 2e-4, weight_decay = opts.weight_decay or 0 })
  s.warm = md.optim.warmup(s.opt, opts.warmup or 200)
  s.ema = md.optim.EMA(model, opts.ema_decay or 0.999)
  local last_good = nil -- the step of the last checkpoint written (or resumed from)
  if opts.resume ~= false and exists(o.checkpoint) then
    restore_state(o, s)
    last_good = s.step
    io.stderr:write(("resumed from %s at step %d\n"):format(o.checkpoint, s.step))
  end
  local null_class = cfg.num_classes
  local p_drop = null_class and (opts.label_dropout or 0.1) or 0
  local max_steps = opts.steps or math.huge
  local deadline = opts.minutes and md.progress.now() + 60 * opts.minutes or math.huge
  local bar = md.progress.new { total = opts.steps, label = "train", quiet = opts.progress == false }
  local every, ck_every = opts.sample_every or 0, opts.checkpoint_every or 500
  model:train()
  -- Ctrl-C finishes the step, saves and stops; the handler goes with this scope, even on errors
  md.core.catch_interrupt(true)
  local _ <close> = setmetatable({}, { __close = function() md.core.catch_interrupt(false) end })
  local interrupted = false
  while s.step < max_steps and md.progress.now() < deadline and not interrupted do
    local x0, y = s.loader:next()
    local n = x0:size(1)
    local t = s.gen:randint(0, sched.T, { n })
    local noise = s.gen:randn(x0:shape())
    if null_class then
      local drop = s.gen:rand({ n }):lt(p_drop)
      y = md.where(drop, null_class, y)
    else
      y = nil
    end
    local xt = md.q_sample(x0, t, noise, sched.alphas_cumprod)
    local target = o.prediction == "v" and md.v_target(x0, t, noise, sched.alphas_cumprod) or noise
    local loss = md.mse_loss(model(xt, t, y), target)
    local lv = loss:item()
    if lv ~= lv or lv == math.huge or lv == -math.huge then
      bar:finish()
      error(("train: the loss became %s at step %d; stopped. The last good checkpoint is %s (step %s)"):format(
        tostring(lv), s.step + 1, o.checkpoint, tostring(last_good or "none")), 0)
    end
    s.opt:zero_grad()
    loss:backward()
    md.optim.clip_grad_norm(s.opt.params, opts.grad_clip or 1.0)
    s.opt:step()
    if not finite_params(model) then -- checked after the update: only finite weights are ever saved
      bar:finish()
      error(("train: the weights became NaN/Inf at step %d (lr %g too high?); stopped. The last good checkpoint is %s (step %s)"):format(
        s.step + 1, s.opt.lr, o.checkpoint, tostring(last_good or "none")), 0)
    end
    s.warm:step()
    s.ema:update(model)
    s.step = s.step + 1
    s.losses[#s.losses + 1] = lv
    bar:update(s.step, { loss = lv, images = n })
    if every > 0 and s.step % every == 0 then
      trainer.sample_grid(model, s.ema, ("%s/samples_%06d.png"):format(opts.samples_dir or "out", s.step),
        { schedule = sched, prediction = o.prediction, image_size = o.image_size, model_kind = o.model_kind })
    end
    if ck_every > 0 and s.step % ck_every == 0 then
      save_state(o, s)
      last_good = s.step
    end
    interrupted = md.core.interrupted()
  end
  bar:finish()
  save_state(o, s)
  if interrupted then io.stderr:write(("interrupted: saved step %d to %s\n"):format(s.step, o.checkpoint)) end
  return { steps = s.step, losses = s.losses, checkpoint = o.checkpoint, ema = s.ema, interrupted = interrupted,
           images_per_second = bar.images / math.max(md.progress.now() - bar.start, 1e-9) }
end

return trainer
