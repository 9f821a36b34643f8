/* Counter-based random numbers (Philox4x32-10). A generator is a seed and a
 * counter: element i of a draw depends only on (seed, counter + i), so the
 * numbers are the same whatever the thread count, and a per-image generator
 * makes a batch of samples independent of the batch size. */
#ifndef MD_RNG_H
#define MD_RNG_H

#include <stdint.h>

typedef struct md_generator {
  uint64_t seed;
  uint64_t counter; /* advanced by every draw */
} md_generator;

md_generator *md_default_generator(void); /* the one md.manual_seed sets */
void md_generator_seed(md_generator *g, uint64_t seed);

/* Fill out[0..n) and advance the counter. */
void md_rng_uniform(md_generator *g, float *out, int64_t n);          /* [0, 1) */
void md_rng_normal(md_generator *g, float *out, int64_t n);           /* N(0, 1) */
void md_rng_randint(md_generator *g, float *out, int64_t n, int64_t lo, int64_t hi); /* [lo, hi) */

#endif
