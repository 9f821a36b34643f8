/* Binding for tensor arithmetic, reductions, layout ops, matrix products and
 * views. Most entries serve both as methods (t:exp()) and as module
 * functions (md.exp(t)); operators are metamethods. Numbers mix with tensors
 * everywhere a tensor operand is expected. */
#include <limits.h>
#include <math.h>

#include "../autograd.h"
#include "../ops/layout.h"
#include "../ops/linalg.h"
#include "../ops/pointwise.h"
#include "../ops/reduce.h"
#include "../ops/view.h"
#include "binding.h"

/* The tensor at idx, in any layout; a number there becomes a 0-dim tensor
 * (left on the stack in its place, so the collector owns it). */
static md_tensor *operand_any(lua_State *L, int idx) {
  if (lua_type(L, idx) == LUA_TNUMBER) {
    md_tensor *s = md_tensor_scalar((float)lua_tonumber(L, idx));
    mdl_push(L, s);
    lua_replace(L, idx);
    return s;
  }
  return mdl_check_any(L, idx);
}

/* The same, in plain layout (see mdl_check). */
static md_tensor *operand(lua_State *L, int idx) {
  operand_any(L, idx);
  return mdl_check(L, idx);
}

static int push_unary(lua_State *L, md_unary_op op, md_tensor *x, float p0, float p1) {
  md_tensor *y;
  mdl_check_rc(L, md_unary(&y, op, x, p0, p1));
  return mdl_push(L, y);
}

/* Two blocked tensors of one shape combine elementwise in their layout;
 * any other mix is done in plain layout. */
static int push_binary(lua_State *L, md_binary_op op, int ia, int ib) {
  md_tensor *a = operand_any(L, ia), *b = operand_any(L, ib), *y;
  if ((md_is_blocked(a) || md_is_blocked(b)) && !(md_is_blocked(a) && md_is_blocked(b) && md_same_shape(a, b)))
    a = mdl_check(L, ia), b = mdl_check(L, ib);
  mdl_check_rc(L, md_binary(&y, op, a, b));
  return mdl_push(L, y);
}

/* ---- operators: numbers take the unary fast paths ------------------------------ */

static int arith(lua_State *L, md_binary_op op) {
  bool na = lua_type(L, 1) == LUA_TNUMBER, nb = lua_type(L, 2) == LUA_TNUMBER;
  if (na == nb) return push_binary(L, op, 1, 2);
  float s = (float)lua_tonumber(L, na ? 1 : 2);
  md_tensor *t = mdl_check_any(L, na ? 2 : 1); /* elementwise: any layout */
  switch (op) {
  case MD_ADD: return push_unary(L, MD_AFFINE, t, 1.0f, s);
  case MD_SUB: return na ? push_unary(L, MD_AFFINE, t, -1.0f, s) : push_unary(L, MD_AFFINE, t, 1.0f, -s);
  case MD_MUL: return push_unary(L, MD_AFFINE, t, s, 0.0f);
  case MD_DIV: return na ? push_unary(L, MD_RECIP, t, s, 0.0f) : push_unary(L, MD_AFFINE, t, 1.0f / s, 0.0f);
  case MD_POW: return na ? push_binary(L, op, 1, 2) : push_unary(L, MD_POWS, t, s, 0.0f);
  default: return push_binary(L, op, 1, 2);
  }
}

static int m_add(lua_State *L) {
  if (!lua_isnoneornil(L, 3)) { /* a + alpha * b */
    lua_Number alpha = luaL_checknumber(L, 3);
    lua_settop(L, 2);
    lua_pushnumber(L, alpha);
    lua_arith(L, LUA_OPMUL); /* tensor __mul, or plain numbers */
    lua_settop(L, 2);
  }
  return arith(L, MD_ADD);
}
static int m_sub(lua_State *L) { return arith(L, MD_SUB); }
static int m_mul(lua_State *L) { return arith(L, MD_MUL); }
static int m_div(lua_State *L) { return arith(L, MD_DIV); }
static int m_pow(lua_State *L) { return arith(L, MD_POW); }
static int m_unm(lua_State *L) { return push_unary(L, MD_NEG, mdl_check_any(L, 1), 0, 0); }
static int m_maximum(lua_State *L) { return push_binary(L, MD_MAXIMUM, 1, 2); }
static int m_minimum(lua_State *L) { return push_binary(L, MD_MINIMUM, 1, 2); }
static int m_eq(lua_State *L) { return push_binary(L, MD_EQ, 1, 2); }
static int m_ne(lua_State *L) { return push_binary(L, MD_NE, 1, 2); }
static int m_lt(lua_State *L) { return push_binary(L, MD_LT, 1, 2); }
static int m_le(lua_State *L) { return push_binary(L, MD_LE, 1, 2); }
static int m_gt(lua_State *L) { return push_binary(L, MD_GT, 1, 2); }
static int m_ge(lua_State *L) { return push_binary(L, MD_GE, 1, 2); }

/* in place: t:add_(x [, alpha]), sub_, mul_, div_. With a number the op is
 * pointwise and keeps t's layout; with a tensor t is made plain first. */
static int inplace(lua_State *L, md_binary_op op) {
  md_tensor *t = lua_type(L, 2) == LUA_TNUMBER ? mdl_check_any(L, 1) : mdl_check_inplace(L, 1);
  if (lua_type(L, 2) == LUA_TNUMBER) {
    float s = (float)lua_tonumber(L, 2) * (float)luaL_optnumber(L, 3, 1);
    switch (op) {
    case MD_ADD: mdl_check_rc(L, md_unary_(MD_AFFINE, t, 1.0f, s)); break;
    case MD_SUB: mdl_check_rc(L, md_unary_(MD_AFFINE, t, 1.0f, -s)); break;
    case MD_MUL: mdl_check_rc(L, md_unary_(MD_AFFINE, t, s, 0.0f)); break;
    default: mdl_check_rc(L, md_unary_(MD_AFFINE, t, 1.0f / s, 0.0f)); break;
    }
  } else {
    md_tensor *b = mdl_check(L, 2);
    if (!lua_isnoneornil(L, 3)) { /* alpha * b first, outside autograd */
      md_tensor *scaled;
      bool prev = md_grad_enabled();
      md_set_grad_enabled(false);
      int rc = md_unary(&scaled, MD_AFFINE, b, (float)luaL_checknumber(L, 3), 0.0f);
      md_set_grad_enabled(prev);
      mdl_check_rc(L, rc);
      mdl_push(L, scaled);
      b = scaled;
    }
    mdl_check_rc(L, md_binary_(op, t, b));
  }
  lua_settop(L, 1);
  return 1;
}
static int m_add_(lua_State *L) { return inplace(L, MD_ADD); }
static int m_sub_(lua_State *L) { return inplace(L, MD_SUB); }
static int m_mul_(lua_State *L) { return inplace(L, MD_MUL); }
static int m_div_(lua_State *L) { return inplace(L, MD_DIV); }

/* ---- unary functions ---------------------------------------------------------------- */

/* pointwise: the result has the input's layout */
static int unary_at(lua_State *L, md_unary_op op) { return push_unary(L, op, mdl_check_any(L, 1), 0, 0); }
static int m_neg(lua_State *L) { return unary_at(L, MD_NEG); }
static int m_sqrt(lua_State *L) { return unary_at(L, MD_SQRT); }
static int m_rsqrt(lua_State *L) { return unary_at(L, MD_RSQRT); }
static int m_exp(lua_State *L) { return unary_at(L, MD_EXP); }
static int m_log(lua_State *L) { return unary_at(L, MD_LOG); }
static int m_abs(lua_State *L) { return unary_at(L, MD_ABS); }
static int m_sin(lua_State *L) { return unary_at(L, MD_SIN); }
static int m_cos(lua_State *L) { return unary_at(L, MD_COS); }
static int m_sigmoid(lua_State *L) { return unary_at(L, MD_SIGMOID); }
static int m_tanh(lua_State *L) { return unary_at(L, MD_TANH); }
static int m_relu(lua_State *L) { return unary_at(L, MD_RELU); }
static int m_silu(lua_State *L) { return unary_at(L, MD_SILU); }

/* clamp(lo, hi): either may be nil */
static void clamp_bounds(lua_State *L, float *lo, float *hi) {
  *lo = lua_isnoneornil(L, 2) ? -INFINITY : (float)luaL_checknumber(L, 2);
  *hi = lua_isnoneornil(L, 3) ? INFINITY : (float)luaL_checknumber(L, 3);
}
static int m_clamp(lua_State *L) {
  float lo, hi;
  clamp_bounds(L, &lo, &hi);
  return push_unary(L, MD_CLAMP, mdl_check_any(L, 1), lo, hi);
}
static int m_clamp_(lua_State *L) {
  float lo, hi;
  clamp_bounds(L, &lo, &hi);
  mdl_check_rc(L, md_unary_(MD_CLAMP, mdl_check_any(L, 1), lo, hi)); /* pointwise: any layout */
  lua_settop(L, 1);
  return 1;
}

/* md.where(cond, a, b): a and b may be numbers */
static int f_where(lua_State *L) {
  md_tensor *c = mdl_check(L, 1), *a = operand(L, 2), *b = operand(L, 3), *y;
  mdl_check_rc(L, md_where(&y, c, a, b));
  return mdl_push(L, y);
}

/* ---- reductions ------------------------------------------------------------------------ */

/* t:sum([dim [, keepdim]]) and mean */
static int reduce_simple(lua_State *L, md_reduce_op op) {
  md_tensor *t = mdl_check(L, 1), *y;
  bool all = lua_isnoneornil(L, 2);
  int dim = all ? 0 : mdl_dim(L, 2, t->ndim, op == MD_SUM ? "sum" : "mean");
  mdl_check_rc(L, md_reduce(&y, op, t, all, dim, mdl_optbool(L, 3, 0), 0));
  return mdl_push(L, y);
}
static int m_sum(lua_State *L) { return reduce_simple(L, MD_SUM); }
static int m_mean(lua_State *L) { return reduce_simple(L, MD_MEAN); }

/* t:var([dim [, unbiased=true [, keepdim]]]) and std */
static int reduce_spread(lua_State *L, md_reduce_op op) {
  md_tensor *t = mdl_check(L, 1), *y;
  bool all = lua_isnoneornil(L, 2);
  int dim = all ? 0 : mdl_dim(L, 2, t->ndim, op == MD_VAR ? "var" : "std");
  int correction = mdl_optbool(L, 3, 1) ? 1 : 0;
  mdl_check_rc(L, md_reduce(&y, op, t, all, dim, mdl_optbool(L, 4, 0), correction));
  return mdl_push(L, y);
}
static int m_var(lua_State *L) { return reduce_spread(L, MD_VAR); }
static int m_std(lua_State *L) { return reduce_spread(L, MD_STD); }

/* t:max() -> 0-dim value; t:max(dim [, keepdim]) -> values, indices (0-based) */
static int extreme(lua_State *L, bool is_min, bool want_values) {
  md_tensor *t = mdl_check(L, 1), *v, *ix;
  bool all = lua_isnoneornil(L, 2);
  int dim = all ? 0 : mdl_dim(L, 2, t->ndim, is_min ? "min" : "max");
  mdl_check_rc(L, md_max(&v, &ix, t, all, dim, mdl_optbool(L, 3, 0), is_min));
  if (!want_values) {
    md_tensor_release(v);
    return mdl_push(L, ix);
  }
  mdl_push(L, v);
  if (all) {
    md_tensor_release(ix);
    return 1;
  }
  mdl_push(L, ix);
  return 2;
}
static int m_max(lua_State *L) { return extreme(L, false, true); }
static int m_min(lua_State *L) { return extreme(L, true, true); }
static int m_argmax(lua_State *L) { return extreme(L, false, false); }
static int m_argmin(lua_State *L) { return extreme(L, true, false); }

/* ---- layout --------------------------------------------------------------------------- */

static int m_clone(lua_State *L) {
  md_tensor *y;
  mdl_check_rc(L, md_clone(&y, mdl_check(L, 1)));
  return mdl_push(L, y);
}

/* Tensors are always contiguous: contiguous() is the tensor itself. */
static int m_contiguous(lua_State *L) {
  mdl_check(L, 1);
  lua_settop(L, 1);
  return 1;
}

static int m_copy_(lua_State *L) {
  md_tensor *t = mdl_check_inplace(L, 1);
  mdl_check_rc(L, md_copy_(t, operand(L, 2)));
  lua_settop(L, 1);
  return 1;
}

static int m_fill_(lua_State *L) {
  mdl_check_rc(L, md_fill_(mdl_check_any(L, 1), (float)luaL_checknumber(L, 2))); /* any layout */
  lua_settop(L, 1);
  return 1;
}

static int m_zero_(lua_State *L) {
  mdl_check_rc(L, md_fill_(mdl_check_any(L, 1), 0.0f));
  lua_settop(L, 1);
  return 1;
}

/* The tensors of the list at idx (any number), plain unless keep_blocked.
 * Pushes two values: the array returned (a userdata) and a table keeping
 * converted copies alive; both go when the stack is cut back. */
static md_tensor **tensor_list(lua_State *L, int idx, int *n_out, const char *op, bool keep_blocked) {
  luaL_checktype(L, idx, LUA_TTABLE);
  lua_Integer n = luaL_len(L, idx);
  if (n < 1) luaL_error(L, "%s: expected at least 1 tensor, got %d", op, (int)n);
  if (n > INT_MAX / (lua_Integer)sizeof(md_tensor *)) luaL_error(L, "%s: too many tensors (%I)", op, n);
  md_tensor **xs = lua_newuserdatauv(L, (size_t)n * sizeof *xs, 0);
  lua_createtable(L, (int)n, 0);
  int keep = lua_gettop(L);
  for (lua_Integer i = 0; i < n; i++) {
    lua_geti(L, idx, i + 1);
    if (!mdl_is(L, -1)) luaL_error(L, "%s: entry %d is a %s, not a tensor", op, (int)i + 1, luaL_typename(L, -1));
    xs[i] = keep_blocked ? mdl_check_any(L, -1) : mdl_check(L, -1);
    lua_seti(L, keep, i + 1);
  }
  *n_out = (int)n;
  return xs;
}

/* md.cat({...} [, dim = 1]): blocked tensors concatenated along channels
 * stay blocked; any other mix is concatenated in plain layout */
static int f_cat(lua_State *L) {
  md_tensor **xs, *y;
  int n;
  lua_settop(L, 2); /* the list's tensors go above the arguments */
  int top = lua_gettop(L);
  xs = tensor_list(L, 1, &n, "cat", true);
  int dim = lua_isnoneornil(L, 2) ? 0 : mdl_dim(L, 2, xs[0]->ndim, "cat");
  bool all_blocked = dim == 1;
  for (int i = 0; i < n; i++) all_blocked = all_blocked && md_is_blocked(xs[i]);
  if (!all_blocked) {
    lua_settop(L, top);
    xs = tensor_list(L, 1, &n, "cat", false);
  }
  mdl_check_rc(L, md_cat(&y, n, xs, dim));
  return mdl_push(L, y);
}

/* md.stack({...} [, dim = 1]) */
static int f_stack(lua_State *L) {
  md_tensor **xs, *y;
  int n;
  lua_settop(L, 2); /* the list's tensors go above the arguments */
  xs = tensor_list(L, 1, &n, "stack", false);
  int dim = lua_isnoneornil(L, 2) ? 0 : mdl_dim(L, 2, xs[0]->ndim + 1, "stack");
  mdl_check_rc(L, md_stack(&y, n, xs, dim));
  return mdl_push(L, y);
}

/* t:permute(d1, d2, ...) or t:permute{...}, 1-based */
static int m_permute(lua_State *L) {
  md_tensor *t = mdl_check(L, 1), *y;
  int perm[MD_MAX_DIMS];
  bool tbl = lua_istable(L, 2);
  int n = tbl ? (int)luaL_len(L, 2) : lua_gettop(L) - 1;
  if (n != t->ndim) luaL_error(L, "permute: expected %d dimensions, got %d", t->ndim, n);
  for (int i = 0; i < n; i++) {
    if (tbl) {
      lua_geti(L, 2, i + 1);
      perm[i] = mdl_dim(L, -1, t->ndim, "permute");
      lua_pop(L, 1);
    } else {
      perm[i] = mdl_dim(L, i + 2, t->ndim, "permute");
    }
  }
  mdl_check_rc(L, md_permute(&y, t, perm));
  return mdl_push(L, y);
}

/* t:transpose(d1, d2) (copying); t:t() for a matrix */
static int m_transpose(lua_State *L) {
  md_tensor *t = mdl_check(L, 1), *y;
  int perm[MD_MAX_DIMS];
  for (int i = 0; i < t->ndim; i++) perm[i] = i;
  int a, b;
  if (lua_isnoneornil(L, 2)) {
    if (t->ndim != 2) luaL_error(L, "t(): expected a matrix, got %d dimensions", t->ndim);
    a = 0, b = 1;
  } else {
    a = mdl_dim(L, 2, t->ndim, "transpose"), b = mdl_dim(L, 3, t->ndim, "transpose");
  }
  perm[a] = b, perm[b] = a;
  mdl_check_rc(L, md_permute(&y, t, perm));
  return mdl_push(L, y);
}

/* md.index_select(t, dim, idx) / t:index_select(dim, idx); idx 0-based */
static int m_index_select(lua_State *L) {
  md_tensor *t = mdl_check(L, 1), *y;
  int dim = mdl_dim(L, 2, t->ndim, "index_select");
  mdl_check_rc(L, md_index_select(&y, t, dim, mdl_check(L, 3)));
  return mdl_push(L, y);
}

/* ---- views -------------------------------------------------------------------------------- */

/* t:view(...) / t:reshape(...): numbers or a table, one -1 allowed */
static int m_reshape(lua_State *L) {
  md_tensor *t = mdl_check(L, 1), *y;
  int64_t shape[MD_MAX_DIMS];
  int n;
  if (lua_istable(L, 2)) {
    n = (int)luaL_len(L, 2);
    if (n > MD_MAX_DIMS) luaL_error(L, "reshape: at most %d dimensions, got %d", MD_MAX_DIMS, n);
    for (int i = 0; i < n; i++) {
      lua_geti(L, 2, i + 1);
      shape[i] = luaL_checkinteger(L, -1);
      lua_pop(L, 1);
    }
  } else {
    n = lua_gettop(L) - 1;
    if (n > MD_MAX_DIMS) luaL_error(L, "reshape: at most %d dimensions, got %d", MD_MAX_DIMS, n);
    for (int i = 0; i < n; i++) shape[i] = luaL_checkinteger(L, i + 2);
  }
  mdl_check_rc(L, md_reshape(&y, t, n, shape));
  return mdl_push(L, y);
}

/* t:narrow(1, start, len): rows start..start+len-1 (1-based), sharing storage */
static int m_narrow(lua_State *L) {
  md_tensor *t = mdl_check(L, 1), *y;
  if (mdl_dim(L, 2, t->ndim, "narrow") != 0)
    luaL_error(L, "narrow: only the first dimension shares storage; use index_select for others");
  lua_Integer start = luaL_checkinteger(L, 3), len = luaL_checkinteger(L, 4);
  mdl_check_rc(L, md_narrow_first(&y, t, start - 1, len));
  return mdl_push(L, y);
}

/* ---- matrix products ---------------------------------------------------------------------- */

static int m_matmul(lua_State *L) {
  md_tensor *y;
  mdl_check_rc(L, md_matmul(&y, mdl_check(L, 1), mdl_check(L, 2)));
  return mdl_push(L, y);
}

static int f_bmm(lua_State *L) {
  md_tensor *y;
  mdl_check_rc(L, md_bmm(&y, mdl_check(L, 1), mdl_check(L, 2)));
  return mdl_push(L, y);
}

static int f_linear(lua_State *L) {
  md_tensor *y;
  mdl_check_rc(L, md_linear(&y, mdl_check(L, 1), mdl_check(L, 2), mdl_opt(L, 3)));
  return mdl_push(L, y);
}

/* Entries usable both as t:name() and md.name(t). */
#define BOTH                                                                                     \
  {"add", m_add}, {"sub", m_sub}, {"mul", m_mul}, {"div", m_div}, {"pow", m_pow},                  \
      {"maximum", m_maximum}, {"minimum", m_minimum}, {"eq", m_eq}, {"ne", m_ne}, {"lt", m_lt},    \
      {"le", m_le}, {"gt", m_gt}, {"ge", m_ge}, {"neg", m_neg}, {"sqrt", m_sqrt},                  \
      {"rsqrt", m_rsqrt}, {"exp", m_exp}, {"log", m_log}, {"abs", m_abs}, {"sin", m_sin},          \
      {"cos", m_cos}, {"sigmoid", m_sigmoid}, {"tanh", m_tanh}, {"relu", m_relu},                   \
      {"silu", m_silu}, {"clamp", m_clamp}, {"sum", m_sum}, {"mean", m_mean}, {"var", m_var},      \
      {"std", m_std}, {"max", m_max}, {"min", m_min}, {"argmax", m_argmax}, {"argmin", m_argmin},  \
      {"clone", m_clone}, {"permute", m_permute}, {"transpose", m_transpose},                      \
      {"index_select", m_index_select}, {"matmul", m_matmul}, {"reshape", m_reshape}

const luaL_Reg mdl_ops_funcs[] = {
    BOTH,
    {"where", f_where},
    {"cat", f_cat},
    {"stack", f_stack},
    {"bmm", f_bmm},
    {"linear", f_linear},
    {NULL, NULL},
};

const luaL_Reg mdl_ops_methods[] = {
    BOTH,
    {"__add", m_add},
    {"__sub", m_sub},
    {"__mul", m_mul},
    {"__div", m_div},
    {"__pow", m_pow},
    {"__unm", m_unm},
    {"add_", m_add_},
    {"sub_", m_sub_},
    {"mul_", m_mul_},
    {"div_", m_div_},
    {"clamp_", m_clamp_},
    {"copy_", m_copy_},
    {"fill_", m_fill_},
    {"zero_", m_zero_},
    {"contiguous", m_contiguous},
    {"view", m_reshape},
    {"narrow", m_narrow},
    {"t", m_transpose},
    {NULL, NULL},
};
