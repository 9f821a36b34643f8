/* Binding for creation functions and random numbers: md.zeros, md.full,
 * md.arange, md.rand, md.randn, md.randint, md.manual_seed, and the
 * md.Generator userdata (a seed and a counter, see rng.h). */
#include <math.h>

#include "../rng.h"
#include "binding.h"

#define MDL_GENERATOR "moondust.Generator"

/* A shape at idx (table or numbers); *next is the first argument after it. */
static int shape_arg(lua_State *L, int idx, int64_t *shape, int *next) {
  if (!lua_isnone(L, idx) && !lua_istable(L, idx) && lua_type(L, idx) != LUA_TNUMBER)
    luaL_typeerror(L, idx, "shape (a table of sizes)");
  int n = mdl_shape(L, idx, shape);
  *next = lua_istable(L, idx) ? idx + 1 : idx + n;
  return n;
}

static md_tensor *new_or_raise(lua_State *L, int ndim, const int64_t *shape) {
  md_tensor *t = md_tensor_new(ndim, shape);
  if (!t) luaL_error(L, "%s", md_errmsg());
  return t;
}

static int f_empty(lua_State *L) {
  int64_t shape[MD_MAX_DIMS];
  int next, n = shape_arg(L, 1, shape, &next);
  return mdl_push(L, md_tensor_new(n, shape));
}

static int f_zeros(lua_State *L) {
  int64_t shape[MD_MAX_DIMS];
  int next, n = shape_arg(L, 1, shape, &next);
  return mdl_push(L, md_tensor_zeros(n, shape));
}

static int f_ones(lua_State *L) {
  int64_t shape[MD_MAX_DIMS];
  int next, n = shape_arg(L, 1, shape, &next);
  return mdl_push(L, md_tensor_full(n, shape, 1.0f));
}

/* full(shape, value) */
static int f_full(lua_State *L) {
  int64_t shape[MD_MAX_DIMS];
  luaL_checktype(L, 1, LUA_TTABLE);
  int next, n = shape_arg(L, 1, shape, &next);
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
  md_tensor *t = new_or_raise(L, 1, &n);
  for (int64_t i = 0; i < n; i++) md_data(t)[i] = (float)(start + (double)i * step);
  return mdl_push(L, t);
}

/* linspace(start, stop, n): n points including both ends */
static int f_linspace(lua_State *L) {
  double a = luaL_checknumber(L, 1), b = luaL_checknumber(L, 2);
  lua_Integer n = luaL_checkinteger(L, 3);
  if (n < 0) luaL_error(L, "linspace: number of points must be non-negative, got %d", (int)n);
  int64_t len = n;
  md_tensor *t = new_or_raise(L, 1, &len);
  for (int64_t i = 0; i < n; i++) md_data(t)[i] = (float)(n == 1 ? a : a + (b - a) * (double)i / (double)(n - 1));
  return mdl_push(L, t);
}

/* ---- generators ------------------------------------------------------------ */

static md_generator *opt_generator(lua_State *L, int idx) {
  if (lua_isnoneornil(L, idx)) return md_default_generator();
  return luaL_checkudata(L, idx, MDL_GENERATOR);
}

typedef void (*fill_fn)(md_generator *g, float *out, int64_t n);

/* draws from generator `g` (nil = the global one) into a new tensor */
static int draw(lua_State *L, int shape_idx, fill_fn fill, md_generator *self) {
  int64_t shape[MD_MAX_DIMS];
  int next, n = shape_arg(L, shape_idx, shape, &next);
  md_generator *g = self ? self : opt_generator(L, next);
  md_tensor *t = new_or_raise(L, n, shape);
  fill(g, md_data(t), t->numel);
  return mdl_push(L, t);
}

static int f_rand(lua_State *L) { return draw(L, 1, md_rng_uniform, NULL); }
static int f_randn(lua_State *L) { return draw(L, 1, md_rng_normal, NULL); }

static int randint(lua_State *L, int idx, md_generator *self) {
  lua_Integer lo = luaL_checkinteger(L, idx), hi = luaL_checkinteger(L, idx + 1);
  if (hi <= lo) luaL_error(L, "randint: empty range [%I, %I)", lo, hi);
  int64_t shape[MD_MAX_DIMS];
  int next, n = shape_arg(L, idx + 2, shape, &next);
  md_generator *g = self ? self : opt_generator(L, next);
  md_tensor *t = new_or_raise(L, n, shape);
  md_rng_randint(g, md_data(t), t->numel, lo, hi);
  return mdl_push(L, t);
}

/* randint(lo, hi, shape [, generator]): integers in [lo, hi) */
static int f_randint(lua_State *L) { return randint(L, 1, NULL); }

static int f_manual_seed(lua_State *L) {
  md_generator_seed(md_default_generator(), (uint64_t)luaL_checkinteger(L, 1));
  return 0;
}

static void push_state(lua_State *L, const md_generator *g) {
  lua_createtable(L, 0, 2);
  lua_pushinteger(L, (lua_Integer)g->seed);
  lua_setfield(L, -2, "seed");
  lua_pushinteger(L, (lua_Integer)g->counter);
  lua_setfield(L, -2, "counter");
}

static void read_state(lua_State *L, int idx, md_generator *g) {
  luaL_checktype(L, idx, LUA_TTABLE);
  lua_getfield(L, idx, "seed");
  lua_getfield(L, idx, "counter");
  int ok1, ok2;
  lua_Integer seed = lua_tointegerx(L, -2, &ok1), counter = lua_tointegerx(L, -1, &ok2);
  if (!ok1 || !ok2) luaL_error(L, "generator state must be a table {seed = integer, counter = integer}");
  g->seed = (uint64_t)seed;
  g->counter = (uint64_t)counter;
  lua_pop(L, 2);
}

static int f_get_rng_state(lua_State *L) {
  push_state(L, md_default_generator());
  return 1;
}

static int f_set_rng_state(lua_State *L) {
  read_state(L, 1, md_default_generator());
  return 0;
}

static md_generator *check_gen(lua_State *L) { return luaL_checkudata(L, 1, MDL_GENERATOR); }

static int g_rand(lua_State *L) { return draw(L, 2, md_rng_uniform, check_gen(L)); }
static int g_randn(lua_State *L) { return draw(L, 2, md_rng_normal, check_gen(L)); }
static int g_randint(lua_State *L) { return randint(L, 2, check_gen(L)); }

static int g_manual_seed(lua_State *L) {
  md_generator_seed(check_gen(L), (uint64_t)luaL_checkinteger(L, 2));
  lua_settop(L, 1);
  return 1;
}

static int g_get_state(lua_State *L) {
  push_state(L, check_gen(L));
  return 1;
}

static int g_set_state(lua_State *L) {
  read_state(L, 2, check_gen(L));
  return 0;
}

static int g_tostring(lua_State *L) {
  md_generator *g = check_gen(L);
  lua_pushfstring(L, "Generator(seed=%I, counter=%I)", (lua_Integer)g->seed, (lua_Integer)g->counter);
  return 1;
}

static const luaL_Reg generator_methods[] = {
    {"rand", g_rand},           {"randn", g_randn},         {"randint", g_randint},
    {"manual_seed", g_manual_seed}, {"get_state", g_get_state}, {"set_state", g_set_state},
    {NULL, NULL},
};

/* Registers the Generator metatable the first time a generator is made. */
static void generator_metatable(lua_State *L) {
  if (luaL_newmetatable(L, MDL_GENERATOR)) {
    luaL_newlib(L, generator_methods);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, g_tostring);
    lua_setfield(L, -2, "__tostring");
  }
}

/* md.Generator(seed): an independent stream, e.g. one per image */
static int f_generator(lua_State *L) {
  uint64_t seed = (uint64_t)luaL_optinteger(L, 1, 0);
  md_generator *g = lua_newuserdatauv(L, sizeof *g, 0);
  md_generator_seed(g, seed);
  generator_metatable(L);
  lua_setmetatable(L, -2);
  return 1;
}

const luaL_Reg mdl_random_funcs[] = {
    {"empty", f_empty},
    {"zeros", f_zeros},
    {"ones", f_ones},
    {"full", f_full},
    {"arange", f_arange},
    {"linspace", f_linspace},
    {"rand", f_rand},
    {"randn", f_randn},
    {"randint", f_randint},
    {"manual_seed", f_manual_seed},
    {"get_rng_state", f_get_rng_state},
    {"set_rng_state", f_set_rng_state},
    {"Generator", f_generator},
    {NULL, NULL},
};

const luaL_Reg mdl_random_methods[] = {
    {NULL, NULL},
};
