/* Binding for data-parallel training over MPI (Debian's OpenMPI): the
 * collectives lua/moondust/dist.lua is built on. MPI is optional at build
 * time, like oneDNN: without its headers these functions exist, dist_available
 * says false, and the collectives say what to install.
 *
 * Ranks are identifiers, numbered from 0 as in MPI (integers as data, see the
 * index rule in docs/DESIGN.md). A process not started by mpirun is a world
 * of one (rank 0, size 1) and never touches MPI, so every script runs the
 * same with or without it. */
#include <stdlib.h>
#include <string.h>

#include "../layout.h"
#include "binding.h"

#ifdef MD_HAVE_MPI
#include <mpi.h>

static int world_rank = 0, world_size = 1;
static bool started; /* MPI_Init was called by us */

/* Whether mpirun (or another PMI launcher) started this process. */
static bool launched(void) {
  return getenv("OMPI_COMM_WORLD_SIZE") || getenv("PMI_SIZE") || getenv("PMIX_RANK");
}

static int f_init(lua_State *L) {
  int inited = 0;
  MPI_Initialized(&inited);
  if (!inited && launched()) {
    int provided;
    /* OpenMP threads never call MPI: only this thread does */
    if (MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS)
      return luaL_error(L, "dist.init: MPI_Init failed");
    started = true;
    inited = 1;
  }
  if (inited) {
    MPI_Comm_rank(MPI_COMM_WORLD, &world_rank);
    MPI_Comm_size(MPI_COMM_WORLD, &world_size);
    /* errors come back as codes, so they become Lua errors instead of aborts */
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
  }
  lua_pushinteger(L, world_rank);
  lua_pushinteger(L, world_size);
  return 2;
}

static bool multi(void) { return world_size > 1; }

static void check_mpi(lua_State *L, int rc, const char *op) {
  if (rc == MPI_SUCCESS) return;
  char msg[MPI_MAX_ERROR_STRING];
  int len = 0;
  MPI_Error_string(rc, msg, &len);
  luaL_error(L, "dist.%s: %s", op, msg);
}

static int f_barrier(lua_State *L) {
  if (multi()) check_mpi(L, MPI_Barrier(MPI_COMM_WORLD), "barrier");
  return 0;
}

/* The tensors of the list at idx (or a single tensor), made plain in place:
 * the collectives work on their memory. */
static md_tensor **tensors_at(lua_State *L, int idx, int *n) {
  if (mdl_is(L, idx)) {
    md_tensor **one = lua_newuserdatauv(L, sizeof *one, 0);
    one[0] = mdl_check(L, idx);
    *n = 1;
  } else {
    luaL_checktype(L, idx, LUA_TTABLE);
    *n = (int)luaL_len(L, idx);
    md_tensor **xs = lua_newuserdatauv(L, (size_t)(*n ? *n : 1) * sizeof *xs, 0);
    for (int i = 0; i < *n; i++) {
      lua_geti(L, idx, i + 1);
      xs[i] = mdl_check(L, -1);
      lua_pop(L, 1); /* the list keeps it alive */
    }
  }
  md_tensor **xs = lua_touserdata(L, -1);
  for (int i = 0; i < *n; i++) {
    mdl_check_rc(L, md_make_plain_inplace(xs[i]));
    xs[i]->storage->version++; /* written in place below */
  }
  return xs;
}

/* dist_allreduce_(tensor or {tensors...}, "sum" | "mean"): every rank ends
 * with the same sum (or mean) of every rank's values. A list travels as one
 * flat buffer: one MPI call for a whole model's gradients. */
static int f_allreduce_(lua_State *L) {
  static const char *const ops[] = {"sum", "mean", NULL};
  lua_settop(L, 2);
  bool mean = luaL_checkoption(L, 2, "sum", ops) == 1;
  int n;
  md_tensor **xs = tensors_at(L, 1, &n);
  int64_t total = 0;
  for (int i = 0; i < n; i++) total += xs[i]->numel;
  if (!multi() || total == 0) {
    lua_settop(L, 1);
    return 1;
  }
  if (total > (int64_t)1 << 30) return luaL_error(L, "dist.allreduce_: %lld values at once is too many", (long long)total);
  float *flat = n == 1 ? md_data(xs[0]) : lua_newuserdatauv(L, (size_t)total * sizeof(float), 0);
  for (int64_t i = 0, at = 0; n > 1 && i < n; at += xs[i]->numel, i++)
    memcpy(flat + at, md_data(xs[i]), (size_t)xs[i]->numel * sizeof(float));
  check_mpi(L, MPI_Allreduce(MPI_IN_PLACE, flat, (int)total, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD), "allreduce_");
  float scale = mean ? 1.0f / (float)world_size : 1.0f;
  for (int64_t i = 0, at = 0; i < n; at += xs[i]->numel, i++) {
    float *d = md_data(xs[i]);
    for (int64_t j = 0; j < xs[i]->numel; j++) d[j] = flat[at + j] * scale;
  }
  lua_settop(L, 1);
  return 1;
}

/* dist_broadcast_(tensor or {tensors...}, root): root's values everywhere */
static int f_broadcast_(lua_State *L) {
  lua_settop(L, 2);
  lua_Integer root = luaL_optinteger(L, 2, 0);
  if (root < 0 || root >= world_size)
    return luaL_error(L, "dist.broadcast_: root must be a rank 0..%d, got %d", world_size - 1, (int)root);
  int n;
  md_tensor **xs = tensors_at(L, 1, &n);
  for (int i = 0; multi() && i < n; i++) {
    if (xs[i]->numel > (int64_t)1 << 30) return luaL_error(L, "dist.broadcast_: tensor %d is too large", i + 1);
    check_mpi(L, MPI_Bcast(md_data(xs[i]), (int)xs[i]->numel, MPI_FLOAT, (int)root, MPI_COMM_WORLD), "broadcast_");
  }
  lua_settop(L, 1);
  return 1;
}

/* dist_all_gather(tensor) -> every rank's tensors concatenated along the
 * first dimension, in rank order. The other dimensions must agree; the first
 * may differ from rank to rank (an uneven split of n images). */
static int f_all_gather(lua_State *L) {
  md_tensor *x = mdl_values(L, 1);
  if (x->ndim < 1) return luaL_error(L, "dist.all_gather: needs a tensor with a first dimension");
  if (!multi()) {
    md_tensor *copy = md_tensor_clone_data(x);
    return mdl_push(L, copy);
  }
  int64_t per = x->shape[0] ? x->numel / x->shape[0] : 0;
  int64_t mine[2] = {x->shape[0], per};
  int64_t *all = lua_newuserdatauv(L, 2 * (size_t)world_size * sizeof *all, 0);
  check_mpi(L, MPI_Allgather(mine, 2, MPI_INT64_T, all, 2, MPI_INT64_T, MPI_COMM_WORLD), "all_gather");
  int *counts = lua_newuserdatauv(L, 2 * (size_t)world_size * sizeof *counts, 0), *displs = counts + world_size;
  int64_t rows = 0;
  for (int r = 0; r < world_size; r++) {
    if (all[2 * r] > 0 && all[2 * r + 1] != per)
      return luaL_error(L, "dist.all_gather: rank %d's rows have %d values, rank %d's have %d", r,
                        (int)all[2 * r + 1], world_rank, (int)per);
    if ((rows + all[2 * r]) * per > (int64_t)1 << 30) return luaL_error(L, "dist.all_gather: result too large");
    counts[r] = (int)(all[2 * r] * per);
    displs[r] = (int)(rows * per);
    rows += all[2 * r];
  }
  int64_t shape[MD_MAX_DIMS];
  memcpy(shape, x->shape, sizeof shape);
  shape[0] = rows;
  md_tensor *y = mdl_new(L, x->ndim, shape);
  int rc = MPI_Allgatherv(md_data(x), (int)x->numel, MPI_FLOAT, md_data(y), counts, displs, MPI_FLOAT, MPI_COMM_WORLD);
  if (rc != MPI_SUCCESS) md_tensor_release(y);
  check_mpi(L, rc, "all_gather");
  return mdl_push(L, y);
}

/* dist_abort(message): ends every rank (after the caller printed why). */
static int f_abort(lua_State *L) {
  if (multi()) MPI_Abort(MPI_COMM_WORLD, (int)luaL_optinteger(L, 1, 1));
  return 0;
}

static int f_finalize(lua_State *L) {
  int done = 0;
  MPI_Finalized(&done);
  if (started && !done) MPI_Finalize();
  return 0;
}

static int f_available(lua_State *L) {
  lua_pushboolean(L, 1);
  return 1;
}

#else /* no MPI in this build: a world of one, and clear errors */

static int f_init(lua_State *L) {
  lua_pushinteger(L, 0);
  lua_pushinteger(L, 1);
  return 2;
}
static int unavailable(lua_State *L) {
  return luaL_error(L, "dist: this build has no MPI (install libopenmpi-dev and openmpi-bin, then rebuild)");
}
static int f_barrier(lua_State *L) { return unavailable(L); }
static int f_allreduce_(lua_State *L) { return unavailable(L); }
static int f_broadcast_(lua_State *L) { return unavailable(L); }
static int f_all_gather(lua_State *L) { return unavailable(L); }
static int f_abort(lua_State *L) { return 0; }
static int f_finalize(lua_State *L) { return 0; }
static int f_available(lua_State *L) {
  lua_pushboolean(L, 0);
  return 1;
}
#endif

const luaL_Reg mdl_dist_funcs[] = {
    {"dist_available", f_available},
    {"dist_init", f_init},
    {"dist_barrier", f_barrier},
    {"dist_allreduce_", f_allreduce_},
    {"dist_broadcast_", f_broadcast_},
    {"dist_all_gather", f_all_gather},
    {"dist_abort", f_abort},
    {"dist_finalize", f_finalize},
    {NULL, NULL},
};

const luaL_Reg mdl_dist_methods[] = {
    {NULL, NULL},
};
