/* Binding for JSON (csrc/io/json.h): md.core.json_decode(text) and
 * md.core.json_encode(value), the only JSON code the Lua side uses
 * (checkpoint metadata, benchmark and run logs).
 *
 * Decoding: objects and arrays become tables, null becomes nil, a number
 * with an integral value becomes a Lua integer. Encoding: a non-empty table
 * whose keys are 1..#t is an array, any other table an object with its keys
 * sorted (so the output is stable); floats keep all 17 digits, so a double
 * survives the round trip exactly. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../io/json.h"
#include "binding.h"

#define MAX_ENCODE_DEPTH 64

static void push_json(lua_State *L, const md_json *v) {
  luaL_checkstack(L, 4, "json_decode");
  switch (v->type) {
  case MD_JSON_NULL: lua_pushnil(L); break;
  case MD_JSON_BOOL: lua_pushboolean(L, v->ival != 0); break;
  case MD_JSON_NUM:
    if (v->is_int) lua_pushinteger(L, v->ival);
    else if (v->num == floor(v->num) && fabs(v->num) < 9.2e18) lua_pushinteger(L, (lua_Integer)v->num);
    else lua_pushnumber(L, v->num);
    break;
  case MD_JSON_STR: lua_pushstring(L, v->str); break;
  case MD_JSON_ARR:
    lua_createtable(L, v->n, 0);
    for (int i = 0; i < v->n; i++) {
      push_json(L, &v->items[i]);
      lua_seti(L, -2, i + 1);
    }
    break;
  case MD_JSON_OBJ:
    lua_createtable(L, 0, v->n);
    for (int i = 0; i < v->n; i++) {
      push_json(L, &v->items[i]);
      lua_setfield(L, -2, v->keys[i]);
    }
    break;
  }
}

/* A zeroed userdata whose __gc frees what it holds: the parse tree and the
 * text buffer live in one, so a Lua error midway (out of memory, a function
 * value, a cycle) cannot leak them. */
static void *guarded(lua_State *L, size_t size, const char *name, lua_CFunction gc) {
  void *p = lua_newuserdatauv(L, size, 0);
  memset(p, 0, size);
  if (luaL_newmetatable(L, name)) {
    lua_pushcfunction(L, gc);
    lua_setfield(L, -2, "__gc");
  }
  lua_setmetatable(L, -2);
  return p;
}

static int tree_gc(lua_State *L) {
  md_json_free(lua_touserdata(L, 1));
  return 0;
}

static int f_json_decode(lua_State *L) {
  size_t len;
  const char *text = luaL_checklstring(L, 1, &len);
  md_json *tree = guarded(L, sizeof *tree, "moondust.json_tree", tree_gc);
  char err[128];
  if (md_json_parse(text, len, tree, err, sizeof err) != 0) return luaL_error(L, "json: %s", err);
  push_json(L, tree);
  return 1;
}

/* ---- encoding ---- */

static void encode(lua_State *L, int idx, md_jbuf *b, int depth);

/* Whether the table at idx is a non-empty sequence 1..n with nothing else. */
static bool is_array(lua_State *L, int idx) {
  lua_Integer n = (lua_Integer)lua_rawlen(L, idx), count = 0;
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    lua_pop(L, 1);
    count++;
  }
  return n > 0 && count == n;
}

static int by_string(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static void encode_object(lua_State *L, int idx, md_jbuf *b, int depth) {
  /* values by their key as a string, and the key strings sorted */
  lua_newtable(L);
  int by_name = lua_gettop(L), n = 0;
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    int kt = lua_type(L, -2);
    if (kt != LUA_TSTRING && kt != LUA_TNUMBER)
      luaL_error(L, "json_encode: cannot encode a key of type %s", lua_typename(L, kt));
    lua_pushvalue(L, -2);
    lua_pushstring(L, lua_tostring(L, -1)); /* converts a copy: lua_next needs the key as it is */
    lua_remove(L, -2);
    lua_insert(L, -2);
    lua_settable(L, by_name);
    n++;
  }
  const char **names = lua_newuserdatauv(L, (size_t)(n ? n : 1) * sizeof *names, 0);
  int k = 0;
  lua_pushnil(L);
  while (lua_next(L, by_name)) {
    lua_pop(L, 1);
    names[k++] = lua_tostring(L, -1); /* kept alive by by_name */
  }
  qsort(names, (size_t)k, sizeof *names, by_string);
  md_jbuf_put(b, "{", 1);
  for (int i = 0; i < k; i++) {
    if (i) md_jbuf_put(b, ",", 1);
    md_jbuf_string(b, names[i]);
    md_jbuf_put(b, ":", 1);
    lua_getfield(L, by_name, names[i]);
    encode(L, lua_gettop(L), b, depth + 1);
    lua_pop(L, 1);
  }
  md_jbuf_put(b, "}", 1);
  lua_pop(L, 2); /* names, by_name */
}

static void encode(lua_State *L, int idx, md_jbuf *b, int depth) {
  if (depth > MAX_ENCODE_DEPTH) luaL_error(L, "json_encode: nested more than %d deep (a cycle?)", MAX_ENCODE_DEPTH);
  luaL_checkstack(L, 6, "json_encode");
  char num[40];
  switch (lua_type(L, idx)) {
  case LUA_TNIL: md_jbuf_puts(b, "null"); break;
  case LUA_TBOOLEAN: md_jbuf_puts(b, lua_toboolean(L, idx) ? "true" : "false"); break;
  case LUA_TSTRING: md_jbuf_string(b, lua_tostring(L, idx)); break;
  case LUA_TNUMBER:
    if (lua_isinteger(L, idx)) {
      md_jbuf_int(b, lua_tointeger(L, idx));
    } else {
      double v = lua_tonumber(L, idx);
      if (!isfinite(v)) luaL_error(L, "json_encode: cannot encode %f", v);
      snprintf(num, sizeof num, "%.17g", v);
      md_jbuf_puts(b, num);
    }
    break;
  case LUA_TTABLE:
    if (is_array(L, idx)) {
      lua_Integer n = (lua_Integer)lua_rawlen(L, idx);
      md_jbuf_put(b, "[", 1);
      for (lua_Integer i = 1; i <= n; i++) {
        if (i > 1) md_jbuf_put(b, ",", 1);
        lua_geti(L, idx, i);
        encode(L, lua_gettop(L), b, depth + 1);
        lua_pop(L, 1);
      }
      md_jbuf_put(b, "]", 1);
    } else {
      encode_object(L, idx, b, depth);
    }
    break;
  default: luaL_error(L, "json_encode: cannot encode a %s", luaL_typename(L, idx));
  }
}

static int jbuf_gc(lua_State *L) {
  md_jbuf *b = lua_touserdata(L, 1);
  free(b->p);
  b->p = NULL;
  return 0;
}

static int f_json_encode(lua_State *L) {
  lua_settop(L, 1);
  md_jbuf *b = guarded(L, sizeof *b, "moondust.json_buffer", jbuf_gc);
  encode(L, 1, b, 0);
  if (b->oom) return luaL_error(L, "json_encode: out of memory");
  lua_pushlstring(L, b->p ? b->p : "", b->len);
  return 1;
}

const luaL_Reg mdl_json_funcs[] = {
    {"json_decode", f_json_decode},
    {"json_encode", f_json_encode},
    {NULL, NULL},
};

const luaL_Reg mdl_json_methods[] = {
    {NULL, NULL},
};
