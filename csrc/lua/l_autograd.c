/* Binding for autograd: requires_grad, is_leaf, grad_fn, detach, backward,
 * md.core.grad and the grad mode (md.no_grad is built on set_grad_enabled). */
#include "../autograd.h"
#include "../profile.h"
#include "binding.h"

static int t_requires_grad(lua_State *L) {
  md_tensor *t = mdl_check(L, 1);
  if (lua_isnone(L, 2)) {
    lua_pushboolean(L, md_needs_grad(t));
    return 1;
  }
  int on = lua_toboolean(L, 2);
  if (t->grad_fn && !on)
    luaL_error(L, "requires_grad(false) on a non-leaf tensor; use :detach()");
  t->requires_grad = on;
  lua_settop(L, 1);
  return 1;
}

static int t_is_leaf(lua_State *L) {
  lua_pushboolean(L, mdl_check(L, 1)->grad_fn == NULL);
  return 1;
}

static int t_grad_fn(lua_State *L) {
  md_tensor *t = mdl_check(L, 1);
  if (t->grad_fn) lua_pushstring(L, t->grad_fn->op);
  else lua_pushnil(L);
  return 1;
}

static int t_detach(lua_State *L) {
  md_tensor *t = mdl_check(L, 1);
  return mdl_push(L, md_tensor_alias(t, 0, t->ndim, t->shape));
}

/* The forward pass leaves its intermediate results to the collector; unless
 * they are collected before the sweep, they stay alive through it beside
 * every gradient buffer, though the graph lets go of each as soon as its
 * node is done. So a sweep starts with a collection (a fraction of a
 * millisecond: the Lua heap is small). */
static void collect_before_sweep(lua_State *L) {
  double t0 = md_profile_enabled() ? md_profile_now() : 0;
  lua_gc(L, LUA_GCCOLLECT);
  if (md_profile_enabled()) md_profile_add("(lua gc)", false, md_profile_now() - t0);
}

static int t_backward(lua_State *L) {
  md_tensor *t = mdl_check(L, 1);
  md_tensor *g = mdl_opt(L, 2);
  collect_before_sweep(L);
  mdl_check_rc(L, md_backward(t, g, mdl_optbool(L, 3, 0)));
  return 0;
}

/* core.grad(output, {inputs...} [, grad_output [, retain_graph]]) -> {grads...} */
static int f_grad(lua_State *L) {
  md_tensor *root = mdl_check(L, 1);
  luaL_checktype(L, 2, LUA_TTABLE);
  int n = (int)luaL_len(L, 2);
  if (n < 1) luaL_error(L, "grad: expected a list of inputs, got an empty one");
  lua_settop(L, 4); /* the buffer goes above the arguments */
  md_tensor **targets = lua_newuserdatauv(L, 2 * (size_t)n * sizeof *targets, 0), **grads = targets + n;
  for (int i = 0; i < n; i++) {
    lua_geti(L, 2, i + 1);
    targets[i] = mdl_check(L, -1);
    lua_pop(L, 1); /* the table keeps it alive */
  }
  md_tensor *g = mdl_opt(L, 3);
  collect_before_sweep(L);
  mdl_check_rc(L, md_grad(root, g, n, targets, grads, mdl_optbool(L, 4, 0)));
  lua_createtable(L, n, 0);
  for (int i = 0; i < n; i++) {
    mdl_push(L, grads[i]);
    lua_seti(L, -2, i + 1);
  }
  return 1;
}

static int f_is_grad_enabled(lua_State *L) {
  lua_pushboolean(L, md_grad_enabled());
  return 1;
}

/* core.poison_fresh_gradients(on), for the tests: see md_autograd_poison_fresh */
static int f_poison_fresh_gradients(lua_State *L) {
  md_autograd_poison_fresh(lua_toboolean(L, 1));
  return 0;
}

static int f_set_grad_enabled(lua_State *L) {
  lua_pushboolean(L, md_grad_enabled());
  md_set_grad_enabled(lua_toboolean(L, 1));
  return 1; /* the previous mode, so Lua can restore it */
}

const luaL_Reg mdl_autograd_funcs[] = {
    {"grad", f_grad},
    {"is_grad_enabled", f_is_grad_enabled},
    {"poison_fresh_gradients", f_poison_fresh_gradients},
    {"set_grad_enabled", f_set_grad_enabled},
    {NULL, NULL},
};

const luaL_Reg mdl_autograd_methods[] = {
    {"requires_grad", t_requires_grad},
    {"is_leaf", t_is_leaf},
    {"grad_fn", t_grad_fn},
    {"detach", t_detach},
    {"backward", t_backward},
    {NULL, NULL},
};
