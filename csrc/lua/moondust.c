/* luaopen_moondust_core: one module table with every area's functions, and
 * the tensor metatable. Method entries named "__x" are metamethods and go in
 * the metatable; the others go in the methods table, exposed as core.Tensor
 * so the Lua layer can add methods written in Lua. */
#include <string.h>

#include "../backend/threads.h"
#include "../profile.h"
#include "binding.h"

int mdl_tensor_index(lua_State *L);
int mdl_tensor_newindex(lua_State *L);

static const luaL_Reg *const area_funcs[] = {
    mdl_tensor_funcs, mdl_autograd_funcs, mdl_runtime_funcs, mdl_ops_funcs, mdl_random_funcs, mdl_conv_funcs,
    mdl_nn_funcs,     mdl_io_funcs, mdl_image_funcs, mdl_json_funcs,  mdl_optim_funcs,  mdl_diffusion_funcs, mdl_dist_funcs, mdl_repl_funcs,
};
static const luaL_Reg *const area_methods[] = {
    mdl_tensor_methods, mdl_autograd_methods, mdl_runtime_methods, mdl_ops_methods, mdl_random_methods, mdl_conv_methods,
    mdl_nn_methods,     mdl_io_methods, mdl_image_methods, mdl_json_methods,  mdl_optim_methods,  mdl_diffusion_methods, mdl_dist_methods, mdl_repl_methods,
};

/* Every exposed function goes through this closure (upvalues: the function,
 * its name), so that md.profile sees each op; off, it costs one call. */
static int profiled(lua_State *L) {
  lua_CFunction f = lua_tocfunction(L, lua_upvalueindex(1));
  if (!md_profile_enabled()) return f(L);
  double t0 = md_profile_now(), b0 = md_profile_booked();
  int nres = f(L);
  md_profile_add(lua_tostring(L, lua_upvalueindex(2)), false, md_profile_now() - t0 - (md_profile_booked() - b0));
  return nres;
}

static void push_profiled(lua_State *L, const luaL_Reg *r) {
  lua_pushcfunction(L, r->func);
  lua_pushstring(L, r->name);
  lua_pushcclosure(L, profiled, 2);
}

/* core.profile_start(); core.profile_stop() -> {{name, backward, seconds, calls}, ...} */
static int f_profile_start(lua_State *L) {
  md_profile_enable(true);
  return 0;
}

static int f_profile_stop(lua_State *L) {
  md_profile_enable(false);
  int n;
  const md_profile_row *rows = md_profile_rows(&n);
  lua_createtable(L, n, 0);
  for (int i = 0; i < n; i++) {
    lua_createtable(L, 0, 4);
    lua_pushstring(L, rows[i].name);
    lua_setfield(L, -2, "name");
    lua_pushboolean(L, rows[i].backward);
    lua_setfield(L, -2, "backward");
    lua_pushnumber(L, rows[i].seconds);
    lua_setfield(L, -2, "seconds");
    lua_pushinteger(L, rows[i].calls);
    lua_setfield(L, -2, "calls");
    lua_rawseti(L, -2, i + 1);
  }
  return 1;
}

int luaopen_moondust_core(lua_State *L) {
  md_threads_init();
  int nareas = (int)(sizeof area_funcs / sizeof area_funcs[0]);
  lua_newtable(L); /* module */
  for (int i = 0; i < nareas; i++) {
    for (const luaL_Reg *r = area_funcs[i]; r->name; r++) {
      push_profiled(L, r);
      lua_setfield(L, -2, r->name);
    }
  }
  lua_pushcfunction(L, f_profile_start);
  lua_setfield(L, -2, "profile_start");
  lua_pushcfunction(L, f_profile_stop);
  lua_setfield(L, -2, "profile_stop");

  luaL_newmetatable(L, MDL_TENSOR);
  lua_newtable(L); /* methods */
  for (int i = 0; i < nareas; i++) {
    for (const luaL_Reg *r = area_methods[i]; r->name; r++) {
      push_profiled(L, r);
      lua_setfield(L, strncmp(r->name, "__", 2) == 0 ? -3 : -2, r->name);
    }
  }
  lua_pushvalue(L, -1);
  lua_setfield(L, -4, "Tensor"); /* module.Tensor = methods */
  lua_pushcclosure(L, mdl_tensor_index, 1);
  lua_setfield(L, -2, "__index");
  lua_pushcfunction(L, mdl_tensor_newindex);
  lua_setfield(L, -2, "__newindex");
  lua_pop(L, 1); /* metatable */
  return 1;
}
