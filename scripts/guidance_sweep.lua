-- Classifier guidance against its scale, as in ADM's figures: the shipped
-- model sampled unconditionally ("no class" input) and conditionally, each
-- steered by the shipped noisy classifier, and classifier-free guidance for
-- comparison at matched class accuracy. Every point is n samples (default
-- 1,000; classes requested in turn) scored by md.metrics against Fashion-MNIST's
-- test split. A markdown row per point as it is done, appended to OUT (JSON
-- lines); points already in OUT are skipped, so a stopped sweep resumes.
--   scripts/md-lua scripts/guidance_sweep.lua [n = 1000] [out = out/guidance_sweep.jsonl] [points] [steps = 25]
--     [classifier = the shipped one, or a checkpoint of examples/train_noisy_classifier.lua]
--     points: "mode:scale[:sampler],..." with mode uncond (classifier guidance of the unconditional
--     model), cond (conditional model + classifier guidance) or cfg (classifier-free guidance, scale w);
--     sampler ddim unless given (ddpm, dpmpp_2m, ...: any that applies the score shift)
--   scripts/md-lua scripts/guidance_sweep.lua --plot OUT.jsonl PNG   class accuracy, FID, precision and
--     recall against the scale, a line per mode
local md = require "moondust"

local function read_points(path)
  local pts = {}
  local f = io.open(path, "r")
  if not f then return pts end
  for line in f:lines() do if line ~= "" then pts[#pts + 1] = md.core.json_decode(line) end end
  f:close()
  return pts
end

local LABELS = { uncond = "unconditional + classifier", cond = "conditional + classifier",
                 cfg = "classifier-free (scale w)" }

if arg[1] == "--plot" then
  local pts = read_points(assert(arg[2], "--plot needs the JSON-lines file"))
  local png = assert(arg[3], "--plot needs the PNG path")
  local by_mode, order = {}, {}
  for _, p in ipairs(pts) do
    local key = p.mode .. (p.sampler ~= "ddim" and ":" .. p.sampler or "")
    if not by_mode[key] then by_mode[key] = {}; order[#order + 1] = key end
    table.insert(by_mode[key], p)
  end
  local panels = {}
  for _, fig in ipairs { { "class_accuracy", "class accuracy" }, { "fid", "Frechet distance" },
                         { "precision", "precision" }, { "recall", "recall" } } do
    local series = {}
    for _, mode in ipairs(order) do
      local ps = by_mode[mode]
      table.sort(ps, function(a, b) return a.scale < b.scale end)
      local xs, ys = {}, {}
      for _, p in ipairs(ps) do
        if type(p[fig[1]]) == "number" then xs[#xs + 1], ys[#ys + 1] = p.scale, p[fig[1]] end
      end
      local m, sampler = mode:match("^(%a+):?(.*)$")
      series[#series + 1] = { label = LABELS[m] .. (sampler ~= "" and ", " .. sampler or ""), x = xs, y = ys }
    end
    panels[#panels + 1] = { xlabel = "guidance scale", ylabel = fig[2], series = series,
                            key = #panels == 0 and "bottom right" or false }
  end
  if not md.plot.figure(png, panels, { columns = 2, width = 1100, height = 800 }) then os.exit(1) end
  print("wrote " .. png)
  os.exit(0)
end

-- a positional number: its default when absent, an error when it is not a whole number >= 1
local function count_arg(i, name, default)
  if arg[i] == nil then return default end
  local v = math.tointeger(tonumber(arg[i]))
  if not v or v < 1 then error(("guidance_sweep: %s must be a whole number >= 1, got '%s'"):format(name, arg[i]), 0) end
  return v
end
local n = count_arg(1, "n", 1000)
local out = arg[2] or "out/guidance_sweep.jsonl"
-- (conditional + classifier at scale 0 is cfg at w = 1: the plain conditional model)
local points = arg[3] or "uncond:0,uncond:0.5,uncond:1,uncond:2,uncond:3,uncond:5,uncond:10,"
  .. "cfg:1,cond:1,cond:3,cond:10,cfg:2,cfg:3"
local steps = count_arg(4, "steps", 25)

local model = md.pretrained("fashion")
local classifier_path = arg[5] or "noisy_classifier (shipped)"
local classifier = arg[5] and md.load(arg[5]) or md.pretrained("noisy_classifier")
local function key_of(mode, scale, sampler) return ("%s:%g:%s"):format(mode, scale, sampler) end
local labels = {}
for i = 1, n do labels[i] = (i - 1) % model.config.num_classes end

local done = {}
for _, p in ipairs(read_points(out)) do
  if p.n == n and p.steps == steps and p.classifier == classifier_path then done[key_of(p.mode, p.scale, p.sampler)] = p end
end
md.core.mkdir_p(out:match("^(.*)/[^/]*$") or ".")
print(("%d samples per point, %d steps, the shipped model and noisy classifier; scored against the test split"):format(
  n, steps))
print("| guidance | sampler | scale | class acc. | FID | KID | precision | recall | NFE | seconds |")
print("|---|---|---|---|---|---|---|---|---|---|")
local function row(p)
  print(("| %s | %s | %g | %.1f%% | %.1f | %.4f | %.3f | %.3f | %d | %.0f |"):format(LABELS[p.mode], p.sampler, p.scale,
    100 * p.class_accuracy, p.fid, p.kid, p.precision, p.recall, p.nfe, p.seconds))
  io.stdout:flush()
end
for point in points:gmatch("[^,]+") do
  local mode, scale, sampler = point:match("^(%a+):([%d.]+):?([%w_]*)$")
  if not LABELS[mode] or not tonumber(scale) then
    error(("bad point '%s' (mode:scale[:sampler], mode uncond, cond or cfg)"):format(point))
  end
  scale, sampler = tonumber(scale), sampler ~= "" and sampler or "ddim"
  local key = key_of(mode, scale, sampler)
  if done[key] then
    row(done[key])
  else
    local opts = { n = n, class = labels, sampler = sampler, steps = steps, seed = 1, progress = false, batch_size = 100 }
    if mode == "cfg" then
      opts.guidance = scale ~= 1 and scale or nil -- w = 1 is the plain conditional model
    else
      opts.unconditional = mode == "uncond"
      opts.cond_fn = md.guidance.classifier(classifier, scale)
    end
    local t0 = md.time()
    local x, info = md.sample(model, opts)
    local seconds = md.time() - t0
    local m = md.metrics.score(x, labels)
    local p = { mode = mode, scale = scale, sampler = sampler, classifier = classifier_path, n = n, steps = steps, nfe = info.nfe, seconds = seconds, fid = m.fid,
                kid = m.kid, kid_se = m.kid_se, precision = m.precision, recall = m.recall,
                class_accuracy = m.class_accuracy }
    row(p)
    local f = assert(io.open(out, "a"))
    f:write(md.core.json_encode(p), "\n")
    f:close()
    md.image.save_grid(md.index_select(x, 1, md.arange(math.min(n, 100))),
      (out:gsub("%.jsonl$", "") .. "_%s_%s_%g.png"):format(mode, sampler, scale), { nrow = 10 })
  end
end
