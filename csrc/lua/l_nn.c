/* Binding for the network layers and losses (md.group_norm, md.softmax,
 * md.attention, md.mse_loss, ...). */
#include "../ops/loss.h"
#include "../ops/attention.h"
#include "../ops/embedding.h"
#include "../ops/norm.h"
#include "../ops/pool.h"
#include "../ops/softmax.h"
#include "binding.h"

static int push(lua_State *L, int rc, md_tensor *y) {
  mdl_check_rc(L, rc);
  return mdl_push(L, y);
}

/* md.group_norm(x, groups [, weight [, bias [, eps = 1e-5 [, "silu" [, shift]]]]]):
 * with "silu", silu(group_norm(x)) fused; shift [N, C] is added to x first */
static int f_group_norm(lua_State *L) {
  static const char *const acts[] = {"none", "silu", NULL};
  md_tensor *y = NULL;
  int act = luaL_checkoption(L, 6, "none", acts);
  int rc = md_group_norm(&y, mdl_check(L, 1), luaL_checkinteger(L, 2), mdl_opt(L, 3), mdl_opt(L, 4),
                         (float)luaL_optnumber(L, 5, 1e-5), act == 1, mdl_opt(L, 7));
  return push(L, rc, y);
}

static int softmax(lua_State *L, bool as_log) {
  md_tensor *x = mdl_check(L, 1), *y = NULL;
  int dim = lua_isnoneornil(L, 2) ? x->ndim - 1 : mdl_dim(L, 2, x->ndim, as_log ? "log_softmax" : "softmax");
  int rc = md_softmax(&y, x, dim, as_log);
  return push(L, rc, y);
}
/* md.softmax(x [, dim = -1]) */
static int f_softmax(lua_State *L) { return softmax(L, false); }
static int f_log_softmax(lua_State *L) { return softmax(L, true); }

/* md.embedding(idx, weight) */
static int f_embedding(lua_State *L) {
  md_tensor *y = NULL;
  int rc = md_embedding(&y, mdl_check(L, 1), mdl_check(L, 2));
  return push(L, rc, y);
}

/* md.timestep_embedding(t, dim [, max_period = 10000]) */
static int f_timestep_embedding(lua_State *L) {
  md_tensor *y = NULL;
  int rc = md_timestep_embedding(&y, mdl_check(L, 1), luaL_checkinteger(L, 2), (float)luaL_optnumber(L, 3, 10000));
  return push(L, rc, y);
}

/* md.attention(qkv, heads) */
static int f_attention(lua_State *L) {
  md_tensor *y = NULL;
  int rc = md_attention(&y, mdl_check(L, 1), luaL_checkinteger(L, 2));
  return push(L, rc, y);
}

/* md.upsample_nearest(x [, scale = 2]) */
static int f_upsample_nearest(lua_State *L) {
  md_tensor *y = NULL;
  int rc = md_upsample_nearest(&y, mdl_check(L, 1), luaL_optinteger(L, 2, 2));
  return push(L, rc, y);
}

/* md.avg_pool2d(x, k [, stride = k]) */
static int f_avg_pool2d(lua_State *L) {
  md_tensor *y = NULL;
  lua_Integer k = luaL_checkinteger(L, 2);
  int rc = md_avg_pool2d(&y, mdl_check(L, 1), k, luaL_optinteger(L, 3, k));
  return push(L, rc, y);
}

typedef int (*loss_fn)(md_tensor **out, md_tensor *a, md_tensor *b);

static int loss(lua_State *L, loss_fn f) {
  md_tensor *y = NULL;
  int rc = f(&y, mdl_check(L, 1), mdl_check(L, 2));
  return push(L, rc, y);
}
static int f_mse_loss(lua_State *L) { return loss(L, md_mse_loss); }
static int f_bce(lua_State *L) { return loss(L, md_binary_cross_entropy); }
static int f_bce_logits(lua_State *L) { return loss(L, md_binary_cross_entropy_with_logits); }

static int f_cross_entropy(lua_State *L) {
  md_tensor *y = NULL;
  int rc = md_cross_entropy(&y, mdl_check(L, 1), mdl_check(L, 2));
  return push(L, rc, y);
}

static int f_nll_loss(lua_State *L) {
  md_tensor *y = NULL;
  int rc = md_nll_loss(&y, mdl_check(L, 1), mdl_check(L, 2));
  return push(L, rc, y);
}

const luaL_Reg mdl_nn_funcs[] = {
    {"group_norm", f_group_norm},
    {"softmax", f_softmax},
    {"log_softmax", f_log_softmax},
    {"embedding", f_embedding},
    {"timestep_embedding", f_timestep_embedding},
    {"attention", f_attention},
    {"upsample_nearest", f_upsample_nearest},
    {"avg_pool2d", f_avg_pool2d},
    {"mse_loss", f_mse_loss},
    {"binary_cross_entropy", f_bce},
    {"binary_cross_entropy_with_logits", f_bce_logits},
    {"cross_entropy", f_cross_entropy},
    {"nll_loss", f_nll_loss},
    {NULL, NULL},
};

const luaL_Reg mdl_nn_methods[] = {
    {"softmax", f_softmax},
    {"log_softmax", f_log_softmax},
    {NULL, NULL},
};
