#include "fs.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "../error.h"

static int make_one(const char *path) {
  if (mkdir(path, 0777) == 0) return MD_OK;
  int err = errno;
  struct stat st;
  if (err == EEXIST && stat(path, &st) == 0) {
    if (S_ISDIR(st.st_mode)) return MD_OK;
    return md_error("mkdir: %s exists and is not a directory", path);
  }
  return md_error("mkdir: cannot create %s: %s", path, strerror(err));
}

int md_mkdir_p(const char *path) {
  if (!path || !*path) return md_error("mkdir: empty path");
  char *p = strdup(path);
  if (!p) return md_error("mkdir: out of memory");
  int rc = MD_OK;
  /* each prefix that ends before a '/', then the whole path */
  for (char *s = p + 1; rc == MD_OK && *s; s++) {
    if (*s != '/' || s[-1] == '/') continue;
    *s = 0;
    rc = make_one(p);
    *s = '/';
  }
  if (rc == MD_OK) rc = make_one(p);
  free(p);
  return rc;
}

static int by_name(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

int md_list_dir(md_dir_list *out, const char *path) {
  memset(out, 0, sizeof *out);
  DIR *d = opendir(path);
  if (!d) return md_error("cannot read the directory %s: %s", path, strerror(errno));
  int cap = 0, rc = MD_OK;
  struct dirent *e;
  while (rc == MD_OK && (e = readdir(d))) {
    if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
    if (out->n == cap) {
      cap = cap ? 2 * cap : 64;
      char **names = realloc(out->names, (size_t)cap * sizeof *names);
      if (!names) {
        rc = md_error("listing %s: out of memory", path);
        break;
      }
      out->names = names;
    }
    if (!(out->names[out->n] = strdup(e->d_name))) rc = md_error("listing %s: out of memory", path);
    else out->n++;
  }
  closedir(d);
  if (rc == MD_OK && out->n) {
    qsort(out->names, (size_t)out->n, sizeof *out->names, by_name);
    out->is_dir = calloc((size_t)out->n, sizeof *out->is_dir);
    if (!out->is_dir) rc = md_error("listing %s: out of memory", path);
  }
  size_t plen = strlen(path);
  for (int i = 0; rc == MD_OK && i < out->n; i++) {
    char *full = malloc(plen + strlen(out->names[i]) + 2);
    if (!full) {
      rc = md_error("listing %s: out of memory", path);
      break;
    }
    strcpy(full, path);
    if (plen && path[plen - 1] != '/') strcat(full, "/");
    strcat(full, out->names[i]);
    struct stat st;
    out->is_dir[i] = stat(full, &st) == 0 && S_ISDIR(st.st_mode);
    free(full);
  }
  if (rc != MD_OK) md_dir_list_free(out);
  return rc;
}

void md_dir_list_free(md_dir_list *list) {
  for (int i = 0; i < list->n; i++) free(list->names[i]);
  free(list->names);
  free(list->is_dir);
  memset(list, 0, sizeof *list);
}

extern char **environ;

int md_run_program(const char *const argv[], const char *stderr_path, int *exit_code) {
  if (!argv || !argv[0] || !*argv[0]) return md_error("run: no program given");
  posix_spawn_file_actions_t fa;
  if (posix_spawn_file_actions_init(&fa) != 0) return md_error("run: out of memory");
  int rc = MD_OK;
  if (posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0) != 0 ||
      posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0) != 0 ||
      posix_spawn_file_actions_addopen(&fa, 2, stderr_path ? stderr_path : "/dev/null",
                                       O_WRONLY | O_CREAT | O_TRUNC, 0666) != 0)
    rc = md_error("run: out of memory");
  pid_t pid = 0;
  int err = rc == MD_OK ? posix_spawnp(&pid, argv[0], &fa, NULL, (char *const *)argv, environ) : 0;
  posix_spawn_file_actions_destroy(&fa);
  if (rc != MD_OK) return rc;
  if (err != 0) return md_error("run: cannot start %s: %s", argv[0], strerror(err));
  int status = 0;
  while (waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) return md_error("run: waiting for %s: %s", argv[0], strerror(errno));
  }
  *exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + (WIFSIGNALED(status) ? WTERMSIG(status) : 0);
  return MD_OK;
}
