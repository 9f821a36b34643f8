-- Euler (Karras et al. 2022): one Euler step of the probability-flow ODE
-- dx/dsigma = eps in VE form, x / sqrt(ab) -> x0 + sigma_prev eps. On the
-- same levels this is DDIM with eta = 0; with spacing = "karras" it is
-- k-diffusion's sample_euler.
return {
  step = function(_, s)
    local x0, eps = s.shifted()
    return (x0 + eps * s.sigma(s.ab_prev)) * math.sqrt(s.ab_prev)
  end,
}
