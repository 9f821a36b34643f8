-- DDIM (Song et al. 2021): eta = 0 is deterministic (the probability-flow
-- ODE, one Euler step in sigma); eta = 1 has DDPM's noise level.
return {
  eta = true,
  step = function(_, s)
    local x0, eps = s.shifted()
    local eta = s.opts.eta or 0
    local noise = (eta > 0 and s.i > 1) and s.noise() or nil
    return s.md.ddim_step(x0, eps, s.ab_t, s.ab_prev, eta, noise)
  end,
}
