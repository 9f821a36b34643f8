-- DPM-Solver++(2M) (Lu et al. 2022), the multistep second-order solver of
-- the probability-flow ODE in data prediction, as diffusers' default: with
-- alpha = sqrt(ab), sigma = sqrt(1 - ab), lambda = log(alpha / sigma) and
-- h = lambda_prev - lambda_t,
--   x_prev = (sigma_prev / sigma_t) x - alpha_prev (exp(-h) - 1) D,
-- D = x0 at the first and the last step (first order), otherwise
-- D = (1 + 1 / 2r) x0 - (1 / 2r) x0_before, r = h_before / h.
-- Classifier guidance shifts eps, as in DDIM.
local function lambda(ab) return 0.5 * math.log(ab / (1 - ab)) end

return {
  multistep = true, default_spacing = "karras",
  step = function(state, s)
    local x0 = s.shifted()
    if s.ab_prev >= 1 then -- the last step lands on the data: sigma = 0
      state.x0_before, state.h_before = nil, nil
      return x0
    end
    local h = lambda(s.ab_prev) - lambda(s.ab_t)
    local d = x0
    if state.x0_before then
      local r = state.h_before / h
      d = x0 * (1 + 1 / (2 * r)) - state.x0_before * (1 / (2 * r))
    end
    state.x0_before, state.h_before = x0, h
    local sigma_ratio = math.sqrt((1 - s.ab_prev) / (1 - s.ab_t))
    return s.x * sigma_ratio - d * (math.sqrt(s.ab_prev) * (math.exp(-h) - 1))
  end,
}
