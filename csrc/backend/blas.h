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

/* Element strides of a batch of matrices: over the two batch dimensions,
 * then rows and columns. */
typedef struct {
  int64_t b1, b2, row, col;
} md_strides;

/* A batch of products C = alpha A B (+ C when accumulate), A [m, k],
 * B [k, n], C [m, n], over nb1 x nb2 batch entries; each operand is a base
 * pointer and its strides (a transposed view is just other strides; C's
 * columns must be contiguous). Through oneDNN's batched matmul (one call,
 * cached primitives) where available, else one md_sgemm per entry.
 * Returns MD_ERR with a message if oneDNN fails. */
int md_sgemm_batched(int64_t nb1, int64_t nb2, int64_t m, int64_t n, int64_t k, float alpha, const float *a,
                     md_strides sa, const float *b, md_strides sb, bool accumulate, float *c, md_strides sc);

#endif
