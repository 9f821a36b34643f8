-- UniPC (Zhao et al. 2023), order 2, data prediction, B(h) = e^h - 1
-- ("bh2", diffusers' UniPCMultistepScheduler default). With lambda =
-- log(alpha / sigma), h = lambda_next - lambda_s and hh = -h:
--   predictor (UniP): x_next = (sigma_next / sigma_s) x - alpha_next (e^hh - 1) m_s
--                     - alpha_next B(hh) rho_p D1,  D1 = (m_older - m_s) / r, r = (lambda_older - lambda_s) / h,
--   which at order 2 (rho_p = 1/2) is DPM-Solver++(2M);
--   corrector (UniC): once the network has seen x_next, the same update from
--   x_s redone with its output m_next as well (rho_c from a 2 x 2 system),
--   giving the x the next step starts from, at no extra evaluation.
-- The first step and the corrector after it are first order; the last step
-- (to sigma = 0) returns x0.
local function lambda(ab) return 0.5 * math.log(ab / (1 - ab)) end

-- B(hh) and the right-hand side b1, b2 of UniPC's order conditions
local function coefficients(h)
  local hh = -h
  local phi1 = math.exp(hh) - 1
  local k1 = phi1 / hh - 1
  local k2 = k1 / hh - 0.5
  return phi1, phi1, k1 / phi1, 2 * k2 / phi1
end

-- The update from x (at lambda_s, output m) to lambda_next: the predictor
-- when m_next is nil, else the corrector with m_next; older = {lambda, x0}
-- of the step before (order 2) or nil.
local function update(x, m, older, lam_s, lam_next, ab_s, ab_next, m_next)
  local h = lam_next - lam_s
  local phi1, B, b1, b2 = coefficients(h)
  local alpha_next = math.sqrt(ab_next)
  local out = x * (math.sqrt((1 - ab_next) / (1 - ab_s))) - m * (alpha_next * phi1)
  local r, D1 = nil, nil
  if older then
    r = (older.lambda - lam_s) / h
    D1 = (older.x0 - m) * (1 / r)
  end
  if not m_next then -- UniP
    if D1 then out = out - D1 * (alpha_next * B * 0.5) end
    return out
  end
  local Dt = m_next - m -- UniC
  if not D1 then return out - Dt * (alpha_next * B * 0.5) end
  local rho1 = (b1 - b2) / (1 - r)
  local rho2 = b1 - rho1
  return out - (D1 * rho1 + Dt * rho2) * (alpha_next * B)
end

return {
  multistep = true, ve = true, default_spacing = "karras",
  step = function(state, s)
    local x, m = s.x, s.shifted()
    local lam = lambda(s.ab_t)
    local last = state.last
    if last then -- correct the point the network has just seen
      x = update(last.x, last.m, last.older, last.lambda, lam, last.ab, s.ab_t, m)
    end
    if s.ab_prev >= 1 then
      state.last = nil
      return m
    end
    local older = last and { lambda = last.lambda, x0 = last.m } or nil
    local lam_next = lambda(s.ab_prev)
    state.last = { x = x, m = m, older = older, lambda = lam, ab = s.ab_t }
    return update(x, m, older, lam, lam_next, s.ab_t, s.ab_prev)
  end,
}
