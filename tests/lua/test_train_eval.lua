-- Evaluation during training and the run folder: the trainer scores EMA
-- samples with md.metrics on schedule, logs every step window, plots, and
-- `moondust compare` overlays runs.
local T = require "harness"
local md = require "moondust"
local cli = require "moondust.cli"

local dir = os.tmpname()
os.remove(dir)
local cfg = { model_channels = 8, channel_mult = { 1, 2 }, num_res_blocks = 1, attention_resolutions = {},
              num_head_channels = 8, norm_groups = 4 }
local function data(size)
  md.manual_seed(1)
  return { images = md.randn { 16, 1, size, size }:clamp(-1, 1), labels = md.randint(0, 10, { 16 }), n = 16 }
end
local function lines(run_dir)
  local out = {}
  for line in io.lines(run_dir .. "/log.jsonl") do out[#out + 1] = md.core.json_decode(line) end
  return out
end
local have_gnuplot = os.execute("command -v gnuplot >/dev/null 2>&1") == true

T.test("eval_every scores EMA samples, logs them and ends with an evaluation", function()
  local r = md.trainer.train { model = md.nn.UNet(cfg), data = data(28), steps = 5, batch_size = 4,
                               checkpoint = dir .. "/a.safetensors", eval_every = 2, eval_n = 10, eval_steps = 2,
                               log_every = 1, progress = false, sample_every = 0 }
  T.eq(r.run_dir, dir .. "/a-run")
  local log = lines(r.run_dir)
  T.eq(#log, 5, "a line per step at log_every = 1")
  local scored = {}
  for _, l in ipairs(log) do
    T.truthy(l.loss > 0 and l.lr > 0 and l.images_per_second > 0, "loss, lr and images/s at step " .. l.step)
    if l.metrics then scored[#scored + 1] = l.step end
  end
  T.eq(table.concat(scored, " "), "2 4 5", "steps 2 and 4, and the last")
  local m = log[5].metrics
  T.truthy(m.fid > 0 and m.kid and m.precision >= 0 and m.recall >= 0 and m.class_accuracy >= 0, "the figures")
  T.eq(r.metrics.fid, m.fid, "the result holds the last evaluation")
  if have_gnuplot then
    local f = io.open(r.run_dir .. "/metrics_steps.png", "rb")
    T.truthy(f and f:read(4) == "\137PNG", "the metrics plot")
    if f then f:close() end
  end
end)

T.test("eval_minutes evaluates by training time", function()
  local r = md.trainer.train { model = md.nn.UNet(cfg), data = data(28), steps = 3, batch_size = 4,
                               checkpoint = dir .. "/m.safetensors", eval_minutes = 1e-5, eval_n = 10, eval_steps = 1,
                               progress = false, sample_every = 0 }
  local scored = 0
  for _, l in ipairs(lines(r.run_dir)) do if l.metrics then scored = scored + 1 end end
  T.eq(scored, 3, "every step takes longer than 0.6 ms")
end)

T.test("a resumed run appends to its log; a fresh one starts it again", function()
  local function run(steps, resume)
    return md.trainer.train { model = md.nn.UNet(cfg), data = data(8), steps = steps, batch_size = 4,
                              checkpoint = dir .. "/b.safetensors", log_every = 2, progress = false,
                              sample_every = 0, resume = resume }
  end
  run(4, false)
  T.eq(#lines(dir .. "/b-run"), 2)
  run(6, true)
  local log = lines(dir .. "/b-run")
  T.eq(#log, 3)
  T.eq(log[3].step, 6)
  T.truthy(log[3].wall_seconds >= log[2].wall_seconds, "wall time goes on")
  run(2, false)
  T.eq(#lines(dir .. "/b-run"), 1)
end)

T.test("evaluation that cannot score these images is an error before training", function()
  T.errors(function()
    md.trainer.train { model = md.nn.UNet(cfg), data = data(8), steps = 1, checkpoint = dir .. "/c.safetensors",
                       eval_every = 1, progress = false }
  end, "evaluation needs a feature network for 1x8x8 images")
  T.errors(function()
    md.trainer.train { model = md.nn.UNet(cfg), data = data(8), steps = 1, checkpoint = dir .. "/c.safetensors",
                       eval_evry = 1 }
  end, "did you mean 'eval_every'")
end)

T.test("moondust compare overlays run folders", function()
  local status = cli.run { "compare", dir .. "/a-run", dir .. "/b-run", "--out", dir .. "/cmp" }
  T.eq(status, have_gnuplot and 0 or 1)
  if have_gnuplot then
    for _, name in ipairs { "loss_steps", "loss_minutes", "metrics_steps", "metrics_minutes" } do
      local f = io.open(("%s/cmp/compare_%s.png"):format(dir, name), "rb")
      T.truthy(f and f:read(4) == "\137PNG", name)
      if f then f:close() end
    end
  end
  T.eq(cli.run { "compare", dir .. "/nowhere" }, 1)
  T.eq(cli.run { "compare", "--ot", "x" }, 2)
end)

T.test("moondust eval --json appends one line of figures per call", function()
  local out = dir .. "/evals/figures.jsonl"
  for _ = 1, 2 do T.eq(cli.run { "eval", "--real", "64", "--json", out }, 0) end
  local got = {}
  for line in io.lines(out) do got[#got + 1] = md.core.json_decode(line) end
  T.eq(#got, 2)
  T.eq(got[1].n, 64)
  T.truthy(got[1].fid > 0 and got[1].recall >= 0 and got[1].recall <= 1, "figures are there")
  T.near(got[2].fid, got[1].fid, 1e-9) -- the same images score the same
  T.eq(cli.run { "eval", "--real", "64", "--json", "/proc/nowhere/x.jsonl" }, 1)
end)

os.execute("rm -rf '" .. dir .. "'")
T.finish()
