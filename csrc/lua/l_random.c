/* Binding for random numbers: md.rand, md.randn, md.randint, md.manual_seed,
 * and the md.Generator userdata (a seed and a counter, see rng.h). */
#include <math.h>

#include "../rng.h"
#include "binding.h"

#define MDL_GENERATOR "moondust.Generator"


/* ---- generators ------------------------------------------------------------ */

static md_generator *opt_generator(lua_State *L, int idx) {
  if (lua_isnoneornil(L, idx)) return md_default_generator();
  return luaL_checkudata(L, idx, MDL_GENERATOR);
}

typedef void (*fill_fn)(md_generator *g, float *out, int64_t n);

/* draws from generator `g` (nil = the global one) into a new tensor */
static int draw(lua_State *L, int shape_idx, fill_fn fill, md_generator *self) {
  int64_t shape[MD_MAX_DIMS];
  int next, n = mdl_shape_arg(L, shape_idx, shape, &next);
  md_generator *g = self ? self : opt_generator(L, next);
  md_tensor *t = mdl_new(L, n, shape);
  fill(g, md_data(t), t->numel);
  return mdl_push(L, t);
}

static int f_rand(lua_State *L) { return draw(L, 1, md_rng_uniform, NULL); }
static int f_randn(lua_State *L) { return draw(L, 1, md_rng_normal, NULL); }

static int randint(lua_State *L, int idx, md_generator *self) {
  lua_Integer lo = luaL_checkinteger(L, idx), hi = luaL_checkinteger(L, idx + 1);
  if (hi <= lo) luaL_error(L, "randint: empty range [%I, %I)", lo, hi);
  int64_t shape[MD_MAX_DIMS];
  int next, n = mdl_shape_arg(L, idx + 2, shape, &next);
  md_generator *g = self ? self : opt_generator(L, next);
  md_tensor *t = mdl_new(L, n, shape);
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
