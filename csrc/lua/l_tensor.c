/* The tensor userdata: lifetime (__gc, __close), memory accounting, indexing,
 * and the autograd entry points (requires_grad, backward, grad, no_grad). */
#include <errno.h>
#include <signal.h>
#include <string.h>
#include <time.h>

#include "../alloc.h"
#include "../autograd.h"
#include "../backend/peak.h"
#include "../backend/threads.h"
#include "../ops/blocked.h"
#include "../profile.h"
#include "binding.h"

typedef struct {
  md_tensor *t; /* NULL once closed */
} box;

/* ---- memory accounting -------------------------------------------------
 * Lua's collector sees only the small userdata, not the tensor memory behind
 * it. A full collection whenever the bytes allocated since the last one
 * exceed a quarter of what was alive after it (and at least 64 MiB) keeps a
 * training loop's footprint near its live set, and returns dead activations
 * to the allocator's cache (alloc.h) while they are still warm. The Lua heap
 * itself is small, so a full collection costs well under a millisecond. */
static int64_t total_at_last_gc, live_after_last_gc;

static void account(lua_State *L) {
  int64_t since = md_mem_allocated_total() - total_at_last_gc;
  int64_t limit = live_after_last_gc / 4 > (INT64_C(64) << 20) ? live_after_last_gc / 4 : (INT64_C(64) << 20);
  if (since > limit) {
    double t0 = md_profile_enabled() ? md_profile_now() : 0;
    lua_gc(L, LUA_GCCOLLECT);
    if (md_profile_enabled()) md_profile_add("(lua gc)", false, md_profile_now() - t0);
    total_at_last_gc = md_mem_allocated_total();
    live_after_last_gc = md_mem_live_bytes();
  }
}

int mdl_push(lua_State *L, md_tensor *t) {
  if (!t) {
    luaL_error(L, "%s", md_errmsg());
    return 0;
  }
  box *b = lua_newuserdatauv(L, sizeof *b, 0);
  b->t = t;
  luaL_setmetatable(L, MDL_TENSOR);
  account(L);
  return 1;
}

void mdl_check_rc(lua_State *L, int rc) {
  if (rc != MD_OK) luaL_error(L, "%s", md_errmsg());
}

int mdl_is(lua_State *L, int idx) { return luaL_testudata(L, idx, MDL_TENSOR) != NULL; }

md_tensor *mdl_check_any(lua_State *L, int idx) {
  box *b = luaL_checkudata(L, idx, MDL_TENSOR);
  if (!b->t) luaL_argerror(L, idx, "tensor used after it was closed");
  return b->t;
}

md_tensor *mdl_check(lua_State *L, int idx) {
  md_tensor *t = mdl_check_any(L, idx);
  if (!md_is_blocked(t)) return t;
  md_tensor *p;
  mdl_check_rc(L, md_to_plain(&p, t));
  idx = lua_absindex(L, idx);
  mdl_push(L, p);
  lua_replace(L, idx);
  return p;
}

md_tensor *mdl_check_inplace(lua_State *L, int idx) {
  md_tensor *t = mdl_check_any(L, idx);
  mdl_check_rc(L, md_make_plain_inplace(t));
  return t;
}

md_tensor *mdl_opt(lua_State *L, int idx) {
  return lua_isnoneornil(L, idx) ? NULL : mdl_check(L, idx);
}

md_tensor *mdl_opt_any(lua_State *L, int idx) {
  return lua_isnoneornil(L, idx) ? NULL : mdl_check_any(L, idx);
}

int mdl_shape(lua_State *L, int idx, int64_t *shape) {
  int n;
  if (lua_istable(L, idx)) {
    n = (int)luaL_len(L, idx);
    if (n > MD_MAX_DIMS) luaL_error(L, "shape has %d dimensions; at most %d", n, MD_MAX_DIMS);
    for (int i = 0; i < n; i++) {
      lua_geti(L, idx, i + 1);
      int isnum;
      lua_Integer v = lua_tointegerx(L, -1, &isnum);
      if (!isnum) luaL_error(L, "shape entry %d must be an integer, got %s", i + 1, luaL_typename(L, -1));
      shape[i] = v;
      lua_pop(L, 1);
    }
  } else {
    int top = lua_gettop(L);
    n = 0;
    for (int i = idx; i <= top && lua_type(L, i) == LUA_TNUMBER; i++) {
      if (n == MD_MAX_DIMS) luaL_error(L, "shape has more than %d dimensions", MD_MAX_DIMS);
      shape[n++] = luaL_checkinteger(L, i);
    }
  }
  for (int i = 0; i < n; i++)
    if (shape[i] < 0) luaL_error(L, "size of dimension %d must be non-negative, got %d", i + 1, (int)shape[i]);
  return n;
}

int mdl_dim(lua_State *L, int idx, int ndim, const char *op) {
  lua_Integer d = luaL_checkinteger(L, idx);
  int c = d > 0 ? (int)d - 1 : (int)d;
  if (d == 0) luaL_error(L, "%s: dimensions are 1-based (or negative from the end), got 0", op);
  int out;
  mdl_check_rc(L, md_resolve_dim(op, c, ndim, &out));
  return out;
}

int mdl_optbool(lua_State *L, int idx, int def) {
  return lua_isnoneornil(L, idx) ? def : lua_toboolean(L, idx);
}

/* ---- lifetime ------------------------------------------------------------ */

static int t_gc(lua_State *L) {
  box *b = luaL_checkudata(L, 1, MDL_TENSOR);
  md_tensor_release(b->t);
  b->t = NULL;
  return 0;
}

/* ---- indexing --------------------------------------------------------------
 * t[i] (1-based, first dimension) is a view for ndim > 1 and a number for a
 * 1-D tensor, as in Torch7. t.grad is the accumulated gradient. Anything else
 * is looked up in the methods table (upvalue 1). */

static int64_t check_index(lua_State *L, md_tensor *t, int idx) {
  if (t->ndim == 0) luaL_error(L, "cannot index a 0-dimensional tensor (use :item())");
  lua_Integer i = luaL_checkinteger(L, idx);
  if (i < 0) i += t->shape[0] + 1;
  if (i < 1 || i > t->shape[0])
    luaL_error(L, "index %d out of range for dimension 1 of size %d", (int)lua_tointeger(L, idx),
               (int)t->shape[0]);
  return (int64_t)i - 1;
}

int md_select_first(md_tensor **out, md_tensor *t, int64_t i); /* ops: autograd-aware view */

int mdl_tensor_index(lua_State *L) {
  md_tensor *t = mdl_check_any(L, 1); /* method lookups must not convert a blocked tensor */
  if (lua_type(L, 2) == LUA_TNUMBER) {
    t = mdl_check(L, 1);
    int64_t i = check_index(L, t, 2);
    if (t->ndim == 1) {
      lua_pushnumber(L, md_data(t)[i]);
      return 1;
    }
    md_tensor *v;
    mdl_check_rc(L, md_select_first(&v, t, i));
    return mdl_push(L, v);
  }
  const char *k = lua_tostring(L, 2);
  if (k && strcmp(k, "grad") == 0) {
    if (!t->grad) return lua_pushnil(L), 1;
    md_tensor_retain(t->grad);
    return mdl_push(L, t->grad);
  }
  lua_gettable(L, lua_upvalueindex(1));
  return 1;
}

int mdl_tensor_newindex(lua_State *L) {
  md_tensor *t = mdl_check_any(L, 1);
  if (lua_type(L, 2) == LUA_TNUMBER) {
    t = mdl_check_inplace(L, 1);
    int64_t i = check_index(L, t, 2);
    mdl_check_rc(L, md_begin_inplace(t, "index assignment"));
    int64_t inner = t->numel / t->shape[0];
    float *dst = md_data(t) + i * inner;
    if (lua_type(L, 3) == LUA_TNUMBER) {
      float v = (float)lua_tonumber(L, 3);
      for (int64_t j = 0; j < inner; j++) dst[j] = v;
    } else {
      md_tensor *s = mdl_check(L, 3);
      if (s->numel != inner)
        luaL_error(L, "index assignment: slice has %d elements, value has %d", (int)inner, (int)s->numel);
      memmove(dst, md_data(s), (size_t)inner * sizeof(float));
    }
    return 0;
  }
  const char *k = lua_tostring(L, 2);
  if (k && strcmp(k, "grad") == 0) {
    md_tensor *g = mdl_opt(L, 3);
    if (g && !md_same_shape(g, t)) luaL_error(L, "grad must have the tensor's shape");
    if (g && md_is_blocked(t)) { /* gradients are kept in their tensor's layout */
      bool prev = md_grad_enabled();
      md_set_grad_enabled(false);
      int rc = md_to_blocked(&g, g);
      md_set_grad_enabled(prev);
      mdl_check_rc(L, rc);
      mdl_push(L, g); /* the stack owns the new reference */
    }
    md_tensor_retain(g);
    md_tensor_release(t->grad);
    t->grad = g;
    return 0;
  }
  return luaL_error(L, "cannot set field '%s' of a tensor", k ? k : "?");
}

/* ---- shape queries ---------------------------------------------------------- */

static int t_numel(lua_State *L) {
  lua_pushinteger(L, mdl_check_any(L, 1)->numel);
  return 1;
}

static int t_len(lua_State *L) {
  md_tensor *t = mdl_check_any(L, 1);
  lua_pushinteger(L, t->ndim ? t->shape[0] : 0);
  return 1;
}

static int t_dim(lua_State *L) {
  lua_pushinteger(L, mdl_check_any(L, 1)->ndim);
  return 1;
}

static int t_shape(lua_State *L) {
  md_tensor *t = mdl_check_any(L, 1);
  lua_createtable(L, t->ndim, 0);
  for (int i = 0; i < t->ndim; i++) {
    lua_pushinteger(L, t->shape[i]);
    lua_seti(L, -2, i + 1);
  }
  return 1;
}

static int t_size(lua_State *L) {
  md_tensor *t = mdl_check_any(L, 1);
  if (lua_isnoneornil(L, 2)) return t_shape(L);
  lua_pushinteger(L, t->shape[mdl_dim(L, 2, t->ndim, "size")]);
  return 1;
}

static int t_item(lua_State *L) {
  md_tensor *t = mdl_check(L, 1);
  if (t->numel != 1)
    luaL_error(L, "item: tensor has %d elements, expected exactly one", (int)t->numel);
  lua_pushnumber(L, md_data(t)[0]);
  return 1;
}

/* t:flat() -> a Lua array of all elements, row-major */
static int t_flat(lua_State *L) {
  md_tensor *t = mdl_check(L, 1);
  const float *d = md_data(t);
  lua_createtable(L, (int)t->numel, 0);
  for (int64_t i = 0; i < t->numel; i++) {
    lua_pushnumber(L, d[i]);
    lua_seti(L, -2, i + 1);
  }
  return 1;
}

/* core.from_flat(array, shape): the inverse of t:flat() */
static int f_from_flat(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  int64_t shape[MD_MAX_DIMS];
  int nd = mdl_shape(L, 2, shape);
  lua_Integer n = luaL_len(L, 1);
  if (n != md_shape_numel(nd, shape))
    luaL_error(L, "tensor: %d values do not fill the shape (%d elements)", (int)n, (int)md_shape_numel(nd, shape));
  md_tensor *t = md_tensor_new(nd, shape);
  if (!t) luaL_error(L, "%s", md_errmsg());
  float *d = md_data(t);
  for (lua_Integer i = 0; i < n; i++) {
    int isnum;
    lua_Number v = lua_tonumberx(L, (lua_geti(L, 1, i + 1), -1), &isnum);
    if (!isnum) {
      md_tensor_release(t);
      luaL_error(L, "tensor: element %d is a %s, expected a number", (int)i + 1, luaL_typename(L, -1));
    }
    d[i] = (float)v;
    lua_pop(L, 1);
  }
  return mdl_push(L, t);
}

/* ---- autograd ------------------------------------------------------------------ */

static int t_requires_grad(lua_State *L) {
  md_tensor *t = mdl_check_any(L, 1);
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
  lua_pushboolean(L, mdl_check_any(L, 1)->grad_fn == NULL);
  return 1;
}

static int t_grad_fn(lua_State *L) {
  md_tensor *t = mdl_check_any(L, 1);
  if (t->grad_fn) lua_pushstring(L, t->grad_fn->op);
  else lua_pushnil(L);
  return 1;
}

/* t:layout() -> "nchw" or "nChw16c" (oneDNN's blocked layout, see tensor.h):
 * how the values are held, which only performance can tell apart */
static int t_layout(lua_State *L) {
  lua_pushstring(L, md_is_blocked(mdl_check_any(L, 1)) ? "nChw16c" : "nchw");
  return 1;
}

static int t_detach(lua_State *L) {
  md_tensor *t = mdl_check_any(L, 1);
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
  md_tensor *t = mdl_check_any(L, 1); /* the graph's own tensor, not a copy */
  md_tensor *g = mdl_opt(L, 2);
  collect_before_sweep(L);
  mdl_check_rc(L, md_backward(t, g, mdl_optbool(L, 3, 0)));
  return 0;
}

/* core.grad(output, {inputs...} [, grad_output [, retain_graph]]) -> {grads...} */
static int f_grad(lua_State *L) {
  md_tensor *root = mdl_check_any(L, 1); /* the graph's own tensors, not copies */
  luaL_checktype(L, 2, LUA_TTABLE);
  int n = (int)luaL_len(L, 2);
  if (n < 1 || n > 64) luaL_error(L, "grad: expected 1 to 64 inputs, got %d", n);
  md_tensor *targets[64], *grads[64];
  for (int i = 0; i < n; i++) {
    lua_geti(L, 2, i + 1);
    targets[i] = mdl_check_any(L, -1);
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

static int f_is_tensor(lua_State *L) {
  lua_pushboolean(L, mdl_is(L, 1));
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

/* ---- runtime ----------------------------------------------------------------- */

/* Ctrl-C during training (Lua has no signal API): catch_interrupt(true)
 * installs a SIGINT handler that only sets a flag, which the trainer polls
 * each step (interrupted()) to save a checkpoint and stop; a second Ctrl-C
 * kills as usual. catch_interrupt(false) restores the previous handler. */
static volatile sig_atomic_t sigint_seen;
static struct sigaction sigint_previous;
static bool sigint_caught;

static void on_sigint(int sig) {
  if (sigint_seen) { /* asked twice: stop now */
    signal(sig, SIG_DFL);
    raise(sig);
  }
  sigint_seen = 1;
}

static int f_catch_interrupt(lua_State *L) {
  bool on = lua_toboolean(L, 1);
  if (on && !sigint_caught) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigint;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGINT, &sa, &sigint_previous) != 0) luaL_error(L, "catch_interrupt: %s", strerror(errno));
    sigint_caught = true;
  } else if (!on && sigint_caught) {
    sigaction(SIGINT, &sigint_previous, NULL);
    sigint_caught = false;
  }
  sigint_seen = 0;
  return 0;
}

static int f_interrupted(lua_State *L) {
  lua_pushboolean(L, sigint_seen);
  return 1;
}

static int f_set_num_threads(lua_State *L) {
  lua_Integer n = luaL_checkinteger(L, 1);
  if (n < 1 || n > 4096) luaL_error(L, "set_num_threads: expected 1 to 4096 threads, got %I", n);
  md_set_num_threads((int)n);
  return 0;
}

static int f_get_num_threads(lua_State *L) {
  lua_pushinteger(L, md_get_num_threads());
  return 1;
}

/* md.core.fma_peak([iters]) -> the measured fp32 FMA peak in GFLOP/s */
static int f_fma_peak(lua_State *L) {
  lua_pushnumber(L, md_fma_peak_gflops(luaL_optinteger(L, 1, 20000000)));
  return 1;
}

/* md.time(): monotonic wall-clock seconds, for progress bars and benchmarks */
static int f_time(lua_State *L) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  lua_pushnumber(L, (lua_Number)ts.tv_sec + (lua_Number)ts.tv_nsec * 1e-9);
  return 1;
}

/* md.memory() -> live tensor bytes, bytes allocated so far, a table of
 * allocator-cache figures {cached, hits, misses} */
static int f_memory(lua_State *L) {
  lua_pushinteger(L, md_mem_live_bytes());
  lua_pushinteger(L, md_mem_allocated_total());
  int64_t hits, misses;
  md_alloc_stats(&hits, &misses);
  lua_createtable(L, 0, 3);
  lua_pushinteger(L, md_alloc_cached_bytes());
  lua_setfield(L, -2, "cached");
  lua_pushinteger(L, hits);
  lua_setfield(L, -2, "hits");
  lua_pushinteger(L, misses);
  lua_setfield(L, -2, "misses");
  return 3;
}

const luaL_Reg mdl_tensor_funcs[] = {
    {"grad", f_grad},
    {"is_tensor", f_is_tensor},
    {"from_flat", f_from_flat},
    {"is_grad_enabled", f_is_grad_enabled},
    {"poison_fresh_gradients", f_poison_fresh_gradients},
    {"set_grad_enabled", f_set_grad_enabled},
    {"set_num_threads", f_set_num_threads},
    {"catch_interrupt", f_catch_interrupt},
    {"interrupted", f_interrupted},
    {"get_num_threads", f_get_num_threads},
    {"memory", f_memory},
    {"time", f_time},
    {"fma_peak", f_fma_peak},
    {NULL, NULL},
};

const luaL_Reg mdl_tensor_methods[] = {
    {"__gc", t_gc},
    {"__close", t_gc},
    {"__len", t_len},
    {"numel", t_numel},
    {"nelement", t_numel},
    {"dim", t_dim},
    {"shape", t_shape},
    {"size", t_size},
    {"item", t_item},
    {"flat", t_flat},
    {"requires_grad", t_requires_grad},
    {"is_leaf", t_is_leaf},
    {"grad_fn", t_grad_fn},
    {"detach", t_detach},
    {"layout", t_layout},
    {"backward", t_backward},
    {NULL, NULL},
};
