/* Binding for the diffusion kernels (csrc/diffusion.c). None of them is
 * recorded by autograd: samplers run without grad, and training only
 * differentiates through the model. */
#include <assert.h>

#include <string.h>

#include "../diffusion.h"
#include "binding.h"

static void same_shape(lua_State *L, const md_tensor *a, const md_tensor *b, const char *op, const char *what) {
  if (!md_same_shape(a, b)) {
    char sa[MD_SHAPE_STR_LEN], sb[MD_SHAPE_STR_LEN];
    luaL_error(L, "%s: %s has shape %s, expected %s", op, what, md_shape_str(b, sb, sizeof sb),
               md_shape_str(a, sa, sizeof sa));
  }
}

/* the float kernels read plain memory (see mdl_values) */
static md_tensor *opt_values(lua_State *L, int idx) { return lua_isnoneornil(L, idx) ? NULL : mdl_values(L, idx); }

static md_tensor *new_like(lua_State *L, const md_tensor *x) {
  md_tensor *t = md_tensor_empty_like(x);
  if (!t) luaL_error(L, "%s", md_errmsg());
  return t;
}

/* Checks per-image timesteps t against x and the schedule table ab. */
static void check_timesteps(lua_State *L, const md_tensor *x, const md_tensor *t, const md_tensor *ab, const char *op) {
  if (x->ndim < 1 || t->ndim != 1 || t->shape[0] != x->shape[0])
    luaL_error(L, "%s: expected one timestep per image (%d), got %d", op, x->ndim ? (int)x->shape[0] : 0,
               (int)t->numel);
  if (ab->ndim != 1) luaL_error(L, "%s: alphas_cumprod must be 1-D", op);
  for (int64_t i = 0; i < t->numel; i++) {
    float v = md_data(t)[i];
    if (!(v >= 0 && v < (float)ab->numel && v == (float)(int64_t)v))
      luaL_error(L, "%s: timestep %f out of range 0..%d", op, v, (int)ab->numel - 1);
  }
}

/* md.q_sample(x0, t, noise, alphas_cumprod) -> x_t */
static int f_q_sample(lua_State *L) {
  md_tensor *x0 = mdl_values(L, 1), *t = mdl_values(L, 2), *noise = mdl_values(L, 3), *ab = mdl_values(L, 4);
  same_shape(L, x0, noise, "q_sample", "noise");
  check_timesteps(L, x0, t, ab, "q_sample");
  md_tensor *y = new_like(L, x0);
  if (x0->numel > 0) /* a batch of 0 images (or of empty ones) has nothing to compute */
    md_q_sample(md_data(x0), md_data(noise), md_data(t), md_data(ab), x0->shape[0], x0->numel / x0->shape[0], md_data(y));
  return mdl_push(L, y);
}

/* md.v_target(x0, t, noise, alphas_cumprod) -> v */
static int f_v_target(lua_State *L) {
  md_tensor *x0 = mdl_values(L, 1), *t = mdl_values(L, 2), *noise = mdl_values(L, 3), *ab = mdl_values(L, 4);
  same_shape(L, x0, noise, "v_target", "noise");
  check_timesteps(L, x0, t, ab, "v_target");
  md_tensor *y = new_like(L, x0);
  if (x0->numel > 0) /* a batch of 0 images (or of empty ones) has nothing to compute */
    md_v_target(md_data(x0), md_data(noise), md_data(t), md_data(ab), x0->shape[0], x0->numel / x0->shape[0], md_data(y));
  return mdl_push(L, y);
}

/* alpha-bar in [0, 1]; 0 is the last step of a zero-terminal-SNR schedule */
static double check_ab(lua_State *L, int idx, const char *op) {
  double ab = luaL_checknumber(L, idx);
  if (!(ab >= 0 && ab <= 1)) luaL_error(L, "%s: alpha-bar must be in [0, 1], got %f", op, ab);
  return ab;
}

/* md.pred_to_x0_eps(x, model_out, ab, kind = "eps" | "x0" | "v", clip) -> x0, eps */
static int f_pred_to_x0_eps(lua_State *L) {
  static const char *const kinds[] = {[MD_PRED_EPS] = "eps", [MD_PRED_X0] = "x0", [MD_PRED_V] = "v",
                                      [MD_PRED_COUNT] = NULL};
  static_assert(sizeof kinds / sizeof *kinds == MD_PRED_COUNT + 1, "a prediction kind without a name");
  md_tensor *x = mdl_values(L, 1), *out = mdl_values(L, 2);
  same_shape(L, x, out, "pred_to_x0_eps", "the model output");
  double ab = check_ab(L, 3, "pred_to_x0_eps");
  if (ab >= 1) luaL_error(L, "pred_to_x0_eps: alpha-bar must be below 1");
  int kind = luaL_checkoption(L, 4, "eps", kinds);
  if (ab == 0 && kind == MD_PRED_EPS)
    luaL_error(L, "pred_to_x0_eps: at alpha-bar 0 (zero terminal SNR) the noise says nothing about x0; "
                  "use v or x0 prediction");
  md_tensor *x0 = new_like(L, x);
  mdl_push(L, x0);
  md_tensor *eps = new_like(L, x);
  mdl_push(L, eps);
  md_pred_to_x0_eps(md_data(x), md_data(out), x->numel, ab, (md_prediction)kind, lua_toboolean(L, 5), md_data(x0),
                    md_data(eps));
  return 2;
}

/* md.ddpm_step(x, x0, ab_t, ab_prev, noise|nil, shift|nil, large_variance, last) -> x_prev */
static int f_ddpm_step(lua_State *L) {
  md_tensor *x = mdl_values(L, 1), *x0 = mdl_values(L, 2), *noise = opt_values(L, 5), *shift = opt_values(L, 6);
  same_shape(L, x, x0, "ddpm_step", "x0");
  if (noise) same_shape(L, x, noise, "ddpm_step", "noise");
  if (shift) same_shape(L, x, shift, "ddpm_step", "the guidance shift");
  double ab_t = check_ab(L, 3, "ddpm_step"), ab_prev = check_ab(L, 4, "ddpm_step");
  if (!(ab_prev > ab_t)) luaL_error(L, "ddpm_step: alpha-bar must grow towards t = 0 (%f then %f)", ab_t, ab_prev);
  md_tensor *y = new_like(L, x);
  md_ddpm_step(md_data(x), md_data(x0), noise ? md_data(noise) : NULL, shift ? md_data(shift) : NULL, x->numel, ab_t,
               ab_prev, lua_toboolean(L, 7), lua_toboolean(L, 8), md_data(y));
  return mdl_push(L, y);
}

/* md.ddim_step(x0, eps, ab_t, ab_prev, eta, noise|nil) -> x_prev */
static int f_ddim_step(lua_State *L) {
  md_tensor *x0 = mdl_values(L, 1), *eps = mdl_values(L, 2), *noise = opt_values(L, 6);
  same_shape(L, x0, eps, "ddim_step", "eps");
  if (noise) same_shape(L, x0, noise, "ddim_step", "noise");
  double ab_t = check_ab(L, 3, "ddim_step"), ab_prev = check_ab(L, 4, "ddim_step");
  double eta = luaL_optnumber(L, 5, 0);
  if (ab_t >= 1) luaL_error(L, "ddim_step: alpha-bar at t must be below 1");
  md_tensor *y = new_like(L, x0);
  md_ddim_step(md_data(x0), md_data(eps), noise ? md_data(noise) : NULL, x0->numel, ab_t, ab_prev, eta, md_data(y));
  return mdl_push(L, y);
}

const luaL_Reg mdl_diffusion_funcs[] = {
    {"q_sample", f_q_sample},   {"v_target", f_v_target},   {"pred_to_x0_eps", f_pred_to_x0_eps},
    {"ddpm_step", f_ddpm_step}, {"ddim_step", f_ddim_step}, {NULL, NULL},
};

const luaL_Reg mdl_diffusion_methods[] = {
    {NULL, NULL},
};
