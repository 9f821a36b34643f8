/* The only door to BLAS: row-major single-precision GEMM,
 * C = alpha * op(A) * op(B) + beta * C, with op(X) = X or X^T.
 * Never call it from inside an OpenMP parallel region (one level of threads). */
#ifndef MD_BLAS_H
#define MD_BLAS_H

#include <stdbool.h>
#include <stdint.h>

void md_sgemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
              const float *a, int64_t lda, const float *b, int64_t ldb, float beta, float *c,
              int64_t ldc);

#endif
