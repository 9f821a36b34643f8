/* The tensor userdata: lifetime (__gc, __close), memory accounting, indexing,
 * shape queries and creation (md.zeros, md.full, md.arange, ...). */
#include <math.h>
#include <string.h>

#include "../autograd.h"
#include "../ops/blocked.h"
#include "../ops/view.h"
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

md_tensor *mdl_check(lua_State *L, int idx) {
  box *b = luaL_checkudata(L, idx, MDL_TENSOR);
  if (!b->t) luaL_argerror(L, idx, "tensor used after it was closed");
  return b->t;
}

md_tensor *mdl_opt(lua_State *L, int idx) { return lua_isnoneornil(L, idx) ? NULL : mdl_check(L, idx); }

md_tensor *mdl_values(lua_State *L, int idx) {
  md_tensor *t = mdl_check(L, idx), *p;
  if (!md_is_blocked(t)) return t;
  mdl_check_rc(L, md_plain_values(&p, t));
  idx = lua_absindex(L, idx);
  mdl_push(L, p);
  lua_replace(L, idx);
  return p;
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

int mdl_tensor_index(lua_State *L) {
  md_tensor *t = mdl_check(L, 1);
  if (lua_type(L, 2) == LUA_TNUMBER) {
    int64_t i = check_index(L, t, 2);
    if (t->ndim == 1) { /* 1-D tensors are never blocked */
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
  md_tensor *t = mdl_check(L, 1);
  if (lua_type(L, 2) == LUA_TNUMBER) {
    int64_t i = check_index(L, t, 2);
    mdl_check_rc(L, md_begin_inplace(t, "index assignment"));
    mdl_check_rc(L, md_make_plain_inplace(t)); /* the slice is written in plain layout */
    int64_t inner = t->numel / t->shape[0];
    float *dst = md_data(t) + i * inner;
    if (lua_type(L, 3) == LUA_TNUMBER) {
      float v = (float)lua_tonumber(L, 3);
      for (int64_t j = 0; j < inner; j++) dst[j] = v;
    } else {
      md_tensor *s = mdl_values(L, 3);
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
  lua_pushinteger(L, mdl_check(L, 1)->numel);
  return 1;
}

static int t_len(lua_State *L) {
  md_tensor *t = mdl_check(L, 1);
  lua_pushinteger(L, t->ndim ? t->shape[0] : 0);
  return 1;
}

static int t_dim(lua_State *L) {
  lua_pushinteger(L, mdl_check(L, 1)->ndim);
  return 1;
}

static int t_shape(lua_State *L) {
  md_tensor *t = mdl_check(L, 1);
  lua_createtable(L, t->ndim, 0);
  for (int i = 0; i < t->ndim; i++) {
    lua_pushinteger(L, t->shape[i]);
    lua_seti(L, -2, i + 1);
  }
  return 1;
}

static int t_size(lua_State *L) {
  md_tensor *t = mdl_check(L, 1);
  if (lua_isnoneornil(L, 2)) return t_shape(L);
  lua_pushinteger(L, t->shape[mdl_dim(L, 2, t->ndim, "size")]);
  return 1;
}

static int t_item(lua_State *L) {
  md_tensor *t = mdl_values(L, 1);
  if (t->numel != 1)
    luaL_error(L, "item: tensor has %d elements, expected exactly one", (int)t->numel);
  lua_pushnumber(L, md_data(t)[0]);
  return 1;
}

/* t:flat() -> a Lua array of all elements, row-major */
static int t_flat(lua_State *L) {
  md_tensor *t = mdl_values(L, 1);
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

/* t:layout() -> "nchw" or "nChw16c" (oneDNN's blocked layout, see tensor.h):
 * how the values are held, which only performance can tell apart */
static int t_layout(lua_State *L) {
  lua_pushstring(L, md_is_blocked(mdl_check(L, 1)) ? "nChw16c" : "nchw");
  return 1;
}

static int f_is_tensor(lua_State *L) {
  lua_pushboolean(L, mdl_is(L, 1));
  return 1;
}

/* ---- creation ------------------------------------------------------------------ */

int mdl_shape_arg(lua_State *L, int idx, int64_t *shape, int *next) {
  if (!lua_isnone(L, idx) && !lua_istable(L, idx) && lua_type(L, idx) != LUA_TNUMBER)
    luaL_typeerror(L, idx, "shape (a table of sizes)");
  int n = mdl_shape(L, idx, shape);
  *next = lua_istable(L, idx) ? idx + 1 : idx + n;
  return n;
}

md_tensor *mdl_new(lua_State *L, int ndim, const int64_t *shape) {
  md_tensor *t = md_tensor_new(ndim, shape);
  if (!t) luaL_error(L, "%s", md_errmsg());
  return t;
}

static int f_empty(lua_State *L) {
  int64_t shape[MD_MAX_DIMS];
  int next, n = mdl_shape_arg(L, 1, shape, &next);
  return mdl_push(L, md_tensor_new(n, shape));
}

static int f_zeros(lua_State *L) {
  int64_t shape[MD_MAX_DIMS];
  int next, n = mdl_shape_arg(L, 1, shape, &next);
  return mdl_push(L, md_tensor_zeros(n, shape));
}

static int f_ones(lua_State *L) {
  int64_t shape[MD_MAX_DIMS];
  int next, n = mdl_shape_arg(L, 1, shape, &next);
  return mdl_push(L, md_tensor_full(n, shape, 1.0f));
}

/* full(shape, value) */
static int f_full(lua_State *L) {
  int64_t shape[MD_MAX_DIMS];
  luaL_checktype(L, 1, LUA_TTABLE);
  int next, n = mdl_shape_arg(L, 1, shape, &next);
  return mdl_push(L, md_tensor_full(n, shape, (float)luaL_checknumber(L, next)));
}

/* arange(stop) or arange(start, stop [, step]): [start, stop) */
static int f_arange(lua_State *L) {
  double start = 0, stop, step = 1;
  if (lua_isnoneornil(L, 2)) stop = luaL_checknumber(L, 1);
  else start = luaL_checknumber(L, 1), stop = luaL_checknumber(L, 2), step = luaL_optnumber(L, 3, 1);
  if (step == 0 || !isfinite(start) || !isfinite(stop) || !isfinite(step))
    luaL_error(L, "arange: needs finite bounds and a non-zero step");
  double count = ceil((stop - start) / step);
  int64_t n = count > 0 ? (int64_t)count : 0;
  md_tensor *t = mdl_new(L, 1, &n);
  for (int64_t i = 0; i < n; i++) md_data(t)[i] = (float)(start + (double)i * step);
  return mdl_push(L, t);
}

/* linspace(start, stop, n): n points including both ends */
static int f_linspace(lua_State *L) {
  double a = luaL_checknumber(L, 1), b = luaL_checknumber(L, 2);
  lua_Integer n = luaL_checkinteger(L, 3);
  if (n < 0) luaL_error(L, "linspace: number of points must be non-negative, got %d", (int)n);
  int64_t len = n;
  md_tensor *t = mdl_new(L, 1, &len);
  for (int64_t i = 0; i < n; i++) md_data(t)[i] = (float)(n == 1 ? a : a + (b - a) * (double)i / (double)(n - 1));
  return mdl_push(L, t);
}

const luaL_Reg mdl_tensor_funcs[] = {
    {"is_tensor", f_is_tensor},
    {"from_flat", f_from_flat},
    {"empty", f_empty},
    {"zeros", f_zeros},
    {"ones", f_ones},
    {"full", f_full},
    {"arange", f_arange},
    {"linspace", f_linspace},
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
    {"layout", t_layout},
    {NULL, NULL},
};
