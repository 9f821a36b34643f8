/* Binding for convolution: md.conv2d and the engine switch. */
#include <assert.h>

#include <string.h>

#include "../ops/conv.h"
#include "binding.h"

/* md.conv2d(x, w [, bias [, stride = 1 [, padding = 0]]]) */
static int f_conv2d(lua_State *L) {
  md_tensor *y;
  lua_Integer stride = luaL_optinteger(L, 4, 1), pad = luaL_optinteger(L, 5, 0);
  md_tensor *x = mdl_check(L, 1);
  mdl_check_rc(L, md_conv2d(&y, x, mdl_check(L, 2), mdl_opt(L, 3), stride, pad));
  return mdl_push(L, y);
}

static const char *const backend_names[] = {[MD_CONV_IM2COL] = "im2col", [MD_CONV_DNNL] = "dnnl",
                                            [MD_CONV_DNNL_DIRECT] = "dnnl_direct", [MD_CONV_BACKEND_COUNT] = NULL};
static_assert(sizeof backend_names / sizeof *backend_names == MD_CONV_BACKEND_COUNT + 1, "an engine without a name");

/* md.set_conv_backend("dnnl" | "dnnl_direct" | "im2col"): "dnnl" uses
 * Winograd for the 3x3 layers where it pays, "dnnl_direct" never */
static int f_set_conv_backend(lua_State *L) {
  mdl_check_rc(L, md_set_conv_backend((md_conv_backend)luaL_checkoption(L, 1, NULL, backend_names)));
  return 0;
}

static int f_get_conv_backend(lua_State *L) {
  lua_pushstring(L, backend_names[md_get_conv_backend()]);
  return 1;
}

const luaL_Reg mdl_conv_funcs[] = {
    {"conv2d", f_conv2d},
    {"set_conv_backend", f_set_conv_backend},
    {"get_conv_backend", f_get_conv_backend},
    {NULL, NULL},
};

const luaL_Reg mdl_conv_methods[] = {
    {NULL, NULL},
};
