/* Mirrors csrc/ops/linear.c: the kernels against naive_linear, the op
 * against finite differences, its corner cases and its errors. */
#include "ops/linear.h"
#include "testutil.h"

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
  Suite *s = suite_create("linear");
  TCase *tc = tcase_create("linear");
  tcase_add_test(tc, linear_matches_naive);
  tcase_add_test(tc, linear_op_matches_finite_differences);
  tcase_add_test(tc, linear_with_no_input_features_is_the_bias);
  tcase_add_test(tc, linear_bad_arguments_give_specific_errors);
  suite_add_tcase(s, tc);
  return s;
}
