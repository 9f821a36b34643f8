/* Binding for the runtime: thread count, the FMA peak probe, a monotonic
 * clock and memory figures. */
#include <errno.h>
#include <signal.h>
#include <string.h>
#include <time.h>

#include "../alloc.h"
#include "../backend/peak.h"
#include "../backend/threads.h"
#include "binding.h"

static int f_set_num_threads(lua_State *L) {
  lua_Integer n = luaL_checkinteger(L, 1);
  if (n < 1 || n > 4096) luaL_error(L, "set_num_threads: expected 1 to 4096 threads, got %I", n);
  md_set_num_threads((int)n);
  return 0;
}

/* Ctrl-C during training (Lua has no signal API): catch_interrupt(true)
 * installs a SIGINT handler that only sets a flag, which the trainer polls
 * each step (interrupted()) to save a checkpoint and stop; a second Ctrl-C
 * kills as usual. catch_interrupt(false) restores the previous handler. */
static volatile sig_atomic_t sigint_seen;
static struct sigaction sigint_previous;
static bool sigint_caught;

static void on_sigint(int sig) {
  if (sigint_seen) { /* asked twice: stop now */
    signal(sig, SIG_DFL);
    raise(sig);
  }
  sigint_seen = 1;
}

static int f_catch_interrupt(lua_State *L) {
  bool on = lua_toboolean(L, 1);
  if (on && !sigint_caught) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigint;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGINT, &sa, &sigint_previous) != 0) luaL_error(L, "catch_interrupt: %s", strerror(errno));
    sigint_caught = true;
  } else if (!on && sigint_caught) {
    sigaction(SIGINT, &sigint_previous, NULL);
    sigint_caught = false;
  }
  sigint_seen = 0;
  return 0;
}

static int f_interrupted(lua_State *L) {
  lua_pushboolean(L, sigint_seen);
  return 1;
}

static int f_get_num_threads(lua_State *L) {
  lua_pushinteger(L, md_get_num_threads());
  return 1;
}

/* md.core.fma_peak([iters]) -> the measured fp32 FMA peak in GFLOP/s */
static int f_fma_peak(lua_State *L) {
  lua_pushnumber(L, md_fma_peak_gflops(luaL_optinteger(L, 1, 20000000)));
  return 1;
}

/* md.time(): monotonic wall-clock seconds, for progress bars and benchmarks */
static int f_time(lua_State *L) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  lua_pushnumber(L, (lua_Number)ts.tv_sec + (lua_Number)ts.tv_nsec * 1e-9);
  return 1;
}

/* md.memory() -> live tensor bytes, bytes allocated so far, a table of
 * allocator-cache figures {cached, hits, misses} */
static int f_memory(lua_State *L) {
  lua_pushinteger(L, md_mem_live_bytes());
  lua_pushinteger(L, md_mem_allocated_total());
  int64_t hits, misses;
  md_alloc_stats(&hits, &misses);
  lua_createtable(L, 0, 3);
  lua_pushinteger(L, md_alloc_cached_bytes());
  lua_setfield(L, -2, "cached");
  lua_pushinteger(L, hits);
  lua_setfield(L, -2, "hits");
  lua_pushinteger(L, misses);
  lua_setfield(L, -2, "misses");
  return 3;
}

const luaL_Reg mdl_runtime_funcs[] = {
    {"set_num_threads", f_set_num_threads},
    {"catch_interrupt", f_catch_interrupt},
    {"interrupted", f_interrupted},
    {"get_num_threads", f_get_num_threads},
    {"memory", f_memory},
    {"time", f_time},
    {"fma_peak", f_fma_peak},
    {NULL, NULL},
};

const luaL_Reg mdl_runtime_methods[] = {
    {NULL, NULL},
};
