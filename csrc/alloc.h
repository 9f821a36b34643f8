/* Float buffers for tensors, gradients and scratch, 64-byte aligned. A
 * training step allocates and frees the same sizes every step; freed
 * buffers are kept (up to a cap) and handed out again for the same size,
 * so steady-state steps neither call the allocator nor fault in fresh pages.
 * Not thread-safe: call from the thread that drives moondust. */
#ifndef MD_ALLOC_H
#define MD_ALLOC_H

#include <stdint.h>

/* Room for n floats, uninitialised; NULL when out of memory. */
float *md_alloc_floats(int64_t n);
/* Room for n floats, zeroed. */
float *md_calloc_floats(int64_t n);
/* Returns a buffer from md_alloc_floats(n) (same n). NULL is fine. */
void md_free_floats(float *p, int64_t n);

/* Bytes a buffer of n floats occupies. */
int64_t md_alloc_bytes(int64_t n);
/* Frees every cached buffer; sets the cap on cached bytes (default 2 GiB). */
void md_alloc_trim(void);
void md_alloc_set_cache_limit(int64_t bytes);
int64_t md_alloc_cached_bytes(void);
/* Large allocations served from the cache, and not. */
void md_alloc_stats(int64_t *hits, int64_t *misses);

#endif
