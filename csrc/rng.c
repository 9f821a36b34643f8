/* Philox4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2,
 * 3"). Block b of a draw is philox(key = seed, counter = g->counter + b) and
 * gives four 32-bit words, so every element depends only on the seed and its
 * position: any thread can compute any block. */
#include <math.h>

#include "rng.h"

#define PHILOX_M0 0xD2511F53u
#define PHILOX_M1 0xCD9E8D57u
#define PHILOX_W0 0x9E3779B9u
#define PHILOX_W1 0xBB67AE85u

static void philox(uint64_t seed, uint64_t ctr, uint32_t out[4]) {
  uint32_t c0 = (uint32_t)ctr, c1 = (uint32_t)(ctr >> 32), c2 = 0, c3 = 0;
  uint32_t k0 = (uint32_t)seed, k1 = (uint32_t)(seed >> 32);
  for (int r = 0; r < 10; r++) {
    uint64_t p0 = (uint64_t)PHILOX_M0 * c0, p1 = (uint64_t)PHILOX_M1 * c2;
    uint32_t n0 = (uint32_t)(p1 >> 32) ^ c1 ^ k0, n2 = (uint32_t)(p0 >> 32) ^ c3 ^ k1;
    c1 = (uint32_t)p1;
    c3 = (uint32_t)p0;
    c0 = n0;
    c2 = n2;
    k0 += PHILOX_W0;
    k1 += PHILOX_W1;
  }
  out[0] = c0, out[1] = c1, out[2] = c2, out[3] = c3;
}

static md_generator default_gen = {0, 0};

md_generator *md_default_generator(void) { return &default_gen; }

void md_generator_seed(md_generator *g, uint64_t seed) {
  g->seed = seed;
  g->counter = 0;
}

/* (0, 1]: safe for log in Box-Muller. */
static inline float open_unit(uint32_t w) { return ((float)(w >> 8) + 1.0f) * (1.0f / 16777216.0f); }
/* [0, 1) */
static inline float half_open_unit(uint32_t w) { return (float)(w >> 8) * (1.0f / 16777216.0f); }

enum { DRAW_UNIFORM, DRAW_NORMAL };

static void draw(md_generator *g, float *out, int64_t n, int kind) {
  int64_t blocks = (n + 3) / 4;
  uint64_t seed = g->seed, base = g->counter;
#pragma omp parallel for if (n > 65536) schedule(static)
  for (int64_t b = 0; b < blocks; b++) {
    uint32_t w[4];
    float v[4];
    philox(seed, base + (uint64_t)b, w);
    if (kind == DRAW_UNIFORM) {
      for (int j = 0; j < 4; j++) v[j] = half_open_unit(w[j]);
    } else {
      for (int j = 0; j < 4; j += 2) {
        float r = sqrtf(-2.0f * logf(open_unit(w[j])));
        float theta = 6.2831853071795864f * half_open_unit(w[j + 1]);
        v[j] = r * cosf(theta);
        v[j + 1] = r * sinf(theta);
      }
    }
    int64_t i0 = b * 4;
    for (int j = 0; j < 4 && i0 + j < n; j++) out[i0 + j] = v[j];
  }
  g->counter += (uint64_t)blocks;
}

void md_rng_uniform(md_generator *g, float *out, int64_t n) { draw(g, out, n, DRAW_UNIFORM); }

void md_rng_normal(md_generator *g, float *out, int64_t n) { draw(g, out, n, DRAW_NORMAL); }

void md_rng_randint(md_generator *g, float *out, int64_t n, int64_t lo, int64_t hi) {
  draw(g, out, n, DRAW_UNIFORM);
  double span = (double)hi - (double)lo; /* hi - lo may overflow int64 */
  for (int64_t i = 0; i < n; i++) {
    int64_t v = lo + (int64_t)floor((double)out[i] * span);
    out[i] = (float)(v < hi ? v : hi - 1);
  }
}
