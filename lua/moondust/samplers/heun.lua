-- Heun's second-order method (Karras et al. 2022, Algorithm 1 without
-- churn), EDM's sampler: an Euler step to sigma_prev, the network again
-- there, and the step redone with the mean of the two slopes; the last
-- step (to sigma = 0) is Euler. 2 steps - 1 network evaluations.
-- Classifier guidance shifts the first slope.
return {
  ve = true, default_steps = 18,
  step = function(_, s)
    local x0, eps = s.shifted()
    local sp, sg = s.sigma(s.ab_prev), s.sigma(s.ab_t)
    if sp == 0 then return x0 end
    local euler = (x0 + eps * sp) * math.sqrt(s.ab_prev)
    local _, eps2 = s.evaluate(euler, s.i - 1)
    local x = s.x * (1 / math.sqrt(s.ab_t)) + (eps + eps2) * (0.5 * (sp - sg))
    return x * math.sqrt(s.ab_prev)
  end,
}
