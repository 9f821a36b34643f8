/* The few file-system calls moondust needs, without a shell: creating a
 * directory with its parents, and listing a directory. Paths are used as
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

#endif
