-- Sample quality against network evaluations (NFE) for each sampler, with
-- and without classifier-free guidance, scored by md.metrics against
-- Fashion-MNIST's test split. One markdown row per point, printed as it is
-- done and appended to OUT (JSON lines).
--   scripts/md-lua scripts/sampler_quality.lua [checkpoint] [n = 200] [out = out/sampler_quality.jsonl]
--     [points = "ddim:50:3,dpmpp_2m:20:3,..."]   (sampler:NFE:guidance[:spacing], guidance 0 = none,
--      spacing the sampler's default unless given)
--   scripts/md-lua scripts/sampler_quality.lua --table OUT.jsonl
--     prints the points of OUT as one markdown table: a row per sampler and
--     spacing, FID at NFE about 5 / 10 / 20 / 50 with guidance and without.
local md = require "moondust"

if arg[1] == "--table" then
  local rows, order, cols = {}, {}, { 5, 10, 20, 50 }
  local file = assert(arg[2], "--table needs the JSON-lines file")
  for line in assert(io.open(file)):lines() do
    local p = md.core.json_decode(line)
    local key = p.sampler .. " (" .. p.spacing .. ")"
    if not rows[key] then rows[key] = {}; order[#order + 1] = key end
    local col = 1 -- Heun's 2 steps - 1 evaluations (5, 9, 19, 49) go to the nearest column
    for i, c in ipairs(cols) do if math.abs(p.nfe - c) < math.abs(p.nfe - cols[col]) then col = i end end
    rows[key][(p.guidance > 0 and "g" or "u") .. col] = p -- a later line for the same point wins
  end
  print("| sampler (spacing) | NFE 5 | 10 | 20 | 50 | NFE 5, no guidance | 10 | 20 | 50 |")
  print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
  for _, key in ipairs(order) do
    local cells = { key }
    for _, kind in ipairs { "g", "u" } do
      for col = 1, #cols do
        local p = rows[key][kind .. col]
        cells[#cells + 1] = p and (p.nfe ~= cols[col] and ("%.1f (%d)"):format(p.fid, p.nfe) or ("%.1f"):format(p.fid))
          or "–"
      end
    end
    print("| " .. table.concat(cells, " | ") .. " |")
  end
  os.exit(0)
end

local checkpoint = arg[1] or "lua/moondust/assets/fashion_model.safetensors"
local n = tonumber(arg[2]) or 200
local out = arg[3] or "out/sampler_quality.jsonl"
local points = arg[4] or table.concat({
  "ddim:50:3", "dpmpp_2m:10:3", "dpmpp_2m:20:3", "unipc:10:3", "unipc:20:3", "ddim:20:3", "ddim:10:3",
  "dpmpp_2m:5:3", "ddim:5:3",
  "heun:19:3", "heun:49:3", "euler_ancestral:50:3", "dpmpp_2m_sde:20:3", "ddim:50:0", "dpmpp_2m:20:0",
}, ",")

local model = md.load(checkpoint)
local classes = model.config.num_classes
local labels = {}
for i = 1, n do labels[i] = (i - 1) % classes end

-- Heun spends 2 steps - 1 evaluations; the others one per step.
local function steps_for(sampler, nfe)
  if sampler == "heun" then return (nfe + 1) // 2 end
  return nfe
end

md.core.mkdir_p(out:match("^(.*)/[^/]*$") or ".")
print(("%d samples of %s per point; FID and KID against the test split (the shipped feature network)"):format(n,
  checkpoint))
print("| sampler | spacing | NFE | guidance | FID | KID | precision | recall | class acc. | seconds |")
print("|---|---|---|---|---|---|---|---|---|---|")
for point in points:gmatch("[^,]+") do
  local sampler, nfe, g, spacing_opt = point:match("^([%w_]+):(%d+):([%d.]+):?(%a*)$")
  if not sampler then error("bad point '" .. point .. "' (sampler:NFE:guidance[:spacing])") end
  nfe, g = tonumber(nfe), tonumber(g)
  spacing_opt = spacing_opt ~= "" and spacing_opt or nil
  local t0 = md.time()
  local x, info = md.sample(model, { n = n, class = labels, sampler = sampler, steps = steps_for(sampler, nfe),
                                     guidance = g > 0 and g or nil, seed = 1, progress = false, batch_size = 100,
                                     spacing = spacing_opt })
  local seconds = md.time() - t0
  local m = md.metrics.score(x, labels)
  local spacing = spacing_opt or md.samplers[sampler].default_spacing or info.diffusion.default_spacing
  print(("| %s | %s | %d | %s | %.1f | %.4f | %.3f | %.3f | %.1f%% | %.0f |"):format(sampler, spacing, info.nfe,
    g > 0 and tostring(g) or "none", m.fid, m.kid, m.precision, m.recall, 100 * m.class_accuracy, seconds))
  io.stdout:flush()
  local f = assert(io.open(out, "a"))
  f:write(md.core.json_encode { sampler = sampler, spacing = spacing, nfe = info.nfe, guidance = g, n = n,
                                fid = m.fid, kid = m.kid, kid_se = m.kid_se, precision = m.precision,
                                recall = m.recall, class_accuracy = m.class_accuracy, seconds = seconds,
                                checkpoint = checkpoint }, "\n")
  f:close()
end
