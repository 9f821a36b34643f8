-- Noise schedules. Each returns a table
--   {T, betas, alphas, alphas_cumprod (tensors), ab (a Lua array of
--    alpha-bar in double precision), timesteps (0-based model timesteps)}
-- md.schedule.linear{T = 1000, beta_start = 1e-4, beta_end = 0.02}   (DDPM)
-- md.schedule.cosine{T = 1000, s = 0.008, max_beta = 0.999}           (improved DDPM)
-- md.schedule.scaled_linear{T = 1000, beta_start = 0.00085, beta_end = 0.012} (latent diffusion)
-- md.schedule.from_betas(function(t, T) return beta end, T)
-- md.schedule.from_alpha_bar(function(t, T) return alpha_bar end, T)  (t continuous in [0, 1])
-- md.schedule.respace(sched, steps [, "even" | "ddim" | "trailing"]): sample with fewer steps.
-- md.schedule.rescale_zero_terminal_snr(sched): alpha-bar_T = 0 (Lin et al. 2024).
-- md.schedule.serialize(sched) -> {kind, betas}: what checkpoints store (the
-- betas themselves, so any schedule comes back exactly); md.schedule.get
-- takes it back.
local md = require "moondust"
local options = require "moondust.options"

local schedule = {}

-- The table for a list of betas (Lua numbers) over model timesteps ts.
local function build(betas, ts, kind)
  local T = #betas
  local ab, alphas, prod = {}, {}, 1.0
  for i = 1, T do
    local b = betas[i]
    -- beta = 1 ends a zero-terminal-SNR schedule (alpha-bar_T = 0); anywhere else it would erase the data
    if not (b > 0 and (b < 1 or (b == 1 and i == T))) then
      error(("schedule: beta %d is %s; betas must be in (0, 1) (the last may be 1)"):format(i, tostring(b)), 3)
    end
    alphas[i] = 1 - b
    prod = prod * (1 - b)
    ab[i] = prod
  end
  if not ts then
    ts = {}
    for i = 1, T do ts[i] = i - 1 end
  end
  return { T = T, kind = kind, betas = md.tensor(betas), alphas = md.tensor(alphas), alphas_cumprod = md.tensor(ab),
           ab = ab, betas_list = betas, timesteps = ts }
end

-- Far above any schedule in use; keeps a typo from building a huge table.
local MAX_T = 1000000

-- Checks a constructor's options: T and the names in `more` (each a number
-- in [lo, hi]).
local function check(where, opts, more)
  local known = { T = "number" }
  for name in pairs(more) do known[name] = "number" end
  opts = options.check(where, opts, known, 2)
  options.integer(where, "T", opts.T, 1, MAX_T, 2)
  for name, range in pairs(more) do options.number(where, name, opts[name], range[1], range[2], 2) end
  return opts
end

function schedule.from_betas(f, T, kind)
  if type(f) ~= "function" then error("from_betas: expected a function f(t, T) -> beta, got " .. type(f), 2) end
  options.size("from_betas", "T", T, 1, MAX_T)
  local betas = {}
  for t = 0, T - 1 do betas[t + 1] = f(t, T) end
  return build(betas, nil, kind or "custom")
end

function schedule.linear(opts)
  opts = check("schedule.linear", opts, { beta_start = { 0, 1 }, beta_end = { 0, 1 } })
  local T, b0, b1 = opts.T or 1000, opts.beta_start or 1e-4, opts.beta_end or 0.02
  return schedule.from_betas(function(t) return T == 1 and b0 or b0 + (b1 - b0) * t / (T - 1) end, T, "linear")
end

function schedule.scaled_linear(opts)
  opts = check("schedule.scaled_linear", opts, { beta_start = { 0, 1 }, beta_end = { 0, 1 } })
  local T = opts.T or 1000
  local r0, r1 = math.sqrt(opts.beta_start or 0.00085), math.sqrt(opts.beta_end or 0.012)
  return schedule.from_betas(function(t) local r = r0 + (r1 - r0) * t / (T - 1); return r * r end, T, "scaled_linear")
end

-- betas from a continuous alpha-bar(t), t in [0, 1], clipped at max_beta
function schedule.from_alpha_bar(f, T, max_beta, kind)
  options.number("from_alpha_bar", "max_beta", max_beta, 0, 1)
  max_beta = max_beta or 0.999
  return schedule.from_betas(function(t)
    return math.min(1 - f((t + 1) / T) / f(t / T), max_beta)
  end, T, kind or "custom")
end

function schedule.cosine(opts)
  opts = check("schedule.cosine", opts, { s = { 0, 1 }, max_beta = { 0, 1 } })
  local s = opts.s or 0.008
  return schedule.from_alpha_bar(function(u) return math.cos((u + s) / (1 + s) * math.pi / 2) ^ 2 end,
    opts.T or 1000, opts.max_beta or 0.999, "cosine")
end

-- Model timesteps for sampling with `steps` steps, in increasing order:
-- "even" spreads them from 0 to T-1 with rounding (improved-diffusion's
-- space_timesteps; diffusers' "linspace"); "ddim" takes every
-- (T // steps)-th from 0 (DDIM's uniform skip; diffusers' "leading");
-- "trailing" steps down from T - 1 by T / steps (Lin et al. 2024), so
-- that the first step starts at the last timestep.
function schedule.spacing(T, steps, mode)
  options.integer("schedule", "steps", steps)
  options.choice("schedule", "spacing", mode, { "even", "ddim", "trailing" })
  if steps < 1 or steps > T then error(("schedule: cannot take %d steps out of %d"):format(steps, T), 2) end
  local ts = {}
  if mode == "trailing" then
    local stride = T / steps
    for i = steps, 1, -1 do ts[#ts + 1] = math.floor(i * stride + 0.5) - 1 end
    table.sort(ts)
  elseif mode == "ddim" then
    local stride = T // steps
    for i = 0, steps - 1 do ts[#ts + 1] = i * stride end
  else
    local stride = steps > 1 and (T - 1) / (steps - 1) or 0
    local seen = {}
    for i = 0, steps - 1 do
      local t = math.floor(i * stride + 0.5)
      if not seen[t] then seen[t] = true; ts[#ts + 1] = t end
    end
  end
  return ts
end

-- A schedule over a subset of the timesteps, with betas recomputed so that
-- alpha-bar is unchanged at the kept steps: DDPM and DDIM then both sample
-- in `steps` steps. sched.timesteps lists the model timesteps used.
function schedule.respace(sched, steps, mode)
  if steps == sched.T and not mode then return sched end
  local ts = type(steps) == "table" and steps or schedule.spacing(sched.T, steps, mode)
  local betas, prev = {}, 1.0
  for i, t in ipairs(ts) do
    local a = sched.ab[t + 1]
    betas[i] = 1 - a / prev
    prev = a
  end
  local out = build(betas, ts, sched.kind)
  out.parent_T = sched.T
  return out
end

-- The betas rescaled so that sqrt(alpha-bar) keeps its value at t = 0 and
-- falls to exactly 0 at T - 1 (Lin et al. 2024, "Common diffusion noise
-- schedules and sample steps are flawed", Algorithm 1): the model is then
-- trained on pure noise at the last step, as sampling starts from it.
function schedule.rescale_zero_terminal_snr(sched)
  local ab, T = sched.ab, sched.T
  if T < 2 then error("schedule: zero terminal SNR needs T >= 2", 2) end
  local first, last = math.sqrt(ab[1]), math.sqrt(ab[T])
  local betas, prev = {}, 1.0
  for i = 1, T do
    local r = (math.sqrt(ab[i]) - last) * first / (first - last)
    local a = i == T and 0 or r * r
    betas[i] = 1 - a / prev
    prev = a
  end
  betas[T] = 1
  return build(betas, nil, sched.kind .. "+zero_snr")
end

-- What a checkpoint stores: the betas as doubles (JSON keeps 17 digits).
function schedule.serialize(sched)
  return { kind = sched.kind, betas = sched.betas_list }
end

-- A schedule given by name (with T), as a schedule table, or as the table
-- serialize wrote.
function schedule.get(s, T)
  if type(s) == "table" and s.ab then return s end
  if type(s) == "table" then
    if type(s.betas) ~= "table" or #s.betas == 0 then
      error("schedule: expected a schedule, a name or {betas = {...}}", 2)
    end
    for i, b in ipairs(s.betas) do
      if type(b) ~= "number" then error(("schedule: beta %d is a %s, not a number"):format(i, type(b)), 2) end
    end
    return build(s.betas, nil, s.kind or "custom")
  end
  local names = { "linear", "cosine", "scaled_linear" }
  options.choice("schedule", "the schedule", s or "linear", names)
  local f = schedule[s or "linear"]
  return f { T = T or 1000 }
end

return schedule
