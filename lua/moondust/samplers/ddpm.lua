-- DDPM ancestral sampling (Ho et al. 2020): the posterior q(x_{t-1} | x_t,
-- x0) with variance "small" (the posterior's, default) or "large" (beta_t);
-- classifier guidance shifts the mean by variance * grad.
return {
  step = function(_, s)
    local noise = s.i > 1 and s.noise() or nil
    return s.md.ddpm_step(s.x, s.x0, s.ab_t, s.ab_prev, noise, s.grad, s.opts.variance == "large", s.i == 1)
  end,
}
