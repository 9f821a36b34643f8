/* Mirrors csrc/ops/pool.c: nearest upsampling and average pooling, the
 * kernels against naive_upsample_nearest_* / naive_avg_pool2d_* (plain and
 * blocked), the ops against finite differences, argument errors. */
#include "layout.h"
#include "ops/pool.h"
#include "testutil.h"

/* Both ops are linear, so the adjoint identity <y, r> = <x, dx> (dx the
 * backward of r from zero) checks backward against the naive forward, and
 * backward accumulates when started from ones. */
static void check_pool(bool upsample, int64_t planes, int64_t h, int64_t w, int64_t a, int64_t b) {
  int64_t ho = upsample ? h * a : (h - a) / b + 1, wo = upsample ? w * a : (w - a) / b + 1;
  int64_t nx = planes * h * w, ny = planes * ho * wo;
  float *x = malloc(nx * sizeof *x), *y = malloc(ny * sizeof *y), *ry = malloc(ny * sizeof *ry);
  float *r = malloc(ny * sizeof *r), *dx = malloc(nx * sizeof *dx);
  double *rdx = malloc(nx * sizeof *rdx);
  fill_uniform(x, nx, 41), fill_uniform(r, ny, 42);
  if (upsample) {
    md_upsample_nearest_forward(x, y, planes, h, w, a, false);
    naive_upsample_nearest_forward(x, ry, planes, h, w, a);
  } else {
    md_avg_pool2d_forward(x, y, planes, h, w, a, b);
    double *d = malloc(ny * sizeof *d);
    naive_avg_pool2d_forward(x, d, planes, h, w, a, b);
    for (int64_t i = 0; i < ny; i++) ry[i] = (float)d[i];
    free(d);
  }
  ck_assert_close(y, ry, ny, 1e-6, 1e-5);
  for (int64_t i = 0; i < nx; i++) dx[i] = 1.0f;
  if (upsample) md_upsample_nearest_backward(r, dx, planes, h, w, a, false);
  else md_avg_pool2d_backward(r, dx, planes, h, w, a, b);
  double lhs = 0, rhs = 0;
  for (int64_t i = 0; i < ny; i++) lhs += (double)ry[i] * r[i];
  for (int64_t i = 0; i < nx; i++) rhs += (double)x[i] * (dx[i] - 1.0);
  ck_assert_msg(fabs(lhs - rhs) <= 1e-4 * (1 + fabs(lhs)), "adjoint mismatch: %g vs %g", lhs, rhs);
  /* per element: each input's gradient is the (scaled) sum of the r it fed */
  for (int64_t i = 0; i < nx; i++) rdx[i] = 1.0;
  if (upsample) naive_upsample_nearest_backward(r, rdx, planes, h, w, a);
  else naive_avg_pool2d_backward(r, rdx, planes, h, w, a, b);
  float *ref = naive_to_float(rdx, nx);
  ck_assert_close(dx, ref, nx, 1e-5, 1e-5);
  free(x), free(y), free(ry), free(r), free(dx), free(rdx), free(ref);
}

/* The blocked kernels give the blocked form of the plain kernels' results. */
static void check_upsample_blocked(int64_t n, int64_t c, int64_t h, int64_t w, int64_t s) {
  int64_t nx = n * c * h * w, ny = nx * s * s;
  float *x = malloc(nx * 4), *xb = malloc(nx * 4), *y = malloc(ny * 4), *yb = malloc(ny * 4), *got = malloc(ny * 4);
  float *r = malloc(ny * 4), *rb = malloc(ny * 4), *dx = calloc(nx, 4), *dxb = calloc(nx, 4), *dgot = malloc(nx * 4);
  fill_uniform(x, nx, 43), fill_uniform(r, ny, 44);
  md_block_kernel(x, xb, n, c, h * w, false), md_block_kernel(r, rb, n, c, h * w * s * s, false);
  md_upsample_nearest_forward(x, y, n * c, h, w, s, false);
  md_upsample_nearest_forward(xb, yb, n * c, h, w, s, true);
  md_unblock_kernel(yb, got, n, c, h * w * s * s, false);
  ck_assert_close(got, y, ny, 1e-7, 1e-7);
  md_upsample_nearest_backward(r, dx, n * c, h, w, s, false);
  md_upsample_nearest_backward(rb, dxb, n * c, h, w, s, true);
  md_unblock_kernel(dxb, dgot, n, c, h * w, false);
  ck_assert_close(dgot, dx, nx, 1e-6, 1e-6);
  free(x), free(xb), free(y), free(yb), free(got), free(r), free(rb), free(dx), free(dxb), free(dgot);
}

START_TEST(upsample_and_avg_pool_match_naive) {
  check_upsample_blocked(2, 32, 7, 5, 2);
  check_pool(true, 6, 7, 7, 2, 0);
  check_pool(true, 2, 3, 5, 3, 0);
  check_pool(true, 3, 4, 4, 1, 0);
  check_pool(false, 6, 28, 28, 2, 2);
  check_pool(false, 4, 7, 7, 2, 2); /* odd size: the last row and column are dropped */
  check_pool(false, 2, 9, 8, 3, 2); /* overlapping windows */
  check_pool(false, 2, 5, 5, 3, 1);
}
END_TEST

typedef struct {
  bool upsample;
  int64_t a, b; /* scale, or kernel and stride */
} pool_case;

static md_tensor *run_pool(md_tensor *const *in, const void *arg) {
  const pool_case *c = arg;
  md_tensor *y = NULL;
  int rc = c->upsample ? md_upsample_nearest(&y, in[0], c->a) : md_avg_pool2d(&y, in[0], c->a, c->b);
  return rc == MD_OK ? y : NULL;
}

/* the ops (shapes, autograd) on top of the kernels checked above */
START_TEST(pool_ops_match_finite_differences) {
  int64_t xs[4] = {2, 2, 7, 6};
  md_tensor *x = filled(4, xs, 45, -1, 1);
  pool_case cases[3] = {{true, 2, 0}, {false, 2, 2}, {false, 3, 2}};
  for (int c = 0; c < 3; c++) {
    md_tensor *y = run_pool(&x, &cases[c]);
    ck_assert_ptr_nonnull(y);
    int64_t a = cases[c].a, b = cases[c].b;
    ck_assert_int_eq(y->shape[2], cases[c].upsample ? 7 * a : (7 - a) / b + 1);
    ck_assert_int_eq(y->shape[3], cases[c].upsample ? 6 * a : (6 - a) / b + 1);
    md_tensor_release(y);
    double e = check_grads(run_pool, &cases[c], 1, &x, 0);
    ck_assert_msg(e <= 1.0, "case %d: gradient off by %g tolerances", c, e);
  }
  md_tensor_release(x);
}
END_TEST

static void expect_error(int rc, const char *text) {
  ck_assert_int_eq(rc, MD_ERR);
  ck_assert_msg(strstr(md_errmsg(), text) != NULL, "error '%s' does not mention '%s'", md_errmsg(), text);
}

START_TEST(pool_bad_arguments_give_specific_errors) {
  int64_t xs[4] = {1, 1, 5, 5}, w3s[3] = {2, 1, 3};
  md_tensor *x = md_tensor_zeros(4, xs), *w3 = md_tensor_zeros(3, w3s), *y = NULL;
  expect_error(md_upsample_nearest(&y, x, 0), "scale must be a positive integer, got 0");
  expect_error(md_upsample_nearest(&y, x, INT64_C(1) << 40), "too large");
  expect_error(md_upsample_nearest(&y, w3, 2), "input must be N x C x H x W");
  expect_error(md_avg_pool2d(&y, x, 0, 1), "kernel and stride must be positive");
  expect_error(md_avg_pool2d(&y, x, 6, 6), "kernel 6 is larger than the input");
  expect_error(md_avg_pool2d(&y, w3, 2, 2), "input must be N x C x H x W");
  md_tensor_release(x), md_tensor_release(w3);
}
END_TEST

Suite *make_suite(void) {
  Suite *s = suite_create("pool");
  TCase *tc = tcase_create("ops");
  tcase_set_timeout(tc, 60);
  tcase_add_test(tc, upsample_and_avg_pool_match_naive);
  tcase_add_test(tc, pool_ops_match_finite_differences);
  tcase_add_test(tc, pool_bad_arguments_give_specific_errors);
  suite_add_tcase(s, tc);
  return s;
}
