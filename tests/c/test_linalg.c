/* Mirrors csrc/ops/linalg.c: matmul and bmm against naive_matmul and finite
 * differences. */
#include "ops/linalg.h"
#include "testutil.h"

/* ---- matmul, bmm ---------------------------------------------------------------------------- */

static md_tensor *run_matmul(md_tensor *const *in, const void *arg) {
  md_tensor *y = NULL;
  return (arg ? md_bmm : md_matmul)(&y, in[0], in[1]) == MD_OK ? y : NULL;
}

/* c = a @ b with the smaller batch repeating over the trailing batch dims */
static void expect_matmul(const md_tensor *a, const md_tensor *b, const md_tensor *c) {
  int64_t m = a->shape[a->ndim - 2], k = a->shape[a->ndim - 1], n = b->shape[b->ndim - 1];
  int64_t na = md_shape_numel(a->ndim - 2, a->shape), nb = md_shape_numel(b->ndim - 2, b->shape);
  int64_t batch = md_shape_numel(c->ndim - 2, c->shape);
  double *want = malloc((size_t)(batch * m * n) * sizeof *want);
  naive_matmul(md_data(a), md_data(b), want, batch, na, nb, m, k, n);
  for (int64_t i = 0; i < batch * m * n; i++) ck_assert_double_eq_tol(md_data(c)[i], want[i], 1e-5);
  free(want);
}

START_TEST(matmul_matches_naive_and_finite_differences) {
  struct {
    int na, nb;
    int64_t sa[4], sb[4];
    bool bmm;
  } cases[] = {
      {2, 2, {5, 7}, {7, 3}, false},             /* plain */
      {4, 3, {2, 3, 4, 5}, {3, 5, 2}, false},    /* b repeats over a's leading dim */
      {2, 4, {4, 5}, {2, 3, 5, 6}, false},       /* a shared by every batch of b */
      {3, 2, {2, 3, 4}, {4, 2}, false},          /* one GEMM over all rows */
      {3, 3, {2, 5, 7}, {2, 7, 3}, false},       /* equal batches */
      {3, 3, {2, 3, 4}, {2, 4, 5}, true},        /* bmm */
  };
  for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
    md_tensor *in[2] = {filled(cases[c].na, cases[c].sa, 30 + c, -1, 1), filled(cases[c].nb, cases[c].sb, 50 + c, -1, 1)};
    const void *arg = cases[c].bmm ? "bmm" : NULL;
    md_tensor *y = run_matmul(in, arg);
    ck_assert_ptr_nonnull(y);
    expect_matmul(in[0], in[1], y);
    md_tensor_release(y);
    double e = check_grads(run_matmul, arg, 2, in, 0);
    ck_assert_msg(e <= 1.0, "case %d: gradient off by %g tolerances", (int)c, e);
    md_tensor_release(in[0]), md_tensor_release(in[1]);
  }
  int64_t sa[3] = {2, 3, 4}, sb[3] = {3, 4, 5};
  md_tensor *a = md_tensor_zeros(3, sa), *b = md_tensor_zeros(3, sb), *y;
  ck_assert_int_eq(md_matmul(&y, a, b), MD_ERR); /* batch 2 vs 3 */
  ck_assert_str_eq(md_errmsg(), "matmul: shapes [2, 3, 4] and [3, 4, 5] do not multiply");
  ck_assert_int_eq(md_bmm(&y, a, a), MD_ERR);
  md_tensor_release(a), md_tensor_release(b);
  int64_t s0[2] = {2, 0}, s1[2] = {0, 3};
  a = md_tensor_new(2, s0), b = md_tensor_new(2, s1);
  ck_assert_int_eq(md_matmul(&y, a, b), MD_OK); /* inner size 0: zeros */
  for (int i = 0; i < 6; i++) ck_assert_float_eq(md_data(y)[i], 0.0f);
  md_tensor_release(y), md_tensor_release(a), md_tensor_release(b);
}
END_TEST

Suite *make_suite(void) {
  Suite *s = suite_create("linalg");
  TCase *tc = tcase_create("ops");
  tcase_set_timeout(tc, 60);
  tcase_add_test(tc, matmul_matches_naive_and_finite_differences);
  suite_add_tcase(s, tc);
  return s;
}
