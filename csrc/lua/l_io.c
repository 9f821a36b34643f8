/* Binding for images, IDX files, safetensors files and the file system. */
#include <unistd.h>

#include "../io/fs.h"
#include "../io/idx.h"
#include "../io/png.h"
#include "../io/safetensors.h"
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

/* core.make_grid(batch [, nrow = 8 [, padding = 2 [, pad_value = -1]]]) */
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

/* The string keys of the table at idx and their values (tensors, or strings
 * when want_tensor is 0), in arrays that Lua's GC owns; returns the count. */
static int table_pairs(lua_State *L, int idx, int want_tensor, const char ***keys, const void ***vals) {
  int n = 0;
  for (lua_pushnil(L); lua_next(L, idx); lua_pop(L, 1)) n++;
  *keys = lua_newuserdatauv(L, sizeof **keys * (size_t)(n + 1), 0);
  *vals = lua_newuserdatauv(L, sizeof **vals * (size_t)(n + 1), 0);
  lua_createtable(L, n, 0); /* keeps plain copies of blocked tensors alive */
  int keep = lua_gettop(L);
  int i = 0;
  for (lua_pushnil(L); lua_next(L, idx); lua_pop(L, 1), i++) {
    if (lua_type(L, -2) != LUA_TSTRING)
      luaL_error(L, "safetensors_write: %s names must be strings, got a %s", want_tensor ? "tensor" : "metadata",
                 luaL_typename(L, -2));
    const char *key = lua_tostring(L, -2); /* kept alive by the table */
    if (want_tensor) {
      if (!mdl_is(L, -1)) luaL_error(L, "safetensors_write: '%s' is a %s, not a tensor", key, luaL_typename(L, -1));
      (*vals)[i] = mdl_check(L, lua_gettop(L));
      lua_pushvalue(L, -1);
      lua_rawseti(L, keep, i + 1);
    } else {
      if (lua_type(L, -1) != LUA_TSTRING)
        luaL_error(L, "safetensors_write: metadata '%s' is a %s, not a string", key, luaL_typename(L, -1));
      (*vals)[i] = lua_tostring(L, -1);
    }
    (*keys)[i] = key;
  }
  return n;
}

/* core.safetensors_write(path, {name = tensor, ...} [, {key = "value", ...}]) */
static int f_safetensors_write(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  luaL_checktype(L, 2, LUA_TTABLE);
  if (lua_isnoneornil(L, 3)) {
    lua_settop(L, 2);
    lua_newtable(L);
  }
  luaL_checktype(L, 3, LUA_TTABLE);
  lua_settop(L, 3);
  const char **names, **mkeys;
  const void **tensors, **mvals;
  int n = table_pairs(L, 2, 1, &names, &tensors);
  int nmeta = table_pairs(L, 3, 0, &mkeys, &mvals);
  mdl_check_rc(L, md_safetensors_write(path, n, names, (md_tensor *const *)tensors, nmeta, mkeys,
                                       (const char *const *)mvals));
  return 0;
}

/* core.safetensors_read(path) -> {name = tensor, ...}, {key = "value", ...} */
static int f_safetensors_read(lua_State *L) {
  md_safetensors *st = NULL;
  mdl_check_rc(L, md_safetensors_read(&st, luaL_checkstring(L, 1)));
  lua_createtable(L, 0, st->n);
  for (int i = 0; i < st->n; i++) {
    mdl_push(L, st->tensors[i]);
    st->tensors[i] = NULL; /* the Lua value owns it now */
    lua_setfield(L, -2, st->names[i]);
  }
  lua_createtable(L, 0, st->nmeta);
  for (int i = 0; i < st->nmeta; i++) {
    lua_pushstring(L, st->meta_values[i]);
    lua_setfield(L, -2, st->meta_keys[i]);
  }
  md_safetensors_free(st);
  return 2;
}

/* core.mkdir_p(path): mkdir -p without a shell */
static int f_mkdir_p(lua_State *L) {
  mdl_check_rc(L, md_mkdir_p(luaL_checkstring(L, 1)));
  return 0;
}

/* core.list_dir(path) -> {{name = ..., dir = true | false}, ...}, sorted by name */
static int f_list_dir(lua_State *L) {
  md_dir_list list;
  mdl_check_rc(L, md_list_dir(&list, luaL_checkstring(L, 1)));
  lua_createtable(L, list.n, 0);
  for (int i = 0; i < list.n; i++) {
    lua_createtable(L, 0, 2);
    lua_pushstring(L, list.names[i]);
    lua_setfield(L, -2, "name");
    lua_pushboolean(L, list.is_dir[i]);
    lua_setfield(L, -2, "dir");
    lua_seti(L, -2, i + 1);
  }
  md_dir_list_free(&list);
  return 1;
}

/* core.run_program({prog, arg, ...} [, stderr_path]) -> exit code; no shell */
static int f_run_program(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  const char *stderr_path = luaL_optstring(L, 2, NULL);
  lua_Integer n = luaL_len(L, 1);
  luaL_argcheck(L, n >= 1 && n < 4096, 1, "expected {program, arguments...}");
  const char **argv = lua_newuserdatauv(L, sizeof *argv * (size_t)(n + 1), 0);
  for (lua_Integer i = 1; i <= n; i++) {
    lua_geti(L, 1, i);
    if (lua_type(L, -1) != LUA_TSTRING) return luaL_error(L, "run_program: argument %d is not a string", (int)i);
    argv[i - 1] = lua_tostring(L, -1); /* kept alive by the table at index 1 */
    lua_pop(L, 1);
  }
  argv[n] = NULL;
  int code = 0;
  mdl_check_rc(L, md_run_program(argv, stderr_path, &code));
  lua_pushinteger(L, code);
  return 1;
}

/* core.isatty(fd) -> whether the file descriptor is a terminal */
static int f_isatty(lua_State *L) {
  lua_pushboolean(L, isatty((int)luaL_checkinteger(L, 1)));
  return 1;
}

const luaL_Reg mdl_io_funcs[] = {
    {"mkdir_p", f_mkdir_p},
    {"list_dir", f_list_dir},
    {"isatty", f_isatty},
    {"run_program", f_run_program},
    {"png_read", f_png_read},
    {"png_write", f_png_write},
    {"make_grid", f_make_grid},
    {"idx_read", f_idx_read},
    {"safetensors_write", f_safetensors_write},
    {"safetensors_read", f_safetensors_read},
    {NULL, NULL},
};

const luaL_Reg mdl_io_methods[] = {
    {NULL, NULL},
};
