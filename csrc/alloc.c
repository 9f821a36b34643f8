#include "alloc.h"

#include <stdlib.h>
#include <string.h>

/* Small buffers are cheap to get from malloc; only these are cached. */
#define CACHE_MIN_BYTES (64 << 10)
#define CACHE_SLOTS 512

typedef struct {
  void *p;
  int64_t bytes;
} slot;

static slot cache[CACHE_SLOTS]; /* oldest first */
static int ncached;
static int64_t cached_bytes, cache_limit = INT64_C(2) << 30;
static int64_t hits, misses;

int64_t md_alloc_bytes(int64_t n) { return ((n > 0 ? n : 1) * (int64_t)sizeof(float) + 63) & ~(int64_t)63; }

float *md_alloc_floats(int64_t n) {
  int64_t bytes = md_alloc_bytes(n);
  if (bytes >= CACHE_MIN_BYTES)
    for (int i = ncached - 1; i >= 0; i--) /* newest first: likely still in cache */
      if (cache[i].bytes == bytes) {
        void *p = cache[i].p;
        memmove(cache + i, cache + i + 1, (size_t)(ncached - i - 1) * sizeof *cache);
        ncached--;
        cached_bytes -= bytes;
        hits++;
        return p;
      }
  if (bytes >= CACHE_MIN_BYTES) misses++;
  return aligned_alloc(64, (size_t)bytes);
}

/* Gradient buffers are zeroed once per step and are megabytes large: the
 * zeroing runs on every thread rather than leave the others waiting. */
float *md_calloc_floats(int64_t n) {
  float *p = md_alloc_floats(n);
  if (!p) return NULL;
  int64_t bytes = md_alloc_bytes(n), chunk = 1 << 16;
#pragma omp parallel for if (bytes > 4 * chunk) schedule(static)
  for (int64_t at = 0; at < bytes; at += chunk)
    memset((char *)p + at, 0, (size_t)(bytes - at < chunk ? bytes - at : chunk));
  return p;
}

static void drop_oldest(void) {
  free(cache[0].p);
  cached_bytes -= cache[0].bytes;
  memmove(cache, cache + 1, (size_t)(ncached - 1) * sizeof *cache);
  ncached--;
}

void md_free_floats(float *p, int64_t n) {
  if (!p) return;
  int64_t bytes = md_alloc_bytes(n);
  if (bytes < CACHE_MIN_BYTES || bytes > cache_limit) {
    free(p);
    return;
  }
  while (ncached > 0 && (ncached == CACHE_SLOTS || cached_bytes + bytes > cache_limit)) drop_oldest();
  cache[ncached++] = (slot){p, bytes};
  cached_bytes += bytes;
}

void md_alloc_trim(void) {
  while (ncached > 0) drop_oldest();
}

void md_alloc_set_cache_limit(int64_t bytes) {
  cache_limit = bytes < 0 ? 0 : bytes;
  while (ncached > 0 && cached_bytes > cache_limit) drop_oldest();
}

int64_t md_alloc_cached_bytes(void) { return cached_bytes; }

void md_alloc_stats(int64_t *hit, int64_t *miss) {
  *hit = hits;
  *miss = misses;
}
