-- DPM-Solver++(2M) SDE (Lu et al. 2022; k-diffusion's sample_dpmpp_2m_sde,
-- midpoint form), in VE form with lambda = -log sigma, h = lambda_prev -
-- lambda_t and eta (default 1) the share of the step taken as noise:
--   x_prev = (sigma_prev / sigma_t) e^(-eta h) x + (1 - e^(-(1 + eta) h)) x0
--            + (1 - e^(-(1 + eta) h)) / (2 r) (x0 - x0_before)
--            + sigma_prev sqrt(1 - e^(-2 eta h)) z,   r = h_before / h.
local function lambda_step(sg, sp) return math.log(sg) - math.log(sp) end

return {
  eta = true, multistep = true, ve = true, default_spacing = "karras",
  step = function(state, s)
    local x0 = s.shifted()
    local sp, sg = s.sigma(s.ab_prev), s.sigma(s.ab_t)
    if sp == 0 then
      state.x0_before, state.h_before = nil, nil
      return x0
    end
    local eta = s.opts.eta or 1
    local h = lambda_step(sg, sp)
    local c = 1 - math.exp(-(1 + eta) * h)
    local x = s.x * (sp / sg * math.exp(-eta * h) / math.sqrt(s.ab_t)) + x0 * c
    if state.x0_before then x = x + (x0 - state.x0_before) * (0.5 * c * h / state.h_before) end
    if eta > 0 then x = x + s.noise() * (sp * math.sqrt(1 - math.exp(-2 * eta * h))) end
    state.x0_before, state.h_before = x0, h
    return x * math.sqrt(s.ab_prev)
  end,
}
