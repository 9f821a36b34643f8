/* Mirrors csrc/ops/linalg.c (matmul, bmm) and csrc/ops/linear.c (linear and
 * its kernels): against naive_matmul / naive_linear_forward /
 * naive_linear_backward, finite differences (check_grads), argument errors. */
#include "ops/linalg.h"
#include "ops/linear.h"
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

/* ---- linear ------------------------------------------------------------------------------ */

/* The kernels: forward overwrites y, backward accumulates (checked by
 * starting every gradient from ones). Buffers have one spare element so
 * that zero-sized ones are valid pointers. */
static void check_linear(int64_t rows, int64_t in, int64_t out, bool bias) {
  int64_t nx = rows * in, nw = out * in, ny = rows * out;
  float *x = calloc(nx + 1, sizeof *x), *w = calloc(nw + 1, sizeof *w), *b = calloc(out + 1, sizeof *b);
  float *y = calloc(ny + 1, sizeof *y), *dy = calloc(ny + 1, sizeof *dy);
  float *dx = calloc(nx + 1, sizeof *dx), *dw = calloc(nw + 1, sizeof *dw), *db = calloc(out + 1, sizeof *db);
  double *ry = calloc(ny + 1, sizeof *ry), *rdx = calloc(nx + 1, sizeof *rdx), *rdw = calloc(nw + 1, sizeof *rdw),
         *rdb = calloc(out + 1, sizeof *rdb);
  fill_uniform(x, nx, 51), fill_uniform(w, nw, 52), fill_uniform(b, out, 53), fill_uniform(dy, ny, 54);
  naive_linear_forward(x, w, bias ? b : NULL, ry, rows, in, out);
  fill_uniform(y, ny, 99); /* garbage the kernel must overwrite */
  md_linear_forward(x, w, bias ? b : NULL, y, rows, in, out);
  float *fy = naive_to_float(ry, ny);
  ck_assert_close(y, fy, ny, 1e-5, 1e-4);
  for (int64_t i = 0; i < nx; i++) dx[i] = 1.0f, rdx[i] = 1.0;
  for (int64_t i = 0; i < nw; i++) dw[i] = 1.0f, rdw[i] = 1.0;
  for (int64_t i = 0; i < out; i++) db[i] = 1.0f, rdb[i] = 1.0;
  naive_linear_backward(x, w, dy, rdx, rdw, rdb, rows, in, out);
  md_linear_backward(x, w, dy, dx, dw, db, rows, in, out);
  float *fdx = naive_to_float(rdx, nx), *fdw = naive_to_float(rdw, nw), *fdb = naive_to_float(rdb, out);
  ck_assert_close(dx, fdx, nx, 1e-5, 1e-4);
  ck_assert_close(dw, fdw, nw, 1e-5, 1e-4);
  ck_assert_close(db, fdb, out, 1e-5, 1e-4);
  free(x), free(w), free(b), free(y), free(ry), free(dy), free(dx), free(dw), free(db), free(rdx), free(rdw), free(rdb);
  free(fy), free(fdx), free(fdw), free(fdb);
}

START_TEST(linear_matches_naive) {
  check_linear(5, 7, 3, true);
  check_linear(128, 32, 128, false);
  check_linear(3, 0, 4, true); /* no input features: the bias alone */
  check_linear(3, 0, 4, false);
  check_linear(0, 5, 4, true);
}
END_TEST

static md_tensor *run_linear(md_tensor *const *in, const void *arg) {
  md_tensor *y = NULL;
  return md_linear(&y, in[0], in[1], arg ? in[2] : NULL) == MD_OK ? y : NULL;
}

/* the op over a [2, 3, 4] input (rows flattened), with and without bias */
START_TEST(linear_op_matches_finite_differences) {
  int64_t xs[3] = {2, 3, 4}, ws[2] = {5, 4}, bs[1] = {5};
  md_tensor *in[3] = {filled(3, xs, 61, -1, 1), filled(2, ws, 62, -1, 1), filled(1, bs, 63, -1, 1)};
  for (int bias = 0; bias < 2; bias++) {
    md_tensor *y = run_linear(in, bias ? "bias" : NULL);
    ck_assert_ptr_nonnull(y);
    ck_assert_int_eq(y->ndim, 3);
    ck_assert_int_eq(y->shape[2], 5);
    double want[30];
    naive_linear_forward(md_data(in[0]), md_data(in[1]), bias ? md_data(in[2]) : NULL, want, 6, 4, 5);
    for (int64_t i = 0; i < 30; i++) ck_assert_double_eq_tol(md_data(y)[i], want[i], 1e-5);
    md_tensor_release(y);
    double e = check_grads(run_linear, bias ? "bias" : NULL, bias ? 3 : 2, in, 0);
    ck_assert_msg(e <= 1.0, "bias %d: gradient off by %g tolerances", bias, e);
  }
  for (int k = 0; k < 3; k++) md_tensor_release(in[k]);
}
END_TEST

START_TEST(linear_with_no_input_features_is_the_bias) {
  int64_t xs[2] = {2, 0}, ws[2] = {4, 0}, bs[1] = {4};
  md_tensor *x = md_tensor_zeros(2, xs), *w = md_tensor_zeros(2, ws), *b = md_tensor_full(1, bs, 2.0f), *y = NULL;
  ck_assert_int_eq(md_linear(&y, x, w, b), MD_OK);
  ck_assert_int_eq(y->shape[0], 2);
  ck_assert_int_eq(y->shape[1], 4);
  for (int64_t i = 0; i < 8; i++) ck_assert_float_eq(md_data(y)[i], 2.0f);
  md_tensor_release(y), md_tensor_release(x), md_tensor_release(w), md_tensor_release(b);
}
END_TEST

static void expect_error(int rc, const char *text) {
  ck_assert_int_eq(rc, MD_ERR);
  ck_assert_msg(strstr(md_errmsg(), text) != NULL, "error '%s' does not mention '%s'", md_errmsg(), text);
}

START_TEST(linear_bad_arguments_give_specific_errors) {
  int64_t xs[4] = {1, 1, 5, 5}, ws[4] = {2, 1, 3, 3}, ls[2] = {3, 4};
  md_tensor *x = md_tensor_zeros(4, xs), *w = md_tensor_zeros(4, ws), *lw = md_tensor_zeros(2, ls), *y = NULL;
  expect_error(md_linear(&y, x, lw, NULL), "linear: weight expects 4 input features, input has shape [1, 1, 5, 5]");
  expect_error(md_linear(&y, x, w, NULL), "linear: weight must be [out, in]");
  md_tensor_release(x), md_tensor_release(w), md_tensor_release(lw);
}
END_TEST

Suite *make_suite(void) {
  Suite *s = suite_create("linalg and linear");
  TCase *tc = tcase_create("ops");
  tcase_set_timeout(tc, 60);
  tcase_add_test(tc, matmul_matches_naive_and_finite_differences);
  tcase_add_test(tc, linear_matches_naive);
  tcase_add_test(tc, linear_op_matches_finite_differences);
  tcase_add_test(tc, linear_with_no_input_features_is_the_bias);
  tcase_add_test(tc, linear_bad_arguments_give_specific_errors);
  suite_add_tcase(s, tc);
  return s;
}
