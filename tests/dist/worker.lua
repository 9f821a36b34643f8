-- Run under mpirun by tests/lua/test_dist.lua: one case per invocation.
--   mpirun -np 2 lua5.4 tests/dist/worker.lua CASE [OUT [STEPS [resume]]]
local md = require "moondust"
local dist = md.dist
local case, out = arg[1], arg[2]
dist.init()
md.set_num_threads(1)

local cases = {}

-- allreduce of odd sizes, of zero elements and of a list; broadcast; all_gather of uneven shards
function cases.collectives()
  local r, n = dist.rank(), dist.size()
  local x = md.arange(7) + r * 100
  dist.allreduce_(x, "sum")
  for i = 1, 7 do assert(x[i] == 2 * (i - 1) + 100 * n * (n - 1) / 2, "allreduce sum " .. i) end
  local empty = md.zeros { 0 }
  dist.allreduce_(empty, "mean")
  local list = { md.full({ 3 }, r + 1), md.full({ 2, 5 }, 10 * (r + 1)) }
  dist.allreduce_(list, "mean")
  assert(list[1][3] == (n + 1) / 2 and list[2][2][5] == 10 * (n + 1) / 2, "allreduce of a list")
  local b = md.full({ 4 }, r)
  dist.broadcast_(b, n - 1)
  assert(b[4] == n - 1, "broadcast")
  local g = dist.all_gather(md.full({ r + 1, 2 }, r))
  assert(g:size(1) == n * (n + 1) / 2 and g[g:size(1)][1] == n - 1, "all_gather uneven")
  dist.barrier()
  if dist.is_main() then print("collectives ok") end
end

-- one rank fails: every rank must end, with the message, never hang
function cases.failure()
  dist.run(function()
    if dist.rank() == 1 then error("rank one gives up") end
    dist.barrier() -- rank 0 would wait here forever without the abort
  end)
end

-- A small denoiser trained with a global batch of 128, split over the ranks.
-- Each example's data and noise depend on (step, example index) only.
function cases.train()
  md.manual_seed(0)
  local L = md.nn
  local model = L.Sequential(L.Conv2d(1, 16, 3, { padding = 1 }), L.GroupNorm(4, 16), L.SiLU(),
                             L.Conv2d(16, 1, 3, { padding = 1 }))
  dist.broadcast_parameters(model)
  local opt = md.optim.AdamW(model, { lr = 1e-2 })
  local global, losses = 128, {}
  local first, count = dist.shard(global)
  for step = 1, 20 do
    local xs, ns = {}, {}
    for i = first, first + count - 1 do
      local g = md.Generator(step * 100003 + i)
      xs[#xs + 1], ns[#ns + 1] = g:rand { 1, 8, 8 }, g:randn { 1, 8, 8 }
    end
    local x, noise = md.stack(xs), md.stack(ns)
    local loss = md.mse_loss(model(x + noise * 0.5), noise)
    opt:zero_grad()
    loss:backward()
    dist.average_gradients(model)
    opt:step()
    local l = md.tensor { loss:item() }
    dist.allreduce_(l, "mean") -- the global batch's loss: equal shards, so the mean of means
    losses[step] = l[1]
  end
  if dist.is_main() then
    local f = assert(io.open(out, "w"))
    for _, l in ipairs(losses) do f:write(("%.9g\n"):format(l)) end
    f:close()
  end
end

-- md.trainer.train under mpirun: OUT gets the loss curve (rank 0 writes it).
-- STEPS steps in all; with RESUME = "resume", first STEPS // 2, then the rest
-- resumed from the checkpoint.
function cases.trainer()
  -- "resume": half, then resumed here; "continue": resume from what an earlier run left
  local steps, resume, continue = tonumber(arg[3]), arg[4] == "resume", arg[4] == "continue"
  local g = md.Generator(5)
  local ds = { images = g:randn { 48, 1, 8, 8 }:clamp(-1, 1), labels = g:randint(0, 10, { 48 }), n = 48 }
  local cfg = { model_channels = 8, channel_mult = { 1, 2 }, num_res_blocks = 1, attention_resolutions = {},
                num_head_channels = 8, norm_groups = 4 }
  local function run(n, again)
    md.manual_seed(0)
    return md.trainer.train { model = md.nn.UNet(cfg), data = ds, steps = n, batch_size = 12, warmup = 2,
                              checkpoint = out .. ".ck.safetensors", resume = again, checkpoint_every = 0,
                              progress = false, sample_every = 0, run_dir = out .. ".run" }
  end
  if resume then run(steps // 2, false) end
  local r = run(steps, resume or continue)
  if dist.is_main() then
    local f = assert(io.open(out, "w"))
    for _, l in ipairs(r.losses) do f:write(("%.9g\n"):format(l)) end
    f:close()
  end
end

-- md.sample over the ranks: 5 images (3 + 2), written by rank 0 as safetensors.
function cases.sample()
  md.manual_seed(0)
  local model = md.nn.UNet { model_channels = 8, channel_mult = { 1, 2 }, num_res_blocks = 1, attention_resolutions = {},
                             num_head_channels = 8, norm_groups = 4, num_classes = 3, image_size = 8 }
  model.image_size = 8
  local x = md.sample(model, { n = 5, class = { 0, 1, 2, 0, 1 }, steps = 3, guidance = 2, seed = 11, batch_size = 1,
                               progress = false, distributed = true })
  assert(x:size(1) == 5, "every rank gets all images")
  if dist.is_main() then md.save(out, { x = x }) end
end

dist.run(cases[case] or error("no case " .. tostring(case)))
dist.finalize()
