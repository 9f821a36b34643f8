/* Binding for the REPL (lua/moondust/repl.lua): line editing and completion
 * through GNU readline when built with it (MD_HAVE_READLINE), and Ctrl-C
 * that interrupts the running chunk with a Lua error, as lua.c does.
 *
 *   core.readline(prompt) -> line | nil (end of input) | false (Ctrl-C)
 *   core.read_line(prompt): the same without line editing (no readline)
 *   core.add_history(line); core.set_completer(fn(word) -> {candidates})
 *   core.interrupt_chunks(on): while on, Ctrl-C raises "interrupted" */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/select.h>
#include <unistd.h>

#include "binding.h"

#ifdef MD_HAVE_READLINE
#include <readline/history.h>
#include <readline/readline.h>
#endif

/* ---- Ctrl-C while a chunk runs ---------------------------------------------
 * A signal handler may only set a hook (lua_sethook is async-signal-safe);
 * the hook raises the error at the next Lua instruction, so a long C op
 * finishes first. */
static lua_State *chunk_state;
static struct sigaction chunk_previous;
static bool chunk_caught;

static void stop_hook(lua_State *L, lua_Debug *ar) {
  (void)ar;
  lua_sethook(L, NULL, 0, 0);
  luaL_error(L, "interrupted");
}

static void on_chunk_sigint(int sig) {
  (void)sig;
  lua_sethook(chunk_state, stop_hook, LUA_MASKCALL | LUA_MASKRET | LUA_MASKCOUNT, 1);
}

static int f_interrupt_chunks(lua_State *L) {
  bool on = lua_toboolean(L, 1);
  if (on && !chunk_caught) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_chunk_sigint;
    sigemptyset(&sa.sa_mask);
    chunk_state = L;
    if (sigaction(SIGINT, &sa, &chunk_previous) != 0) luaL_error(L, "interrupt_chunks: %s", strerror(errno));
    chunk_caught = true;
  } else if (!on && chunk_caught) {
    sigaction(SIGINT, &chunk_previous, NULL);
    lua_sethook(L, NULL, 0, 0); /* a Ctrl-C that came as the chunk ended */
    chunk_caught = false;
  }
  return 0;
}

/* ---- reading a line at the prompt -----------------------------------------
 * A Ctrl-C at the prompt drops the line instead of ending the process. The
 * handler may run on any thread (OpenMP's, OpenBLAS's), so it wakes the
 * waiting select() through a pipe rather than relying on EINTR. */
static volatile sig_atomic_t prompt_sigint;
static int wake_pipe[2] = {-1, -1};

static void on_prompt_sigint(int sig) {
  (void)sig;
  prompt_sigint = 1;
  ssize_t r = write(wake_pipe[1], "", 1);
  (void)r;
}

static void drain_wake_pipe(void) {
  char drain[64];
  while (read(wake_pipe[0], drain, sizeof drain) > 0) {}
}

static void prompt_begin(lua_State *L, struct sigaction *previous) {
  if (wake_pipe[0] < 0 && pipe2(wake_pipe, O_NONBLOCK | O_CLOEXEC) != 0)
    luaL_error(L, "readline: %s", strerror(errno));
  drain_wake_pipe();
  prompt_sigint = 0;
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_prompt_sigint;
  sigemptyset(&sa.sa_mask);
  if (sigaction(SIGINT, &sa, previous) != 0) luaL_error(L, "readline: %s", strerror(errno));
}

static void prompt_end(const struct sigaction *previous) {
  sigaction(SIGINT, previous, NULL);
  drain_wake_pipe();
}

/* Waits for input on fd: 1 when there is some, 0 after a Ctrl-C, -1 on an
 * error (errno). */
static int wait_input(int fd) {
  for (;;) {
    fd_set fds;
    FD_ZERO(&fds);
    FD_SET(fd, &fds);
    FD_SET(wake_pipe[0], &fds);
    int r = select((fd > wake_pipe[0] ? fd : wake_pipe[0]) + 1, &fds, NULL, NULL, NULL);
    if (prompt_sigint) return 0;
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return -1;
    if (FD_ISSET(fd, &fds)) return 1;
  }
}

/* core.read_line(prompt): a plain line from stdin (no editing), for builds
 * without readline; results as core.readline's. */
static int f_read_line(lua_State *L) {
  const char *prompt = luaL_checkstring(L, 1);
  struct sigaction previous;
  prompt_begin(L, &previous);
  fputs(prompt, stdout);
  fflush(stdout);
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  int got = 1, err = 0; /* 1 a line, 0 Ctrl-C, -1 end of input */
  size_t len = 0;
  for (;;) {
    int w = wait_input(STDIN_FILENO);
    if (w <= 0) {
      got = 0, err = w < 0 ? errno : 0;
      break;
    }
    char c;
    ssize_t n = read(STDIN_FILENO, &c, 1);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      got = len > 0 ? 1 : -1, err = n < 0 ? errno : 0;
      break;
    }
    if (c == '\n') break;
    luaL_addchar(&b, c);
    len++;
  }
  prompt_end(&previous);
  luaL_pushresult(&b);
  if (err) luaL_error(L, "read_line: %s", strerror(err));
  if (got == 0) lua_pushboolean(L, 0);
  if (got < 0) lua_pushnil(L);
  return 1;
}

#ifdef MD_HAVE_READLINE
/* ---- readline ---------------------------------------------------------------
 * The callback interface with select(), as CPython's readline module does,
 * so that a Ctrl-C wakes the wait (readline's own handler would re-raise). */
static char *line_read;
static bool line_done;

static void on_line(char *line) {
  line_read = line;
  line_done = true;
  rl_callback_handler_remove();
}

/* Completion calls the Lua function set by core.set_completer (kept in the
 * registry) with the word before the cursor. */
static lua_State *completer_state;
static int completer_ref = LUA_NOREF;
static int match_count, match_next;

static char *next_match(const char *text, int state) {
  lua_State *L = completer_state;
  if (state == 0) { /* first call for this word: ask Lua, keep the list on the stack */
    lua_rawgeti(L, LUA_REGISTRYINDEX, completer_ref);
    lua_pushstring(L, text);
    if (lua_pcall(L, 1, 1, 0) != LUA_OK || !lua_istable(L, -1)) {
      lua_pop(L, 1);
      lua_newtable(L);
    }
    match_count = (int)lua_rawlen(L, -1);
    match_next = 1;
  }
  while (match_next <= match_count) {
    lua_rawgeti(L, -1, match_next++);
    const char *s = lua_tostring(L, -1);
    char *copy = s ? strdup(s) : NULL; /* readline frees the matches */
    lua_pop(L, 1);
    if (copy) return copy;
  }
  lua_pop(L, 1); /* the list */
  return NULL;
}

static char **complete(const char *text, int start, int end) {
  (void)start;
  (void)end;
  rl_attempted_completion_over = 1;     /* no file names */
  rl_completion_append_character = '\0'; /* md.sample, not "md.sample " (reset per attempt) */
  if (completer_ref == LUA_NOREF) return NULL;
  return rl_completion_matches(text, next_match);
}

/* core.readline(prompt) -> line | nil (end of input) | false (Ctrl-C) */
static int f_readline(lua_State *L) {
  const char *prompt = luaL_checkstring(L, 1);
  struct sigaction previous;
  prompt_begin(L, &previous);
  rl_catch_signals = 0;
  /* a dotted path (md.data.loader, x:sum) is one word to complete */
  rl_completer_word_break_characters = " \t\n\"\\'`@$><=;|&{(+-*/%^~[],#";
  rl_attempted_completion_function = complete;
  completer_state = L;
  line_read = NULL;
  line_done = false;
  bool interrupted = false;
  int fd = fileno(rl_instream ? rl_instream : stdin), err = 0;
  rl_callback_handler_install(prompt, on_line);
  while (!line_done) {
    int w = wait_input(fd);
    if (w == 0) { /* Ctrl-C: drop the line; the caller shows a new prompt */
      interrupted = true;
      rl_free_line_state();
      rl_callback_sigcleanup();
      rl_cleanup_after_signal();
      rl_callback_handler_remove();
      break;
    }
    if (w < 0) {
      err = errno;
      rl_callback_handler_remove();
      break;
    }
    rl_callback_read_char();
  }
  prompt_end(&previous);
  if (err) luaL_error(L, "readline: %s", strerror(err));
  if (interrupted) {
    lua_pushboolean(L, 0);
  } else if (line_read) {
    lua_pushstring(L, line_read);
    free(line_read);
  } else {
    lua_pushnil(L);
  }
  return 1;
}

static int f_add_history(lua_State *L) {
  add_history(luaL_checkstring(L, 1));
  return 0;
}

static int f_set_completer(lua_State *L) {
  luaL_checktype(L, 1, LUA_TFUNCTION);
  lua_pushvalue(L, 1);
  luaL_unref(L, LUA_REGISTRYINDEX, completer_ref);
  completer_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  return 0;
}
#endif

const luaL_Reg mdl_repl_funcs[] = {
    {"interrupt_chunks", f_interrupt_chunks},
    {"read_line", f_read_line},
#ifdef MD_HAVE_READLINE
    {"readline", f_readline},
    {"add_history", f_add_history},
    {"set_completer", f_set_completer},
#endif
    {NULL, NULL},
};

const luaL_Reg mdl_repl_methods[] = {
    {NULL, NULL},
};
