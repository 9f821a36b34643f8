/* The machine's fp32 FMA peak, probed: each thread runs a chain of
 * independent vector FMAs (enough accumulators to hide the FMA latency) for
 * a fixed count, and the FLOPs are divided by the wall time. This is what
 * "percent of peak" in the benchmark is measured against. */
#include "peak.h"

#include <immintrin.h>
#include <omp.h>

/* Independent accumulators per thread: at least FMA latency (4) x FMA
 * units (2), and all of them must live in registers: the loop over them is
 * unrolled, or the chains go through memory and the probe measures
 * store-to-load forwarding instead (it read 232 GFLOP/s, not 420, here). */
enum { ACC = 16 };

/* Explicit FMA instructions (ISO C mode does not contract a * b + c). */
#if defined(__AVX512F__)
#define WIDTH 16
typedef __m512 vec;
static inline vec vfma(vec a, vec b, vec c) { return _mm512_fmadd_ps(a, b, c); }
static inline vec vset(float x) { return _mm512_set1_ps(x); }
static inline float vsum(vec a) { return _mm512_reduce_add_ps(a); }
#elif defined(__FMA__)
#define WIDTH 8
typedef __m256 vec;
static inline vec vfma(vec a, vec b, vec c) { return _mm256_fmadd_ps(a, b, c); }
static inline vec vset(float x) { return _mm256_set1_ps(x); }
static inline float vsum(vec a) {
  float t[8];
  _mm256_storeu_ps(t, a);
  return t[0] + t[1] + t[2] + t[3] + t[4] + t[5] + t[6] + t[7];
}
#else
#define WIDTH 1
typedef float vec;
static inline vec vfma(vec a, vec b, vec c) { return a * b + c; }
static inline vec vset(float x) { return x; }
static inline float vsum(vec a) { return a; }
#endif

static float fma_chain(int64_t iters) {
  vec acc[ACC], a = vset(1.0f + 1e-7f), b = vset(1e-7f);
  for (int i = 0; i < ACC; i++) acc[i] = vset((float)i);
  for (int64_t it = 0; it < iters; it++) {
#pragma GCC unroll 16
    for (int i = 0; i < ACC; i++) acc[i] = vfma(acc[i], a, b);
  }
  float s = 0;
  for (int i = 0; i < ACC; i++) s += vsum(acc[i]);
  return s;
}

double md_fma_peak_gflops(int64_t iters) {
  double t0 = omp_get_wtime(), sink = 0;
  int threads = 1;
#pragma omp parallel reduction(+ : sink)
  {
#pragma omp single
    threads = omp_get_num_threads();
    sink += fma_chain(iters);
  }
  double seconds = omp_get_wtime() - t0;
  if (sink == 12345.0) seconds += 1e-9; /* keeps the chains from being optimised away */
  return 2.0 * WIDTH * ACC * (double)iters * threads / seconds / 1e9;
}
