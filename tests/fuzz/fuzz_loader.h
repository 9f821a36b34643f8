/* Shared by the libFuzzer targets (make fuzz): the loaders take paths, so
 * each input is written to a file in memory-backed /dev/shm first. A loader
 * may fail, but must never crash, hang or leak; the error is dropped. */
#ifndef MD_FUZZ_LOADER_H
#define MD_FUZZ_LOADER_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <unistd.h>

static const char *fuzz_file(const uint8_t *data, size_t size, const char *suffix) {
  static char path[64];
  snprintf(path, sizeof path, "/dev/shm/moondust-fuzz-%d%s", (int)getpid(), suffix);
  FILE *f = fopen(path, "wb");
  if (!f) return NULL;
  fwrite(data, 1, size, f);
  fclose(f);
  return path;
}

#endif
