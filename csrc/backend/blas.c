/* With oneDNN present, its SGEMM runs on the same OpenMP thread pool as the
 * rest of moondust (OpenBLAS's own pthreads would otherwise compete with
 * OpenMP's spinning workers) and uses AVX-512 kernels whatever
 * OPENBLAS_CORETYPE says. OpenBLAS is the portable fallback. */
#include "blas.h"

#include <stdlib.h>

#include "../error.h"

#ifdef MD_HAVE_DNNL
#include <oneapi/dnnl/dnnl.h>
#include <omp.h>
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

/* One product of the batch through md_sgemm: a view whose columns are not
 * contiguous is the transpose of one whose rows are. */
static void sgemm_one(int64_t m, int64_t n, int64_t k, float alpha, const float *a, md_strides sa, const float *b,
                      md_strides sb, bool accumulate, float *c, md_strides sc) {
  bool ta = sa.col != 1, tb = sb.col != 1;
  md_sgemm(ta, tb, m, n, k, alpha, a, ta ? sa.col : sa.row, b, tb ? sb.col : sb.row, accumulate ? 1.0f : 0.0f, c,
           sc.row);
}

static void sgemm_each(int64_t nb1, int64_t nb2, int64_t m, int64_t n, int64_t k, float alpha, const float *a,
                       md_strides sa, const float *b, md_strides sb, bool accumulate, float *c, md_strides sc) {
  for (int64_t i = 0; i < nb1; i++)
    for (int64_t j = 0; j < nb2; j++)
      sgemm_one(m, n, k, alpha, a + i * sa.b1 + j * sa.b2, sa, b + i * sb.b1 + j * sb.b2, sb, accumulate,
                c + i * sc.b1 + j * sc.b2, sc);
}

#ifdef MD_HAVE_DNNL

/* Batched matmul primitives, cached by everything that shapes them. */
typedef struct {
  int64_t dims[5]; /* nb1, nb2, m, n, k */
  md_strides sa, sb, sc;
  float alpha;
  bool accumulate;
  int nthreads;
  uint64_t last_used;
  dnnl_primitive_t prim;
} matmul;

#define MATMUL_CACHE 64
static matmul *matmuls[MATMUL_CACHE];
static uint64_t matmul_uses;
static dnnl_engine_t mm_engine;
static dnnl_stream_t mm_stream;

static bool same_strides(md_strides x, md_strides y) {
  return x.b1 == y.b1 && x.b2 == y.b2 && x.row == y.row && x.col == y.col;
}

static void view_md(dnnl_memory_desc_t *md, int64_t nb1, int64_t nb2, int64_t rows, int64_t cols, md_strides s) {
  dnnl_dims_t d = {nb1, nb2, rows, cols}, st = {s.b1, s.b2, s.row, s.col};
  dnnl_memory_desc_init_by_strides(md, 4, d, dnnl_f32, st);
}

static int build_matmul(matmul *mm) {
  int64_t nb1 = mm->dims[0], nb2 = mm->dims[1], m = mm->dims[2], n = mm->dims[3], k = mm->dims[4];
  dnnl_memory_desc_t a, b, c;
  view_md(&a, nb1, nb2, m, k, mm->sa), view_md(&b, nb1, nb2, k, n, mm->sb), view_md(&c, nb1, nb2, m, n, mm->sc);
  dnnl_primitive_attr_t attr;
  dnnl_post_ops_t ops;
  dnnl_primitive_attr_create(&attr);
  dnnl_primitive_attr_set_output_scales(attr, 1, 0, &mm->alpha);
  dnnl_post_ops_create(&ops);
  if (mm->accumulate) dnnl_post_ops_append_sum(ops, 1.0f);
  dnnl_primitive_attr_set_post_ops(attr, ops);
  dnnl_matmul_desc_t desc;
  dnnl_primitive_desc_t pd = NULL;
  dnnl_status_t st = dnnl_matmul_desc_init(&desc, &a, &b, NULL, &c);
  if (st == dnnl_success) st = dnnl_primitive_desc_create(&pd, &desc, attr, mm_engine, NULL);
  if (st == dnnl_success) st = dnnl_primitive_create(&mm->prim, pd);
  if (pd) dnnl_primitive_desc_destroy(pd);
  dnnl_post_ops_destroy(ops);
  dnnl_primitive_attr_destroy(attr);
  return st == dnnl_success ? MD_OK : md_error("batched matmul (oneDNN): primitive creation failed with status %d", (int)st);
}

static matmul *matmul_for(const matmul *want) {
  int victim = 0;
  for (int i = 0; i < MATMUL_CACHE; i++) {
    matmul *mm = matmuls[i];
    if (mm && mm->dims[0] == want->dims[0] && mm->dims[1] == want->dims[1] && mm->dims[2] == want->dims[2] &&
        mm->dims[3] == want->dims[3] && mm->dims[4] == want->dims[4] && same_strides(mm->sa, want->sa) &&
        same_strides(mm->sb, want->sb) && same_strides(mm->sc, want->sc) && mm->alpha == want->alpha &&
        mm->accumulate == want->accumulate && mm->nthreads == want->nthreads) {
      mm->last_used = ++matmul_uses;
      return mm;
    }
    if (!mm || (matmuls[victim] && mm->last_used < matmuls[victim]->last_used)) victim = i;
  }
  if (!mm_engine) {
    if (dnnl_engine_create(&mm_engine, dnnl_cpu, 0) != dnnl_success ||
        dnnl_stream_create(&mm_stream, mm_engine, dnnl_stream_default_flags) != dnnl_success) {
      md_error("batched matmul (oneDNN): engine creation failed");
      return NULL;
    }
  }
  matmul *mm = malloc(sizeof *mm);
  if (!mm) {
    md_error("batched matmul: out of memory");
    return NULL;
  }
  *mm = *want;
  mm->last_used = ++matmul_uses;
  if (build_matmul(mm) != MD_OK) {
    free(mm);
    return NULL;
  }
  if (matmuls[victim]) dnnl_primitive_destroy(matmuls[victim]->prim);
  free(matmuls[victim]);
  matmuls[victim] = mm;
  return mm;
}

int md_sgemm_batched(int64_t nb1, int64_t nb2, int64_t m, int64_t n, int64_t k, float alpha, const float *a,
                     md_strides sa, const float *b, md_strides sb, bool accumulate, float *c, md_strides sc) {
  if (nb1 == 0 || nb2 == 0 || m == 0 || n == 0) return MD_OK;
  if (k == 0) { /* oneDNN rejects empty dimensions: an empty sum */
    sgemm_each(nb1, nb2, m, n, k, alpha, a, sa, b, sb, accumulate, c, sc);
    return MD_OK;
  }
  matmul want = {.dims = {nb1, nb2, m, n, k}, .sa = sa, .sb = sb, .sc = sc, .alpha = alpha, .accumulate = accumulate,
                 .nthreads = omp_get_max_threads()};
  matmul *mm = matmul_for(&want);
  if (!mm) return MD_ERR;
  dnnl_memory_desc_t da, db, dc;
  view_md(&da, nb1, nb2, m, k, sa), view_md(&db, nb1, nb2, k, n, sb), view_md(&dc, nb1, nb2, m, n, sc);
  dnnl_memory_t ma = NULL, mb = NULL, mc = NULL;
  dnnl_status_t st = dnnl_memory_create(&ma, &da, mm_engine, (void *)a);
  if (st == dnnl_success) st = dnnl_memory_create(&mb, &db, mm_engine, (void *)b);
  if (st == dnnl_success) st = dnnl_memory_create(&mc, &dc, mm_engine, c);
  if (st == dnnl_success) {
    dnnl_exec_arg_t args[3] = {{DNNL_ARG_SRC, ma}, {DNNL_ARG_WEIGHTS, mb}, {DNNL_ARG_DST, mc}};
    st = dnnl_primitive_execute(mm->prim, mm_stream, 3, args);
    if (st == dnnl_success) st = dnnl_stream_wait(mm_stream);
  }
  if (ma) dnnl_memory_destroy(ma);
  if (mb) dnnl_memory_destroy(mb);
  if (mc) dnnl_memory_destroy(mc);
  return st == dnnl_success ? MD_OK : md_error("batched matmul (oneDNN): execution failed with status %d", (int)st);
}

#else

int md_sgemm_batched(int64_t nb1, int64_t nb2, int64_t m, int64_t n, int64_t k, float alpha, const float *a,
                     md_strides sa, const float *b, md_strides sb, bool accumulate, float *c, md_strides sc) {
  sgemm_each(nb1, nb2, m, n, k, alpha, a, sa, b, sb, accumulate, c, sc);
  return MD_OK;
}

#endif
