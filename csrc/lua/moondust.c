/* luaopen_moondust_core: one module table with every area's functions, and
 * the tensor metatable. Method entries named "__x" are metamethods and go in
 * the metatable; the others go in the methods table, exposed as core.Tensor
 * so the Lua layer can add methods written in Lua. */
#include <string.h>

#include "../backend/threads.h"
#include "binding.h"

int mdl_tensor_index(lua_State *L);
int mdl_tensor_newindex(lua_State *L);

static const luaL_Reg *const area_funcs[] = {
    mdl_tensor_funcs, mdl_ops_funcs, mdl_random_funcs, mdl_conv_funcs,
    mdl_nn_funcs,     mdl_io_funcs,  mdl_optim_funcs,  mdl_diffusion_funcs,
};
static const luaL_Reg *const area_methods[] = {
    mdl_tensor_methods, mdl_ops_methods, mdl_random_methods, mdl_conv_methods,
    mdl_nn_methods,     mdl_io_methods,  mdl_optim_methods,  mdl_diffusion_methods,
};

int luaopen_moondust_core(lua_State *L) {
  md_threads_init();
  int nareas = (int)(sizeof area_funcs / sizeof area_funcs[0]);
  lua_newtable(L); /* module */
  for (int i = 0; i < nareas; i++) luaL_setfuncs(L, area_funcs[i], 0);

  luaL_newmetatable(L, MDL_TENSOR);
  lua_newtable(L); /* methods */
  for (int i = 0; i < nareas; i++) {
    for (const luaL_Reg *r = area_methods[i]; r->name; r++) {
      lua_pushcfunction(L, r->func);
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
