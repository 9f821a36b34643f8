/* The few file-system calls moondust needs, without a shell: creating a
 * directory with its parents, listing a directory, and running a program
 * (gnuplot for the run plots) with its arguments as given. Paths are used as
 * given; nothing a user types ever reaches a shell. */
#ifndef MD_FS_H
#define MD_FS_H

#include <stdbool.h>

/* mkdir -p: creates path and any missing parents (mode 0777 & ~umask). An
 * existing directory is fine; an existing file of that name is an error. */
int md_mkdir_p(const char *path);

typedef struct {
  int n;
  char **names; /* sorted bytewise, without "." and ".." */
  bool *is_dir;
} md_dir_list;

/* The entries of a directory (symbolic links followed for is_dir). */
int md_list_dir(md_dir_list *out, const char *path);
void md_dir_list_free(md_dir_list *list);

/* Runs argv[0] (looked up in PATH) with argv (NULL-terminated), no shell,
 * stdin and stdout on /dev/null, stderr into stderr_path (or /dev/null when
 * NULL), and waits. *exit_code is its exit status (128 + the signal when a
 * signal ended it). A program that cannot be started is an error. */
int md_run_program(const char *const argv[], const char *stderr_path, int *exit_code);

#endif
