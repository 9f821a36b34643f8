/* Binding for convolution: md.conv2d and the engine switch. */
#include <assert.h>

#include <string.h>

#include "../backend/conv_dnnl.h"
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
                                            [MD_CONV_DNNL_DIRECT] = "dnnl_direct", [MD_CONV_DNNL_BF16] = "dnnl_bf16",
                                            [MD_CONV_BACKEND_COUNT] = NULL};
static_assert(sizeof backend_names / sizeof *backend_names == MD_CONV_BACKEND_COUNT + 1, "an engine without a name");

/* md.set_conv_backend("dnnl" | "dnnl_direct" | "dnnl_bf16" | "im2col"):
 * "dnnl" uses Winograd for the 3x3 layers where it pays, "dnnl_direct"
 * never, "dnnl_bf16" multiplies in bfloat16 (md.set_precision) */
static int f_set_conv_backend(lua_State *L) {
  mdl_check_rc(L, md_set_conv_backend((md_conv_backend)luaL_checkoption(L, 1, NULL, backend_names)));
  return 0;
}

static int f_get_conv_backend(lua_State *L) {
  lua_pushstring(L, backend_names[md_get_conv_backend()]);
  return 1;
}

/* md.core.dnnl_conv_kernel(n, c, h, w, o, k, stride, pad, engine): the
 * oneDNN kernel that the forward pass of that shape runs on that engine
 * ("dnnl", "dnnl_direct" or "dnnl_bf16"), its input and output blocked when
 * their channels allow (as between U-Net layers), e.g. "jit:avx2" or
 * "jit_wino_4x3:avx512_core"; nil without oneDNN. For tests: oneDNN quietly
 * falls back to the direct kernel where Winograd is missing (it needs
 * AVX-512). */
static int f_dnnl_conv_kernel(lua_State *L) {
  md_conv_shape s = {.n = luaL_checkinteger(L, 1), .c = luaL_checkinteger(L, 2), .h = luaL_checkinteger(L, 3),
                     .w = luaL_checkinteger(L, 4), .o = luaL_checkinteger(L, 5), .k = luaL_checkinteger(L, 6),
                     .stride = luaL_checkinteger(L, 7), .pad = luaL_checkinteger(L, 8)};
  md_conv_backend engine = (md_conv_backend)luaL_checkoption(L, 9, NULL, backend_names);
  luaL_argcheck(L, engine != MD_CONV_IM2COL, 9, "im2col is not a oneDNN engine");
  if (s.n < 1 || s.c < 1 || s.h < 1 || s.w < 1 || s.o < 1 || s.k < 1 || s.stride < 1 || s.pad < 0 ||
      s.h + 2 * s.pad < s.k || s.w + 2 * s.pad < s.k)
    return luaL_error(L, "dnnl_conv_kernel: not a valid convolution shape");
  s.ho = (s.h + 2 * s.pad - s.k) / s.stride + 1;
  s.wo = (s.w + 2 * s.pad - s.k) / s.stride + 1;
  int64_t xs[4] = {s.n, s.c, s.h, s.w}, ys[4] = {s.n, s.o, s.ho, s.wo};
  s.x_layout = md_blockable(4, xs) ? MD_LAYOUT_BLOCKED : MD_LAYOUT_PLAIN;
  s.y_layout = md_blockable(4, ys) ? MD_LAYOUT_BLOCKED : MD_LAYOUT_PLAIN;
  const char *impl = md_dnnl_conv_impl(&s, engine == MD_CONV_DNNL, engine == MD_CONV_DNNL_BF16);
  if (impl) lua_pushstring(L, impl); else lua_pushnil(L);
  return 1;
}

const luaL_Reg mdl_conv_funcs[] = {
    {"conv2d", f_conv2d},
    {"set_conv_backend", f_set_conv_backend},
    {"get_conv_backend", f_get_conv_backend},
    {"dnnl_conv_kernel", f_dnnl_conv_kernel},
    {NULL, NULL},
};

const luaL_Reg mdl_conv_methods[] = {
    {NULL, NULL},
};
