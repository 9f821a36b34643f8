/* With oneDNN present, its SGEMM runs on the same OpenMP thread pool as the
 * rest of moondust (OpenBLAS's own pthreads would otherwise compete with
 * OpenMP's spinning workers) and uses AVX-512 kernels whatever
 * OPENBLAS_CORETYPE says. OpenBLAS is the portable fallback. */
#include "blas.h"

#ifdef MD_HAVE_DNNL
#include <oneapi/dnnl/dnnl.h>
#else
#include <cblas.h>
#endif

void md_sgemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
              const float *a, int64_t lda, const float *b, int64_t ldb, float beta, float *c,
              int64_t ldc) {
  if (m == 0 || n == 0) return;
#ifdef MD_HAVE_DNNL
  dnnl_sgemm(trans_a ? 'T' : 'N', trans_b ? 'T' : 'N', m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
#else
  cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans,
              (blasint)m, (blasint)n, (blasint)k, alpha, a, (blasint)lda, b, (blasint)ldb, beta, c,
              (blasint)ldc);
#endif
}
