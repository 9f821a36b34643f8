-- DDPM ancestral sampling (Ho et al. 2020): the posterior q(x_{t-1} | x_t,
-- x0) with variance "small" (the posterior's, default), "large" (beta_t),
-- or learned (variance = "learned_range": the network's v in [-1, 1]
-- picks the log-variance between the two, improved DDPM); classifier
-- guidance shifts the mean by variance * grad.
return {
  step = function(_, s)
    local md, last = s.md, s.i == 1
    if not s.var then
      local noise = not last and s.noise() or nil
      return md.ddpm_step(s.x, s.x0, s.ab_t, s.ab_prev, noise, s.grad, s.opts.variance == "large", last)
    end
    local mean = md.ddpm_step(s.x, s.x0, s.ab_t, s.ab_prev, nil, nil, false, true)
    if last then return mean end
    local beta = 1 - s.ab_t / s.ab_prev
    local frac = (s.var + 1) * 0.5
    local logvar = frac * math.log(beta) + (-frac + 1) * math.log(beta * (1 - s.ab_prev) / (1 - s.ab_t))
    if s.grad then mean = mean + logvar:exp() * s.grad end
    return mean + (logvar * 0.5):exp() * s.noise()
  end,
}
