/* Deterministic parallel sums. The range is cut into a fixed number of
 * chunks whatever the thread count, each chunk is summed in order, and the
 * chunk sums are added in order: the result does not depend on threads or
 * scheduling, so a resumed training run reproduces the uninterrupted one.
 *
 *   double part[MD_SUM_CHUNKS];
 *   #pragma omp parallel for if (n > 32768) schedule(static)
 *   for (int c = 0; c < MD_SUM_CHUNKS; c++) {
 *     int64_t lo = md_chunk_start(n, c), hi = md_chunk_start(n, c + 1);
 *     double s = 0;
 *     for (int64_t i = lo; i < hi; i++) s += ...;
 *     part[c] = s;
 *   }
 *   double total = md_sum_parts(part);
 */
#ifndef MD_DETSUM_H
#define MD_DETSUM_H

#include <stdint.h>

#define MD_SUM_CHUNKS 64

static inline int64_t md_chunk_start(int64_t n, int c) { return n * c / MD_SUM_CHUNKS; }

static inline double md_sum_parts(const double *part) {
  double s = 0;
  for (int c = 0; c < MD_SUM_CHUNKS; c++) s += part[c];
  return s;
}

#endif
