/* Binding for the optimizers: each call walks a Lua table of parameter
 * tensors (and matching state tensors) and updates them all in one go, so an
 * optimizer step is one call from Lua. Parameters without a gradient are
 * skipped, as in PyTorch. */
#include <math.h>

#include "../layout.h"
#include "../optim.h"
#include "binding.h"

/* The tensor at position i of the table at idx, checked to match `like`. */
static md_tensor *entry(lua_State *L, int idx, lua_Integer i, const md_tensor *like, const char *what) {
  lua_geti(L, idx, i);
  if (!mdl_is(L, -1)) luaL_error(L, "%s[%d] must be a tensor, got %s", what, (int)i, luaL_typename(L, -1));
  md_tensor *t = mdl_check(L, -1);
  lua_pop(L, 1); /* the table keeps it alive */
  /* the float kernels update plain memory in place */
  if (md_make_plain_inplace(t) != MD_OK || (t->grad && md_make_plain_inplace(t->grad) != MD_OK))
    luaL_error(L, "%s", md_errmsg());
  if (like && t->numel != like->numel)
    luaL_error(L, "%s[%d] has %d elements, its parameter has %d", what, (int)i, (int)t->numel, (int)like->numel);
  return t;
}

static lua_Integer count(lua_State *L, int idx, lua_Integer n, const char *what) {
  luaL_checktype(L, idx, LUA_TTABLE);
  lua_Integer k = luaL_len(L, idx);
  if (n >= 0 && k != n) luaL_error(L, "%s has %d entries, params has %d", what, (int)k, (int)n);
  return k;
}

static void touched(md_tensor *t) { t->storage->version++; }

/* adam_step(params, m, v, step, lr, beta1, beta2, eps, weight_decay, decoupled) */
static int l_adam_step(lua_State *L) {
  lua_Integer n = count(L, 1, -1, "params");
  count(L, 2, n, "exp_avg");
  count(L, 3, n, "exp_avg_sq");
  lua_Integer step = luaL_checkinteger(L, 4);
  if (step < 1) luaL_error(L, "adam_step: step counts from 1, got %d", (int)step);
  md_adam_config c = {
      .lr = (float)luaL_checknumber(L, 5),
      .beta1 = (float)luaL_checknumber(L, 6),
      .beta2 = (float)luaL_checknumber(L, 7),
      .eps = (float)luaL_checknumber(L, 8),
      .weight_decay = (float)luaL_checknumber(L, 9),
      .decoupled = lua_toboolean(L, 10),
  };
  for (lua_Integer i = 1; i <= n; i++) {
    md_tensor *p = entry(L, 1, i, NULL, "params");
    if (!p->grad) continue;
    md_tensor *m = entry(L, 2, i, p, "exp_avg"), *v = entry(L, 3, i, p, "exp_avg_sq");
    md_adam_step(md_data(p), md_data(p->grad), md_data(m), md_data(v), p->numel, step, &c);
    touched(p);
  }
  return 0;
}

/* sgd_step(params, momentum_buffers|nil, first, lr, momentum, dampening, weight_decay, nesterov) */
static int l_sgd_step(lua_State *L) {
  lua_Integer n = count(L, 1, -1, "params");
  md_sgd_config c = {
      .lr = (float)luaL_checknumber(L, 4),
      .momentum = (float)luaL_checknumber(L, 5),
      .dampening = (float)luaL_checknumber(L, 6),
      .weight_decay = (float)luaL_checknumber(L, 7),
      .nesterov = lua_toboolean(L, 8),
  };
  if (c.momentum != 0) count(L, 2, n, "momentum_buffer");
  bool first = lua_toboolean(L, 3);
  for (lua_Integer i = 1; i <= n; i++) {
    md_tensor *p = entry(L, 1, i, NULL, "params");
    if (!p->grad) continue;
    md_tensor *b = c.momentum != 0 ? entry(L, 2, i, p, "momentum_buffer") : NULL;
    md_sgd_step(md_data(p), md_data(p->grad), b ? md_data(b) : NULL, p->numel, first, &c);
    touched(p);
  }
  return 0;
}

/* ema_update(ema_tensors, params, decay) */
static int l_ema_update(lua_State *L) {
  lua_Integer n = count(L, 2, -1, "params");
  count(L, 1, n, "ema");
  float decay = (float)luaL_checknumber(L, 3);
  for (lua_Integer i = 1; i <= n; i++) {
    md_tensor *p = entry(L, 2, i, NULL, "params");
    md_tensor *e = entry(L, 1, i, p, "ema");
    md_ema_update(md_data(e), md_data(p), p->numel, decay);
    touched(e);
  }
  return 0;
}

/* grad_norm(params) -> the 2-norm of all gradients together */
static int l_grad_norm(lua_State *L) {
  lua_Integer n = count(L, 1, -1, "params");
  double s = 0;
  for (lua_Integer i = 1; i <= n; i++) {
    md_tensor *p = entry(L, 1, i, NULL, "params");
    if (p->grad) s += md_sum_squares(md_data(p->grad), p->numel);
  }
  lua_pushnumber(L, sqrt(s));
  return 1;
}

/* scale_grads(params, s): every gradient *= s */
static int l_scale_grads(lua_State *L) {
  lua_Integer n = count(L, 1, -1, "params");
  float s = (float)luaL_checknumber(L, 2);
  for (lua_Integer i = 1; i <= n; i++) {
    md_tensor *p = entry(L, 1, i, NULL, "params");
    if (p->grad) {
      md_scale(md_data(p->grad), p->numel, s);
      touched(p->grad);
    }
  }
  return 0;
}

const luaL_Reg mdl_optim_funcs[] = {
    {"adam_step", l_adam_step},     {"sgd_step", l_sgd_step},       {"ema_update", l_ema_update},
    {"grad_norm", l_grad_norm},     {"scale_grads", l_scale_grads}, {NULL, NULL},
};

const luaL_Reg mdl_optim_methods[] = {
    {NULL, NULL},
};
