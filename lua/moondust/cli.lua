-- The command-line tool behind scripts/moondust.
local md = require "moondust"

local cli = {}

local usage = {
  main = [[
usage: moondust <command> [options]
commands:
  train    train a class-conditional DDPM U-Net on Fashion-MNIST (or a folder of PNGs)
  sample   sample from a checkpoint into a PNG grid (and optionally single PNGs)
  eval     score samples of a checkpoint (or real images) with md.metrics
run `moondust <command> --help` for its options]],
  train = [[
usage: moondust train [options]
  --minutes M         stop after M minutes (default 10)
  --steps N           stop after N steps (whichever comes first)
  --checkpoint PATH   where to save and resume (default checkpoints/ddpm_fashion.safetensors)
  --fresh             start over even if the checkpoint exists (default: resume)
  --data DIR          a folder of PNGs instead of Fashion-MNIST
  --channels C        model_channels of the U-Net (default 32)
  --batch-size B      (default 128)
  --lr LR             AdamW learning rate (default 5e-4)
  --dropout P         dropout in the ResBlocks (default 0: short runs do not overfit)
  --schedule NAME     linear | cosine | scaled_linear (default linear)
  --sample-every N    write out/samples_<step>.png every N steps (default 1000, 0 = never)
  --seed S            (default 0)
  --threads N         (default: all cores)]],
  sample = [[
usage: moondust sample [options]
  --checkpoint PATH   (default checkpoints/ddpm_fashion.safetensors)
  --out PATH          grid PNG (default out/samples.png)
  --n N               number of images (default 100: ten of each class when --class is not given)
  --class C           class label 0..9 for all images; "none" for unconditional
  --sampler S         ddim | ddpm (default ddim)
  --steps N           sampling steps (default 50 for ddim, 1000 for ddpm)
  --guidance W        classifier-free guidance scale (default 3)
  --eta E             DDIM eta (default 0)
  --seed S            first per-image seed (default 1)
  --nrow R            images per grid row (default 10)
  --singles DIR       also write each image as DIR/<i>.png
  --threads N]],
  eval = [[
usage: moondust eval [options]
  --checkpoint PATH   the diffusion checkpoint to sample (default checkpoints/ddpm_fashion.safetensors)
  --n N               number of samples (default 1000, classes in turn when the model has classes)
  --sampler S         ddim | ddpm (default ddim)
  --steps N           sampling steps (default 50)
  --guidance W        classifier-free guidance scale (default 3)
  --seed S            first per-image seed (default 1)
  --batch-size B      sampling batch size (default 100)
  --real N            score N real Fashion-MNIST training images instead (the floor of each figure)
  --threads N
Figures against Fashion-MNIST's test split (computed once, cached): Frechet distance, KID (+- the
spread over subsets), precision and recall (k = 3), Inception-score analogue, class accuracy.]],
}

-- --key value pairs and --flags into a table.
local function parse(args, first)
  local o = {}
  local i = first
  while i <= #args do
    local a = args[i]
    local key = a:match("^%-%-([%w%-]+)$")
    if not key then error("unexpected argument '" .. a .. "' (try --help)", 0) end
    key = key:gsub("%-", "_")
    local nxt = args[i + 1]
    if key == "help" or key == "fresh" then
      o[key] = true
      i = i + 1
    else
      if nxt == nil then error("--" .. key .. " needs a value", 0) end
      o[key] = tonumber(nxt) or nxt
      i = i + 2
    end
  end
  return o
end

function cli.train(o)
  if o.threads then md.set_num_threads(o.threads) end
  local data = o.data and md.data.png_folder(o.data) or md.data.fashion_mnist { split = "train" }
  local classes = #data.classes > 1 and #data.classes or nil
  local model = md.nn.UNet { in_channels = data.images:size(2), out_channels = data.images:size(2),
                             model_channels = o.channels or 32, num_classes = classes, dropout = o.dropout or 0 }
  io.stderr:write(("U-Net: %d parameters, %d training images\n"):format(model:num_parameters(), data.n))
  local r = md.trainer.train {
    model = model, data = data, minutes = o.minutes or (not o.steps and 10 or nil), steps = o.steps,
    checkpoint = o.checkpoint or "checkpoints/ddpm_fashion.safetensors", resume = not o.fresh,
    batch_size = o.batch_size, lr = o.lr or 5e-4, schedule = o.schedule, sample_every = o.sample_every or 1000,
    seed = o.seed,
  }
  print(("trained to step %d (%.1f images/s); checkpoint %s"):format(r.steps, r.images_per_second, r.checkpoint))
end

function cli.sample(o)
  if o.threads then md.set_num_threads(o.threads) end
  local model = md.load(o.checkpoint or "checkpoints/ddpm_fashion.safetensors")
  if not md.nn.Module.is_module(model) then error("sample: the checkpoint holds no model config", 0) end
  local n, class = o.n, o.class
  local classes = model.config.num_classes
  if class == "none" then class = nil
  elseif class == nil and classes then
    local per = math.max(1, (n or 10 * classes) // classes)
    class = {}
    for c = 0, classes - 1 do for _ = 1, per do class[#class + 1] = c end end
    n = #class
  end
  local x = md.sample(model, { n = n or 16, class = class, sampler = o.sampler, steps = o.steps,
                               guidance = class and (o.guidance or 3) or nil, eta = o.eta, seed = o.seed })
  local out = o.out or "out/samples.png"
  os.execute("mkdir -p '" .. (out:match("^(.*)/") or ".") .. "'")
  md.image.save_grid(x, out, { nrow = o.nrow or 10 })
  if o.singles then
    os.execute("mkdir -p '" .. o.singles .. "'")
    for i = 1, x:size(1) do md.image.save(x[i], ("%s/%04d.png"):format(o.singles, i)) end
  end
  print(("wrote %s (%d images)"):format(out, x:size(1)))
end

function cli.eval(o)
  if o.threads then md.set_num_threads(o.threads) end
  local images, labels, what
  local t0 = md.time()
  if o.real then
    local train = md.data.fashion_mnist { split = "train", limit = o.real }
    images, labels = train.images, train.labels
    what = ("%d real Fashion-MNIST training images"):format(train.n)
  else
    local path = o.checkpoint or "checkpoints/ddpm_fashion.safetensors"
    local model = md.load(path)
    if not md.nn.Module.is_module(model) then error("eval: " .. path .. " holds no model config", 0) end
    local n, classes = o.n or 1000, model.config.num_classes
    if classes then
      labels = {}
      for i = 1, n do labels[i] = (i - 1) % classes end
    end
    local sampler, steps = o.sampler or "ddim", o.steps or 50
    images = md.sample(model, { n = n, class = labels, sampler = sampler, steps = steps, seed = o.seed or 1,
                                guidance = labels and (o.guidance or 3) or nil, batch_size = o.batch_size or 100 })
    what = ("%d samples of %s, %s-%d, guidance %s"):format(n, path, sampler, steps, labels and (o.guidance or 3) or "none")
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
  local cmd = args[1]
  if cmd == nil or cmd == "--help" or cmd == "-h" or cmd == "help" then print(usage.main); return end
  if not cli[cmd] or cmd == "main" then
    io.stderr:write("moondust: unknown command '" .. cmd .. "'\n" .. usage.main .. "\n")
    os.exit(2)
  end
  local ok, o = pcall(parse, args, 2)
  if not ok then io.stderr:write("moondust " .. cmd .. ": " .. o .. "\n"); os.exit(2) end
  if o.help then print(usage[cmd]); return end
  local ok2, err = pcall(cli[cmd], o)
  if not ok2 then io.stderr:write("moondust " .. cmd .. ": " .. tostring(err) .. "\n"); os.exit(1) end
end

return cli
