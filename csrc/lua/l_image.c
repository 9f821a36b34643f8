/* Binding for image decoding (PNG and JPEG), the byte store userdata that
 * image-folder data sets keep their images in, and batch gathering. */
#include <math.h>
#include <stdlib.h>

#include "../io/image.h"
#include "../io/jpeg.h"
#include "binding.h"

#define MDL_BYTE_STORE "moondust.ByteStore"

typedef struct {
  md_byte_store *s; /* NULL once closed */
} store_box;

static md_byte_store *check_store(lua_State *L, int idx) {
  store_box *b = luaL_checkudata(L, idx, MDL_BYTE_STORE);
  if (!b->s) luaL_argerror(L, idx, "byte store used after it was closed");
  return b->s;
}

/* core.image_read(path [, channels = 0]) -> C x H x W in [-1, 1]; 0 keeps the file's channels */
static int f_image_read(lua_State *L) {
  md_tensor *t = NULL;
  mdl_check_rc(L, md_image_read(&t, luaL_checkstring(L, 1), (int)luaL_optinteger(L, 2, 0)));
  return mdl_push(L, t);
}

/* core.jpeg_write(path, img [, quality = 95]) */
static int f_jpeg_write(lua_State *L) {
  md_tensor *img = mdl_values(L, 2);
  mdl_check_rc(L, md_jpeg_write(luaL_checkstring(L, 1), img, (int)luaL_optinteger(L, 3, 95)));
  return 0;
}

/* core.jpeg_available() -> whether JPEG support was built */
static int f_jpeg_available(lua_State *L) {
  lua_pushboolean(L, md_jpeg_available());
  return 1;
}

/* The strings of the array at idx, in an array the collector owns (the
 * strings stay alive in the table). */
static const char **path_list(lua_State *L, int idx, int64_t *n, const char *where) {
  luaL_checktype(L, idx, LUA_TTABLE);
  *n = (int64_t)luaL_len(L, idx);
  if (*n < 1) luaL_argerror(L, idx, "expected a non-empty list of paths");
  const char **paths = lua_newuserdatauv(L, sizeof *paths * (size_t)*n, 0);
  for (int64_t i = 0; i < *n; i++) {
    if (lua_geti(L, idx, i + 1) != LUA_TSTRING)
      luaL_error(L, "%s: path %d is a %s, not a string", where, (int)(i + 1), luaL_typename(L, -1));
    paths[i] = lua_tostring(L, -1);
    lua_pop(L, 1);
  }
  return paths;
}

/* Moves the malloc'd messages into a table {[i] = message} (1-based) on the stack. */
static void push_errors(lua_State *L, char **errors, int64_t n) {
  lua_newtable(L);
  for (int64_t i = 0; i < n; i++)
    if (errors[i]) {
      lua_pushstring(L, errors[i]);
      lua_seti(L, -2, i + 1);
      free(errors[i]);
      errors[i] = NULL;
    }
}

/* core.image_probe({path, ...}) -> {{h =, w =, channels =} or {error = message}, ...}, in parallel */
static int f_image_probe(lua_State *L) {
  int64_t n;
  const char **paths = path_list(L, 1, &n, "image_probe");
  md_pixels *info = lua_newuserdatauv(L, sizeof *info * (size_t)n, 0);
  char **errors = lua_newuserdatauv(L, sizeof *errors * (size_t)n, 0);
  int rc = md_image_probe_all(n, paths, info, errors);
  push_errors(L, errors, n);
  mdl_check_rc(L, rc);
  int errs = lua_gettop(L);
  lua_createtable(L, (int)n, 0);
  for (int64_t i = 0; i < n; i++) {
    lua_createtable(L, 0, 3);
    if (lua_geti(L, errs, i + 1) == LUA_TSTRING) {
      lua_setfield(L, -2, "error");
    } else {
      lua_pop(L, 1);
      lua_pushinteger(L, info[i].h);
      lua_setfield(L, -2, "h");
      lua_pushinteger(L, info[i].w);
      lua_setfield(L, -2, "w");
      lua_pushinteger(L, info[i].c);
      lua_setfield(L, -2, "channels");
    }
    lua_seti(L, -2, i + 1);
  }
  return 1;
}

static int s_gc(lua_State *L) {
  store_box *b = luaL_checkudata(L, 1, MDL_BYTE_STORE);
  md_byte_store_free(b->s);
  b->s = NULL;
  return 0;
}

/* #store -> the number of images */
static int s_len(lua_State *L) {
  lua_pushinteger(L, check_store(L, 1)->n);
  return 1;
}

/* store:shape() -> {N, C, H, W} */
static int s_shape(lua_State *L) {
  md_byte_store *s = check_store(L, 1);
  int64_t dims[4] = {s->n, s->c, s->h, s->w};
  lua_createtable(L, 4, 0);
  for (int i = 0; i < 4; i++) {
    lua_pushinteger(L, dims[i]);
    lua_seti(L, -2, i + 1);
  }
  return 1;
}

/* store:size(d) -> the size of dimension d (1-based), as for tensors */
static int s_size(lua_State *L) {
  md_byte_store *s = check_store(L, 1);
  int64_t dims[4] = {s->n, s->c, s->h, s->w};
  lua_Integer d = luaL_checkinteger(L, 2);
  if (d < 0) d += 5;
  luaL_argcheck(L, d >= 1 && d <= 4, 2, "dimension out of range 1..4");
  lua_pushinteger(L, dims[d - 1]);
  return 1;
}

static int s_dim(lua_State *L) {
  check_store(L, 1);
  lua_pushinteger(L, 4);
  return 1;
}

static int s_tostring(lua_State *L) {
  store_box *b = luaL_checkudata(L, 1, MDL_BYTE_STORE);
  if (!b->s) lua_pushliteral(L, "ByteStore(closed)");
  else lua_pushfstring(L, "ByteStore(%I x %I x %I x %I uint8)", (lua_Integer)b->s->n, (lua_Integer)b->s->c,
                       (lua_Integer)b->s->h, (lua_Integer)b->s->w);
  return 1;
}

/* store:gather(idx [, out_h, out_w [, aug [, hflip]]]) -> k x C x out_h x out_w floats in [-1, 1].
 * idx: a tensor of 0-based image indices; aug: k x 4 uniforms (see image.h). */
static int s_gather(lua_State *L) {
  md_byte_store *s = check_store(L, 1);
  md_tensor *it = mdl_values(L, 2);
  lua_Integer oh = luaL_optinteger(L, 3, s->h), ow = luaL_optinteger(L, 4, s->w);
  md_tensor *aug = lua_isnoneornil(L, 5) ? NULL : mdl_values(L, 5);
  int hflip = mdl_optbool(L, 6, 0);
  int64_t k = it->numel;
  if (aug && aug->numel != 4 * k) luaL_error(L, "gather: aug must hold 4 numbers per index (%d), got %d", (int)(4 * k), (int)aug->numel);
  int64_t *idx = lua_newuserdatauv(L, sizeof *idx * (size_t)(k > 0 ? k : 1), 0);
  const float *v = md_data(it);
  for (int64_t i = 0; i < k; i++) {
    if (!(v[i] >= 0 && v[i] < 9e15f) || floorf(v[i]) != v[i])
      luaL_error(L, "gather: index %f is not a whole number >= 0", (double)v[i]);
    idx[i] = (int64_t)v[i];
  }
  md_tensor *t = NULL;
  mdl_check_rc(L, md_byte_store_gather(&t, s, idx, k, oh, ow, aug ? md_data(aug) : NULL, hflip));
  return mdl_push(L, t);
}

static const luaL_Reg store_methods[] = {
    {"shape", s_shape}, {"size", s_size}, {"dim", s_dim}, {"gather", s_gather}, {"close", s_gc}, {NULL, NULL},
};

static void push_store(lua_State *L, md_byte_store *s) {
  store_box *b = lua_newuserdatauv(L, sizeof *b, 0);
  b->s = s;
  if (luaL_newmetatable(L, MDL_BYTE_STORE)) {
    luaL_newlib(L, store_methods);
    lua_setfield(L, -2, "__index");
    const luaL_Reg meta[] = {{"__gc", s_gc}, {"__close", s_gc}, {"__len", s_len}, {"__tostring", s_tostring}, {NULL, NULL}};
    luaL_setfuncs(L, meta, 0);
  }
  lua_setmetatable(L, -2);
}

static const char *const fit_names[] = {"exact", "resize", "cover", NULL};

/* core.image_decode({path, ...}, channels, h, w [, fit = "exact"]) -> store, {[i] = message}
 * Every file into an N x channels x h x w byte store in parallel; the files
 * that fail are left out (their messages keyed by their position in paths). */
static int f_image_decode(lua_State *L) {
  int64_t n;
  const char **paths = path_list(L, 1, &n, "image_decode");
  lua_Integer c = luaL_checkinteger(L, 2), h = luaL_checkinteger(L, 3), w = luaL_checkinteger(L, 4);
  md_fit fit = (md_fit)luaL_checkoption(L, 5, "exact", fit_names);
  char **errors = lua_newuserdatauv(L, sizeof *errors * (size_t)n, 0);
  lua_gc(L, LUA_GCCOLLECT); /* a store dropped earlier goes back before a new one is made */
  md_byte_store *s = md_byte_store_new(n, c, h, w);
  if (!s) mdl_check_rc(L, MD_ERR);
  push_store(L, s);
  int rc = md_byte_store_decode(s, paths, fit, errors);
  push_errors(L, errors, n);
  mdl_check_rc(L, rc);
  return 2;
}

/* core.is_byte_store(v) */
static int f_is_byte_store(lua_State *L) {
  lua_pushboolean(L, luaL_testudata(L, 1, MDL_BYTE_STORE) != NULL);
  return 1;
}

const luaL_Reg mdl_image_funcs[] = {
    {"image_read", f_image_read},   {"image_probe", f_image_probe},     {"image_decode", f_image_decode},
    {"jpeg_write", f_jpeg_write},   {"jpeg_available", f_jpeg_available}, {"is_byte_store", f_is_byte_store},
    {NULL, NULL},
};

const luaL_Reg mdl_image_methods[] = {
    {NULL, NULL},
};
