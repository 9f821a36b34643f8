-- Euler ancestral (k-diffusion's sample_euler_ancestral): an Euler step
-- down to sigma_down, then fresh noise of sigma_up, with sigma_up^2 +
-- sigma_down^2 = sigma_prev^2; eta (default 1) scales sigma_up (0 is Euler).
return {
  eta = true, ve = true,
  step = function(_, s)
    local x0, eps = s.shifted()
    local sp, sg = s.sigma(s.ab_prev), s.sigma(s.ab_t)
    if sp == 0 then return x0 end
    local eta = s.opts.eta or 1
    local up = math.min(sp, eta * math.sqrt(sp * sp * (sg * sg - sp * sp) / (sg * sg)))
    local down = math.sqrt(sp * sp - up * up)
    local x = x0 + eps * down
    if up > 0 then x = x + s.noise() * up end
    return x * math.sqrt(s.ab_prev)
  end,
}
