-- The samplers by name: md.samplers.NAME, one small file each in this
-- folder, loaded when first used; md.samplers.registry lists them.
--
-- Adding one: write samplers/NAME.lua returning
--   {step = function(state, s) return x_at_the_next_level end,
--    eta = true (it reads opts.eta), multistep = true (it keeps a history in
--    state), ve = true (it works in sigma, infinite at zero terminal SNR),
--    default_steps = n,
--    default_spacing = "karras" (its spacing when the user gives none)}
-- and add NAME to the registry below. The loop (sampler.lua) calls the
-- network, applies guidance and clipping, and hands step() s: x (at
-- alpha-bar ab_t), x0, eps, var (learned variance channels, or nil),
-- ab_t, ab_prev (the next level; 1 at the end), i (the level, counting
-- down to 1), t (the model timestep), grad (classifier guidance, or nil),
-- shifted() (x0 and eps with grad applied as a score shift), evaluate(x, j)
-- (x0, eps, var of the network at level j: a second evaluation, as Heun
-- makes), sigma(ab) (the VE noise level sqrt((1 - ab) / ab), 0 at ab = 1),
-- noise() (fresh per-image noise), opts and md. In VE form x / sqrt(ab) =
-- x0 + sigma eps, which the sigma-based solvers (Karras et al. 2022) use.
local samplers = {
  registry = { "ddim", "ddpm", "dpmpp_2m", "dpmpp_2m_sde", "euler", "euler_ancestral", "heun", "unipc" },
}

return setmetatable(samplers, { __index = function(t, name)
  for _, known in ipairs(samplers.registry) do
    if known == name then
      local impl = require("moondust.samplers." .. name)
      rawset(t, name, impl)
      return impl
    end
  end
end })
