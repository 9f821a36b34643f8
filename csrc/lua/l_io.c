/* Binding for images, IDX files and raw tensor bytes (for safetensors,
 * whose JSON header lives in lua/moondust/checkpoint.lua). */
#include <string.h>

#include "../io/image_io.h"
#include "binding.h"

/* core.png_read(path [, channels = 1]) -> C x H x W in [-1, 1] */
static int f_png_read(lua_State *L) {
  md_tensor *t = NULL;
  int rc = md_png_read(&t, luaL_checkstring(L, 1), (int)luaL_optinteger(L, 2, 1));
  mdl_check_rc(L, rc);
  return mdl_push(L, t);
}

/* core.png_write(path, img) */
static int f_png_write(lua_State *L) {
  mdl_check_rc(L, md_png_write(luaL_checkstring(L, 1), mdl_check(L, 2)));
  return 0;
}

/* core.make_grid(batch, nrow, padding, pad_value) */
static int f_make_grid(lua_State *L) {
  md_tensor *g = NULL;
  int rc = md_make_grid(&g, mdl_check(L, 1), luaL_optinteger(L, 2, 8), luaL_optinteger(L, 3, 2),
                        (float)luaL_optnumber(L, 4, -1));
  mdl_check_rc(L, rc);
  return mdl_push(L, g);
}

/* core.idx_read(path) -> raw bytes as floats, in the file's shape */
static int f_idx_read(lua_State *L) {
  md_tensor *t = NULL;
  int rc = md_idx_read(&t, luaL_checkstring(L, 1));
  mdl_check_rc(L, rc);
  return mdl_push(L, t);
}

/* t:bytes() -> the little-endian float32 data as a Lua string */
static int t_bytes(lua_State *L) {
  md_tensor *t = mdl_check(L, 1);
  lua_pushlstring(L, (const char *)md_data(t), (size_t)t->numel * sizeof(float));
  return 1;
}

/* core.from_bytes(s, first, shape): a tensor from bytes first..first+4n-1
 * (1-based) of s */
static int f_from_bytes(lua_State *L) {
  size_t len;
  const char *s = luaL_checklstring(L, 1, &len);
  lua_Integer first = luaL_checkinteger(L, 2);
  int64_t shape[MD_MAX_DIMS];
  int nd = mdl_shape(L, 3, shape);
  int64_t n = md_shape_numel(nd, shape);
  if (first < 1 || (int64_t)len - (first - 1) < n * 4)
    luaL_error(L, "from_bytes: %d floats from byte %d do not fit in %d bytes", (int)n, (int)first, (int)len);
  md_tensor *t = md_tensor_new(nd, shape);
  if (!t) luaL_error(L, "%s", md_errmsg());
  memcpy(md_data(t), s + first - 1, (size_t)n * sizeof(float));
  return mdl_push(L, t);
}

const luaL_Reg mdl_io_funcs[] = {
    {"png_read", f_png_read},   {"png_write", f_png_write},   {"make_grid", f_make_grid},
    {"idx_read", f_idx_read},   {"from_bytes", f_from_bytes}, {NULL, NULL},
};

const luaL_Reg mdl_io_methods[] = {
    {"bytes", t_bytes},
    {NULL, NULL},
};
