-- The diffusion trainer shared by examples/ddpm_fashion.lua and scripts/moondust:
-- the diffusion's loss (md.diffusion: DDPM-family objectives or EDM), AdamW with warm-up,
-- gradient clipping, EMA, label dropout for classifier-free guidance, a
-- progress bar, sample grids and checkpoints that resume exactly.
--
--   md.trainer.train{model = md.nn.UNet{...}, data = md.data.fashion_mnist{},
--                    steps = 10000 or minutes = 10, checkpoint = "checkpoints/ddpm.safetensors"}
--
-- Options (defaults): diffusion (md.diffusion{...} or md.diffusion.edm{...};
-- without it one from schedule ("linear"), T (1000) and prediction ("eps" |
-- "x0" | "v")), loss (function(model, x0, y, draw, diffusion) -> the
-- batch's scalar loss; default the mean of diffusion:loss), batch_size
-- (128), lr (2e-4), weight_decay (0), warmup (200 steps), lr_decay
-- ("constant" | "cosine" | "linear": from lr to lr_final * lr (0) over the
-- budget, steps or minutes, whichever runs out first; a run resumed with
-- minutes spreads the rest of the decay over them), grad_clip (1.0),
-- ema_decay (0.999), label_dropout (0.1), seed (0),
-- sample_every (steps, 0 = never), samples_dir ("out"), checkpoint_every
-- (500 steps), resume (true: continue from the checkpoint if it exists),
-- progress (true), model_kind ("unet", how md.load rebuilds the model),
-- meta (extra metadata). Training is bounded: steps, minutes, or both;
-- Ctrl-C saves a checkpoint after the current step and stops (result.interrupted).
--
-- The run folder (run_dir; default samples_dir when given, else the
-- checkpoint's path without .safetensors and with "-run"): log.jsonl with a line every
-- log_every steps (50: step, wall time, mean loss, lr, images/s) and after
-- every evaluation (its metrics), and gnuplot PNGs of loss and metrics
-- against steps and minutes, refreshed as it goes (md.runlog). Evaluation:
-- eval_every (steps) and/or eval_minutes (minutes of training between
-- evaluations) sample eval_n images (500) with DDIM-eval_steps (20) and
-- guidance eval_guidance (3) from the EMA weights and score them with
-- md.metrics (eval_net, eval_reference: the shipped Fashion-MNIST network
-- and test split by default); a run with evaluations ends with one.
-- Evaluation time does not count against `minutes`.
--
-- Under mpirun (md.dist) the same call trains data-parallel: rank 0's
-- weights go to every rank, every rank reads the same global batch of
-- batch_size from the loader and takes its shard of the rows, with the
-- timesteps, noise and label dropout drawn for the whole global batch, so
-- each example's randomness depends on (seed, step, row) and not on the
-- number of ranks; gradients are summed in one allreduce; rank 0 decides
-- when to stop and alone writes checkpoints, grids, logs and evaluations.
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
    model = o.model_kind, config = o.model.config, step = s.step, diffusion = o.diffusion:serialize(),
    importance_history = o.diffusion.history, loader = s.loader:state(), trainer_rng = s.gen:get_state(),
    global_rng = md.get_rng_state(), ema_updates = s.ema.updates, warmup = s.warm:state(),
    lr_progress = s.warm:progress(),
    losses = s.losses, image_size = o.image_size, classes = o.model.classes,
  }
  for k, v in pairs(o.meta or {}) do meta[k] = v end
  local parts = { model = o.model, ema = s.ema, opt = s.opt }
  if o.autoencoder then -- latent diffusion: the decoder travels with the model
    parts.autoencoder, meta.autoencoder = o.autoencoder, { model = "autoencoder_kl", config = o.autoencoder.config }
  end
  md.save(o.checkpoint, parts, meta)
end

local function restore_state(o, s)
  local tensors, meta = md.checkpoint.read(o.checkpoint)
  -- A resumed run continues the same diffusion: another would train a
  -- model that no longer fits the one it saves.
  local stored = md.diffusion.from_meta(meta)
  if stored then
    local why = md.diffusion.difference(stored, o.diffusion)
    if why then
      error(("train: %s was trained with %s; this run asks for %s (pass the same diffusion, or fresh = true)"):format(
        o.checkpoint, why[1], why[2]), 0)
    end
  end
  local ae_now = o.autoencoder and md.core.json_encode(o.autoencoder.config)
  local ae_then = meta.autoencoder and md.core.json_encode(meta.autoencoder.config)
  if ae_now ~= ae_then then
    error(("train: %s was trained %s; this run %s (pass the same autoencoder, or fresh = true)"):format(o.checkpoint,
      ae_then and "on the latents of an autoencoder" or "on images", ae_now and (ae_then and "gives another autoencoder"
      or "gives an autoencoder") or "gives none"), 0)
  end
  if o.diffusion.history and meta.importance_history then o.diffusion.history = meta.importance_history end
  local sub = md.checkpoint.sub
  o.model:load_state_dict(sub(tensors, "model."))
  s.ema:load_state_dict(sub(tensors, "ema."))
  s.ema.updates = meta.ema_updates or 0
  s.opt:load_state_dict(sub(tensors, "opt."))
  s.loader:set_state(meta.loader)
  s.gen:set_state(meta.trainer_rng)
  md.set_rng_state(meta.global_rng)
  s.warm:set_state(meta.warmup or 0)
  s.warm:set_progress(meta.lr_progress or 0)
  s.step = meta.step
  s.losses = meta.losses or {}
end

local sample_options = { diffusion = "table", image_size = true, model_kind = "string", steps = "number",
                         guidance = "number", autoencoder = "table" }

-- n samples from the EMA weights (DDIM, seed 1): labels[i] is the class of
-- image i (nil for an unconditional model). -> images, labels.
local function ema_samples(model, ema, n, labels, opts)
  local cfg = model.config
  local sampler_model = md.checkpoint.builders[opts.model_kind or "unet"](cfg)
  ema:copy_to(sampler_model)
  local x = md.sample(sampler_model, { n = n, class = labels, steps = opts.steps or 25,
                                       guidance = labels and (opts.guidance or 3) or nil, seed = 1,
                                       diffusion = opts.diffusion, progress = false, autoencoder = opts.autoencoder,
                                       shape = md.sampler.image_shape(cfg, opts.image_size) })
  return x, labels
end

-- One grid of samples from the EMA weights: a row per class (or 8 x 8
-- unconditional samples), DDIM 25 steps, guidance 3.
function trainer.sample_grid(model, ema, path, opts)
  opts = options.check("sample_grid", opts, sample_options)
  local classes, per = model.config.num_classes, 8
  local labels
  if classes then
    labels = {}
    for c = 0, classes - 1 do for _ = 1, per do labels[#labels + 1] = c end end
  end
  local x = ema_samples(model, ema, labels and #labels or 64, labels, opts)
  md.core.mkdir_p(dirname(path))
  md.image.save_grid(x, path, { nrow = per })
  return path
end

-- md.metrics figures of n EMA samples (classes in turn), as md.metrics.score gives them.
function trainer.evaluate(model, ema, n, opts, score_opts)
  opts = options.check("evaluate", opts, sample_options)
  local classes = model.config.num_classes
  local labels
  if classes then
    labels = {}
    for i = 1, n do labels[i] = (i - 1) % classes end
  end
  return md.metrics.score(ema_samples(model, ema, n, labels, opts), labels, score_opts)
end

-- The figures a run log keeps of an evaluation (the per-class shares stay out).
local logged_metrics = { "fid", "kid", "kid_se", "precision", "recall", "is", "class_accuracy" }

local train_options = {
  model = "table", data = "table", steps = "number", minutes = "number", checkpoint = "string", schedule = true,
  diffusion = "table", loss = "function",
  T = "number", batch_size = "number", lr = "number", weight_decay = "number", warmup = "number",
  lr_decay = "string", lr_final = "number",
  grad_clip = "number", ema_decay = "number", label_dropout = "number", prediction = "string", seed = "number",
  sample_every = "number", samples_dir = "string", checkpoint_every = "number", resume = "boolean",
  progress = "boolean", model_kind = "string", meta = "table", run_dir = "string", log_every = "number",
  eval_every = "number", eval_minutes = "number", eval_n = "number", eval_steps = "number",
  eval_guidance = "number", eval_net = "table", eval_reference = "table", autoencoder = "table",
}

-- Every option by name, before anything runs.
local function check_options(opts)
  local w = "train"
  options.check(w, opts, train_options, 2)
  if not opts.model or not opts.data then error("train: needs model and data", 4) end
  if not opts.steps and not opts.minutes then error("train: give steps or minutes (training is always bounded)", 4) end
  if not md.data.is_image_set(opts.data) then
    error("train: data.images must be an N x C x H x W tensor or a byte store (md.data.image_folder)", 4)
  end
  options.integer(w, "steps", opts.steps, 1, nil, 2)
  options.number(w, "minutes", opts.minutes, 0, nil, 2)
  if opts.minutes == 0 then error("train: minutes must be positive, got 0", 4) end
  options.integer(w, "T", opts.T, 1, nil, 2)
  options.integer(w, "batch_size", opts.batch_size, 1, nil, 2)
  options.number(w, "lr", opts.lr, 0, 1e3, 2)
  options.number(w, "weight_decay", opts.weight_decay, 0, nil, 2)
  options.integer(w, "warmup", opts.warmup, 0, nil, 2)
  options.choice(w, "lr_decay", opts.lr_decay, { "constant", "cosine", "linear" }, 2)
  options.number(w, "lr_final", opts.lr_final, 0, 1, 2)
  if opts.lr_final and (opts.lr_decay or "constant") == "constant" then
    error("train: lr_final is where the lr decay ends: give lr_decay = \"cosine\" or \"linear\" with it", 4)
  end
  options.number(w, "grad_clip", opts.grad_clip, 0, nil, 2)
  options.number(w, "ema_decay", opts.ema_decay, 0, 1, 2)
  options.number(w, "label_dropout", opts.label_dropout, 0, 1, 2)
  options.choice(w, "prediction", opts.prediction, { "eps", "x0", "v" }, 2)
  if opts.diffusion and (opts.schedule or opts.T or opts.prediction) then
    error("train: schedule, T and prediction are the diffusion's: give them to md.diffusion{...}, not beside it", 4)
  end
  local ae = opts.autoencoder or opts.model.autoencoder
  if ae then
    local want, dc, dh, dw = nil, md.data.image_shape(opts.data)
    if type(ae.latent_shape) ~= "function" then error("train: autoencoder must be an md.autoencoder.AutoencoderKL", 4) end
    if not ae.config.latent_std then
      error("train: the autoencoder has no latent scaling yet (ae:fit_scale(images), which md.autoencoder.train does)", 4)
    end
    want = ae:latent_shape()
    if dc ~= want[1] or dh ~= want[2] or dw ~= want[3] then
      error(("train: the autoencoder's latents are %dx%dx%d, the data holds %dx%dx%d (md.autoencoder.latent_data(ae, "
        .. "images) makes them)"):format(want[1], want[2], want[3], dc, dh, dw), 4)
    end
  end
  if opts.diffusion and not md.diffusion.is_diffusion(opts.diffusion) then
    error("train: diffusion must be an md.diffusion{...} or md.diffusion.edm{...}", 4)
  end
  options.integer(w, "seed", opts.seed, nil, nil, 2)
  options.integer(w, "sample_every", opts.sample_every, 0, nil, 2)
  options.integer(w, "checkpoint_every", opts.checkpoint_every, 0, nil, 2)
  options.integer(w, "log_every", opts.log_every, 1, nil, 2)
  options.integer(w, "eval_every", opts.eval_every, 0, nil, 2)
  options.number(w, "eval_minutes", opts.eval_minutes, 0, nil, 2)
  options.integer(w, "eval_n", opts.eval_n, 2, nil, 2)
  options.integer(w, "eval_steps", opts.eval_steps, 1, nil, 2)
  options.number(w, "eval_guidance", opts.eval_guidance, 0, nil, 2)
  options.choice(w, "model_kind", opts.model_kind, (function()
    local kinds = {}
    for k in pairs(md.checkpoint.builders) do kinds[#kinds + 1] = k end
    table.sort(kinds)
    return kinds
  end)(), 2)
end

-- A number summed over the ranks.
local function all_sum(v)
  local t = md.tensor { v }
  md.dist.allreduce_(t, "sum")
  return t[1]
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
  local d = opts.diffusion or md.diffusion { schedule = opts.schedule, T = opts.T, prediction = opts.prediction }
  o.diffusion = d
  o.checkpoint = opts.checkpoint or "checkpoints/ddpm.safetensors"
  local _, data_h, data_w = md.data.image_shape(opts.data)
  o.image_size = data_h == data_w and data_h or { data_h, data_w }
  local model, cfg = opts.model, opts.model.config
  md.diffusion.attach(model, d)
  -- latent diffusion: the model samples through its autoencoder from now on (md.sample, md.save)
  o.autoencoder = opts.autoencoder or model.autoencoder
  model.autoencoder = o.autoencoder
  -- the class names, for md.sample(model, {class = "Sneaker"}) after md.load
  local names = opts.data.classes
  if cfg.num_classes and type(names) == "table" and #names == cfg.num_classes then model.classes = names end
  local bs = opts.batch_size or 128
  local s = {
    step = 0, losses = {},
    loader = md.data.loader(opts.data, { batch_size = bs, drop_last = true, generator = md.Generator((opts.seed or 0) + 1) }),
    gen = md.Generator((opts.seed or 0) + 2),
  }
  local dist = md.dist
  local rank, world = dist.init()
  local main = rank == 0
  if main then check_writable(dirname(o.checkpoint)) end
  if world > 1 and d.history then -- each rank would learn its own probabilities from its shard
    error("train: timesteps = \"importance\" is not supported under mpirun yet", 0)
  end
  local eval_steps_every, eval_seconds = opts.eval_every or 0, (opts.eval_minutes or 0) * 60
  local evaluating = main and (eval_steps_every > 0 or eval_seconds > 0)
  local score_opts = { net = opts.eval_net, reference = opts.eval_reference }
  if evaluating then
    local net = opts.eval_net or md.metrics.default_net()
    local c, dc, dh, dw = net.config, md.data.image_shape(opts.data)
    local ae = o.autoencoder
    if ae then dc, dh, dw = ae.config.in_channels, ae.height, ae.width end -- samples are decoded first
    if c.in_channels ~= dc or c.height ~= dh or c.width ~= dw then
      error(("train: evaluation needs a feature network for %dx%dx%d images; %s takes %dx%dx%d "
        .. "(train one with scripts/train_feature_net.lua and pass eval_net and eval_reference)"):format(
        dc, dh, dw, opts.eval_net and "eval_net" or "the shipped Fashion-MNIST network",
        c.in_channels, c.height, c.width), 0)
    end
    if opts.eval_net and not opts.eval_reference then
      error("train: eval_net needs its eval_reference (md.metrics.reference{data = ..., net = ...})", 0)
    end
  end
  md.manual_seed(opts.seed or 0)
  dist.broadcast_parameters(model) -- before the EMA copies them
  s.opt = md.optim.AdamW(model, { lr = opts.lr or 2e-4, weight_decay = opts.weight_decay or 0 })
  s.warm = md.optim.lr_schedule(s.opt, { warmup = opts.warmup or 200, decay = opts.lr_decay, final = opts.lr_final })
  s.ema = md.optim.EMA(model, opts.ema_decay or 0.999)
  local last_good = nil -- the step of the last checkpoint written (or resumed from)
  if opts.resume ~= false and exists(o.checkpoint) then
    restore_state(o, s)
    last_good = s.step
    if main then io.stderr:write(("resumed from %s at step %d\n"):format(o.checkpoint, s.step)) end
  end
  if world > 1 then -- every rank must go on from the same step (resuming reads the checkpoint on every host)
    local root_step = md.tensor { s.step }
    dist.broadcast_(root_step, 0)
    if root_step[1] ~= s.step then
      error(("train: rank %d starts at step %d, rank 0 at step %d: resuming needs %s on every host"):format(
        rank, s.step, root_step[1], o.checkpoint), 0)
    end
  end
  local run = main and md.runlog.open(opts.run_dir or opts.samples_dir or o.checkpoint:gsub("%.safetensors$", "") .. "-run",
                                      { fresh = last_good == nil }) or nil
  local log_every = opts.log_every or 50
  local window = { loss = 0, steps = 0, images = 0, start = md.progress.now() }
  -- One log line for the steps since the last; `now` ends their time window.
  local function log(metrics, now)
    if not run then return end
    now = now or md.progress.now()
    local elapsed = now - window.start
    run:log { step = s.step, loss = window.steps > 0 and window.loss / window.steps or nil, lr = s.opt.lr,
              images_per_second = window.images > 0 and window.images / math.max(elapsed, 1e-9) or nil,
              metrics = metrics }
    window.loss, window.steps, window.images, window.start = 0, 0, 0, now
  end
  local sample_opts = { diffusion = d, image_size = o.image_size, model_kind = o.model_kind, autoencoder = o.autoencoder }
  local eval_opts = { diffusion = d, image_size = o.image_size, model_kind = o.model_kind, steps = opts.eval_steps or 20,
                      guidance = opts.eval_guidance or 3, autoencoder = o.autoencoder }
  -- seconds spent evaluating; the training seconds, figures and step of the last evaluation
  local paused, last_eval_seconds, last_metrics, last_eval_step = 0, 0, nil, nil
  local loop_start, deadline
  local function trained_seconds() return md.progress.now() - loop_start - paused end
  -- Scores the EMA weights, logs and plots; the clock of `minutes` stops meanwhile.
  local function evaluate()
    local t0 = md.progress.now()
    local m = trainer.evaluate(model, s.ema, opts.eval_n or 500, eval_opts, score_opts)
    local figures = {}
    for _, k in ipairs(logged_metrics) do figures[k] = m[k] end
    log(figures, t0)
    run:plot()
    local spent = md.progress.now() - t0
    paused, deadline, window.start = paused + spent, deadline + spent, window.start + spent
    last_eval_seconds, last_metrics, last_eval_step = trained_seconds(), m, s.step
  end
  local batch_loss = opts.loss or function(m, x, labels, dr, diff) return diff:loss(m, x, labels, dr):mean() end
  local null_class = cfg.num_classes
  local p_drop = null_class and (opts.label_dropout or 0.1) or 0
  local max_steps = opts.steps or math.huge
  loop_start = md.progress.now()
  deadline = opts.minutes and loop_start + 60 * opts.minutes or math.huge
  -- The share of the budget spent, for the lr decay: step / steps (steps
  -- counts from the start, so an interrupted run resumes exactly), or of
  -- this call's minutes, the rest of the decay the checkpoint left spread
  -- over them; whichever is further on.
  local start_progress, decaying = s.warm:progress(), (opts.lr_decay or "constant") ~= "constant"
  local function budget_spent()
    local share = opts.steps and s.step / max_steps or 0
    if opts.minutes then
      share = math.max(share, start_progress + (1 - start_progress) * math.min(trained_seconds() / (60 * opts.minutes), 1))
      if world > 1 then -- every rank must take the same lr: rank 0's clock decides
        local t = md.tensor { share }
        dist.broadcast_(t, 0)
        share = t[1]
      end
    end
    return share
  end
  local bar = md.progress.new { total = opts.steps, label = "train", quiet = opts.progress == false or not main }
  local every, ck_every = opts.sample_every or 0, opts.checkpoint_every or 500
  model:train()
  -- Ctrl-C finishes the step, saves and stops; the handler goes with this scope, even on errors
  md.core.catch_interrupt(true)
  local _ <close> = setmetatable({}, { __close = function() md.core.catch_interrupt(false) end })
  local interrupted = false
  local first, count = dist.shard(bs) -- this rank's rows of every global batch
  local stop = s.step >= max_steps
  while not stop do
    local x0, y = s.loader:next()
    local n = x0:size(1)
    local draw = d:draw(s.gen, x0)
    if null_class then
      local drop = s.gen:rand({ n }):lt(p_drop)
      y = md.where(drop, null_class, y)
    else
      y = nil
    end
    if world > 1 then
      x0 = x0:narrow(1, first, count)
      for k, v in pairs(draw) do draw[k] = v:narrow(1, first, count) end
      if y then y = y:narrow(1, first, count) end
    end
    local loss = batch_loss(model, x0, y, draw, d)
    if not md.is_tensor(loss) or loss:numel() ~= 1 then
      error("train: the loss function must return the batch's loss as a one-element tensor", 0)
    end
    if world > 1 then loss = loss * (count / n) end -- the shard's part of the global batch's mean
    local lv = loss:item()
    if world > 1 then lv = all_sum(lv) end
    if lv ~= lv or lv == math.huge or lv == -math.huge then
      bar:finish()
      error(("train: the loss became %s at step %d; stopped. The last good checkpoint is %s (step %s)"):format(
        tostring(lv), s.step + 1, o.checkpoint, tostring(last_good or "none")), 0)
    end
    s.opt:zero_grad()
    loss:backward()
    if world > 1 then dist.sum_gradients(model) end
    md.optim.clip_grad_norm(s.opt.params, opts.grad_clip or 1.0)
    if decaying then s.warm:set_progress(budget_spent()) end
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
    window.loss, window.steps, window.images = window.loss + lv, window.steps + 1, window.images + n
    local eval_due = (eval_steps_every > 0 and s.step % eval_steps_every == 0)
      or (eval_seconds > 0 and trained_seconds() - last_eval_seconds >= eval_seconds)
    if eval_due then
      evaluate()
    elseif s.step % log_every == 0 and not (evaluating and s.step == max_steps) then -- (the last evaluation logs it)
      log()
      if s.step % (10 * log_every) == 0 then run:plot() end
    end
    if main and every > 0 and s.step % every == 0 then
      trainer.sample_grid(model, s.ema, ("%s/samples_%06d.png"):format(opts.samples_dir or "out", s.step), sample_opts)
    end
    if ck_every > 0 and s.step % ck_every == 0 then
      if main then save_state(o, s) end
      last_good = s.step
    end
    interrupted = md.core.interrupted()
    -- rank 0's clock and Ctrl-C decide for everyone (1 = stop, 2 = interrupted)
    local verdict = main and ((interrupted and 2) or ((s.step >= max_steps or md.progress.now() >= deadline) and 1) or 0) or 0
    if world > 1 then verdict = all_sum(verdict) end
    stop, interrupted = verdict > 0, verdict == 2
  end
  bar:finish()
  if main then save_state(o, s) end
  if evaluating and not interrupted and last_eval_step ~= s.step then evaluate()
  elseif run then
    if window.steps > 0 then log() end
    run:plot()
  end
  if interrupted then io.stderr:write(("interrupted: saved step %d to %s\n"):format(s.step, o.checkpoint)) end
  return { steps = s.step, losses = s.losses, checkpoint = o.checkpoint, ema = s.ema, interrupted = interrupted,
           images_per_second = bar.images / math.max(trained_seconds(), 1e-9), metrics = last_metrics,
           run_dir = run and run.dir }
end

return trainer
