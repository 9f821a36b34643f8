/* Convolution and friends beyond the kernel-vs-naive sweep of
 * test_conv_kernels.c: the tensor-level conv2d against finite differences on
 * both engines, oneDNN against im2col at the U-Net's widths, partial
 * gradients, empty shapes, the primitive cache's bound; pooling, upsampling
 * and linear kernels against naive references; argument errors. */
#include "autograd.h"
#include "backend/conv_dnnl.h"
#include "backend/conv_im2col.h"
#include "ops/blocked.h"
#include "ops/conv.h"
#include "ops/linear.h"
#include "ops/attention.h"
#include "ops/embedding.h"
#include "ops/norm.h"
#include "ops/pool.h"
#include "ops/softmax.h"
#include "ops/pool.h"
#include "testutil.h"

static md_tensor *rand_tensor(int ndim, const int64_t *shape, uint32_t seed) {
  md_tensor *t = md_tensor_new(ndim, shape);
  fill_uniform(md_data(t), t->numel, seed);
  return t;
}

static md_conv_shape conv_shape(int64_t n, int64_t c, int64_t h, int64_t w, int64_t o, int64_t k, int64_t stride,
                                int64_t pad) {
  md_conv_shape s = {.n = n, .c = c, .h = h, .w = w, .o = o, .k = k, .stride = stride, .pad = pad};
  s.ho = (h + 2 * pad - k) / stride + 1;
  s.wo = (w + 2 * pad - k) / stride + 1;
  return s;
}

/* ---- conv2d at tensor level: autograd against central differences ----------------------- */

typedef struct {
  md_tensor *x, *w, *b, *r; /* loss = sum(conv2d(x, w, b) * r) */
  int64_t stride, pad;
} conv_ctx;

static double conv_loss(void *p) {
  conv_ctx *c = p;
  md_tensor *y = NULL;
  /* grad_check writes the buffers directly: say so, as every write must
   * (the engine keeps reordered weights until their version changes) */
  c->w->storage->version++;
  ck_assert_int_eq(md_conv2d(&y, c->x, c->w, c->b, c->stride, c->pad), MD_OK);
  double acc = 0;
  for (int64_t i = 0; i < y->numel; i++) acc += (double)md_data(y)[i] * md_data(c->r)[i];
  md_tensor_release(y);
  return acc;
}

static void check_conv_gradients(int64_t n, int64_t ch, int64_t h, int64_t w, int64_t o, int64_t k, int64_t stride,
                                 int64_t pad) {
  int64_t xs[4] = {n, ch, h, w}, ws[4] = {o, ch, k, k}, bs[1] = {o};
  conv_ctx c = {rand_tensor(4, xs, 11), rand_tensor(4, ws, 12), rand_tensor(1, bs, 13), NULL, stride, pad};
  c.x->requires_grad = c.w->requires_grad = c.b->requires_grad = true;
  md_tensor *y = NULL;
  ck_assert_int_eq(md_conv2d(&y, c.x, c.w, c.b, stride, pad), MD_OK);
  c.r = rand_tensor(y->ndim, y->shape, 14);
  ck_assert_int_eq(md_backward(y, c.r, false), MD_OK);
  md_tensor_release(y);
  md_set_grad_enabled(false);
  md_tensor *ts[3] = {c.x, c.w, c.b};
  for (int i = 0; i < 3; i++) {
    ck_assert_ptr_nonnull(ts[i]->grad);
    double e = grad_check(conv_loss, &c, md_data(ts[i]), md_data(ts[i]->grad), ts[i]->numel, 1e-2f, 40);
    ck_assert_msg(e <= 1.0, "conv2d gradient %d off by %g (shape %lld %lld %lld %lld, k %lld, stride %lld)", i, e,
                  (long long)n, (long long)ch, (long long)h, (long long)w, (long long)k, (long long)stride);
  }
  md_set_grad_enabled(true);
  for (int i = 0; i < 3; i++) md_tensor_release(ts[i]);
  md_tensor_release(c.r);
}

static void check_conv_gradients_all_shapes(void) {
  check_conv_gradients(2, 3, 7, 7, 4, 3, 1, 1);
  check_conv_gradients(2, 2, 7, 7, 3, 3, 2, 1); /* odd size, stride 2 */
  check_conv_gradients(1, 2, 6, 5, 3, 1, 1, 0); /* 1x1, non-square input */
  check_conv_gradients(3, 2, 5, 5, 2, 3, 2, 0);
}

START_TEST(conv2d_gradients_match_finite_differences_im2col) {
  ck_assert_int_eq(md_set_conv_backend(MD_CONV_IM2COL), MD_OK);
  check_conv_gradients_all_shapes();
}
END_TEST

#ifdef MD_HAVE_DNNL
START_TEST(conv2d_gradients_match_finite_differences_dnnl) {
  ck_assert_int_eq(md_set_conv_backend(MD_CONV_DNNL), MD_OK);
  ck_assert_int_eq(md_get_conv_backend(), MD_CONV_DNNL);
  check_conv_gradients_all_shapes();
}
END_TEST

/* ---- oneDNN against im2col at the U-Net's widths ------------------------------------------ */

/* Runs both engines with the given subset of gradients requested (each
 * starting from the same non-zero values, since both accumulate). */
/* assign: oneDNN overwrites its gradient buffers (which start as NaN)
 * instead of accumulating, and im2col starts from zeros */
static void compare_engines_with(md_conv_shape s, bool winograd, bool x_blocked, bool y_blocked, bool want_dx,
                                 bool want_dw, bool want_db, bool bias, bool assign) {
  int64_t nx = s.n * s.c * s.h * s.w, nw = s.o * s.c * s.k * s.k, ny = s.n * s.o * s.ho * s.wo;
  float *x = malloc(nx * sizeof *x), *w = malloc(nw * sizeof *w), *b = malloc(s.o * sizeof *b);
  float *dy = malloc(ny * sizeof *dy), *y[2], *dx[2], *dw[2], *db[2];
  fill_uniform(x, nx, 21), fill_uniform(w, nw, 22), fill_uniform(b, s.o, 23), fill_uniform(dy, ny, 24);
  for (int e = 0; e < 2; e++) {
    y[e] = malloc(ny * sizeof(float));
    dx[e] = malloc(nx * sizeof(float)), dw[e] = malloc(nw * sizeof(float)), db[e] = malloc(s.o * sizeof(float));
    fill_uniform(dx[e], nx, 31), fill_uniform(dw[e], nw, 32), fill_uniform(db[e], s.o, 33);
  }
  if (assign) {
    memset(dx[0], 0, nx * 4), memset(dw[0], 0, nw * 4), memset(db[0], 0, s.o * 4);
    for (int64_t i = 0; i < nx; i++) dx[1][i] = want_dx ? NAN : 0.0f;
    for (int64_t i = 0; i < nw; i++) dw[1][i] = want_dw ? NAN : 0.0f;
    for (int64_t i = 0; i < s.o; i++) db[1][i] = want_db ? NAN : 0.0f;
  }
  ck_assert_int_eq(md_conv2d_im2col_forward(&s, x, w, bias ? b : NULL, y[0]), MD_OK);
  ck_assert_int_eq(md_conv2d_im2col_backward(&s, x, w, dy, want_dx ? dx[0] : NULL, want_dw ? dw[0] : NULL,
                                             want_db ? db[0] : NULL),
                   MD_OK);
  /* oneDNN reads x, dy and dx (which it accumulates into) in the shape's
   * layouts, and writes y in its layout: convert in and out around it */
  md_conv_shape d = s;
  float *xl = x, *dyl = dy, *dxl = dx[1], *yl = y[1];
  if (x_blocked) {
    d.x_layout = MD_LAYOUT_BLOCKED;
    xl = malloc(nx * 4), dxl = malloc(nx * 4);
    md_block_kernel(x, xl, s.n, s.c, s.h * s.w, false), md_block_kernel(dx[1], dxl, s.n, s.c, s.h * s.w, false);
  }
  if (y_blocked) {
    d.y_layout = MD_LAYOUT_BLOCKED;
    yl = malloc(ny * 4), dyl = malloc(ny * 4);
    md_block_kernel(dy, dyl, s.n, s.o, s.ho * s.wo, false);
  }
  ck_assert_int_eq(md_dnnl_conv_forward(&d, winograd, xl, w, bias ? b : NULL, yl), MD_OK);
  ck_assert_int_eq(md_dnnl_conv_backward(&d, winograd, xl, w, dyl, want_dx ? dxl : NULL, want_dw ? dw[1] : NULL,
                                         want_db ? db[1] : NULL, assign, assign),
                   MD_OK);
  if (y_blocked) md_unblock_kernel(yl, y[1], s.n, s.o, s.ho * s.wo, false), free(yl), free(dyl);
  if (x_blocked) md_unblock_kernel(dxl, dx[1], s.n, s.c, s.h * s.w, false), free(xl), free(dxl);
  ck_assert_close(y[1], y[0], ny, 1e-4, 1e-4);
  /* untouched buffers stay equal to their (equal) starting values */
  ck_assert_close(dx[1], dx[0], nx, 1e-4, 1e-4);
  ck_assert_close(dw[1], dw[0], nw, 2e-3, 1e-4);
  ck_assert_close(db[1], db[0], s.o, 2e-3, 1e-4);
  for (int e = 0; e < 2; e++) free(y[e]), free(dx[e]), free(dw[e]), free(db[e]);
  free(x), free(w), free(b), free(dy);
}

/* both oneDNN algorithms against im2col, on plain buffers and, where the
 * channels allow, on blocked ones (x, y, or both); the Winograd runs
 * overwrite fresh gradient buffers instead of accumulating */
static void compare_engines(md_conv_shape s, bool want_dx, bool want_dw, bool want_db, bool bias) {
  bool xb = s.c % 16 == 0, yb = s.o % 16 == 0;
  for (int wino = 0; wino < 2; wino++)
    for (int layouts = 0; layouts < 4; layouts++) {
      bool bx = layouts & 1, by = layouts & 2;
      if ((bx && !xb) || (by && !yb)) continue;
      compare_engines_with(s, wino, bx, by, want_dx, want_dw, want_db, bias, wino == 1);
    }
}

START_TEST(dnnl_matches_im2col_at_unet_widths) {
  compare_engines(conv_shape(4, 32, 28, 28, 32, 3, 1, 1), true, true, true, true);
  compare_engines(conv_shape(4, 32, 28, 28, 32, 3, 2, 1), true, true, true, true); /* 28 -> 14 */
  compare_engines(conv_shape(4, 64, 14, 14, 64, 3, 2, 1), true, true, true, true); /* 14 -> 7 */
  compare_engines(conv_shape(4, 64, 7, 7, 64, 3, 1, 1), true, true, true, true);
  compare_engines(conv_shape(4, 64, 7, 7, 192, 1, 1, 0), true, true, true, true); /* qkv */
  compare_engines(conv_shape(3, 1, 28, 28, 32, 3, 1, 1), true, true, true, true); /* input conv */
}
END_TEST

/* Shapes large enough for Winograd F(4x4, 3x3): on an AVX-512 machine
 * oneDNN must pick it, and it must agree with im2col in all three passes. */
START_TEST(dnnl_winograd_matches_im2col) {
  md_conv_shape shapes[3] = {conv_shape(6, 32, 28, 28, 32, 3, 1, 1), conv_shape(24, 64, 14, 14, 32, 3, 1, 1),
                             conv_shape(90, 32, 7, 7, 16, 3, 1, 1)};
  for (int i = 0; i < 3; i++) {
    const char *impl = md_dnnl_conv_impl(&shapes[i], true);
    ck_assert_ptr_nonnull(impl);
    if (__builtin_cpu_supports("avx512f"))
      ck_assert_msg(strstr(impl, "wino") != NULL, "expected a Winograd kernel, oneDNN chose %s", impl);
    ck_assert_ptr_null(strstr(md_dnnl_conv_impl(&shapes[i], false), "wino"));
    compare_engines_with(shapes[i], true, true, true, true, true, true, true, false);
    compare_engines_with(shapes[i], true, true, true, true, true, true, true, true);
  }
  md_conv_shape small = conv_shape(1, 32, 28, 28, 32, 3, 1, 1); /* batch 1: the direct kernel is faster */
  ck_assert_ptr_null(strstr(md_dnnl_conv_impl(&small, true), "wino"));
}
END_TEST

START_TEST(dnnl_partial_gradients_touch_only_what_is_asked) {
  md_conv_shape s = conv_shape(2, 5, 9, 9, 6, 3, 2, 1);
  compare_engines(s, true, false, false, true);
  compare_engines(s, false, true, false, true);
  compare_engines(s, false, false, true, true);
  compare_engines(s, false, true, true, false);
  compare_engines(s, true, true, true, false);
}
END_TEST

/* Far more shapes than the cache holds: old entries are evicted and
 * rebuilt, results stay right, and clearing twice is harmless. */
START_TEST(dnnl_cache_stays_bounded_and_correct) {
  for (int round = 0; round < 2; round++)
    for (int64_t h = 3; h < 3 + 300; h++) {
      md_conv_shape s = conv_shape(1, 2, h, 3, 2, 3, 1, 1);
      int64_t nx = 2 * h * 3, ny = 2 * s.ho * s.wo;
      float x[2 * 302 * 3], w[36], y0[2 * 302 * 3], y1[2 * 302 * 3];
      fill_uniform(x, nx, (uint32_t)h), fill_uniform(w, 36, 5);
      ck_assert_int_eq(md_conv2d_im2col_forward(&s, x, w, NULL, y0), MD_OK);
      ck_assert_int_eq(md_dnnl_conv_forward(&s, true, x, w, NULL, y1), MD_OK);
      ck_assert_close(y1, y0, ny, 1e-5, 1e-4);
    }
  md_dnnl_conv_clear_cache();
  md_dnnl_conv_clear_cache();
}
END_TEST
#endif

/* ---- empty shapes: no engine runs; the output is the bias ----------------------------------- */

static void check_empty(int64_t n, int64_t c, int64_t o) {
  int64_t xs[4] = {n, c, 5, 5}, ws[4] = {o, c, 3, 3}, bs[1] = {o};
  md_tensor *x = md_tensor_zeros(4, xs), *w = md_tensor_zeros(4, ws), *b = md_tensor_full(1, bs, 0.5f), *y = NULL;
  b->requires_grad = true;
  ck_assert_int_eq(md_conv2d(&y, x, w, b, 1, 1), MD_OK);
  ck_assert_int_eq(y->shape[0], n);
  ck_assert_int_eq(y->shape[1], o);
  ck_assert_int_eq(y->shape[2], 5);
  ck_assert_int_eq(y->shape[3], 5);
  for (int64_t i = 0; i < y->numel; i++) ck_assert_float_eq(md_data(y)[i], 0.5f);
  md_tensor *g = md_tensor_full(4, y->shape, 1.0f);
  ck_assert_int_eq(md_backward(y, g, false), MD_OK);
  ck_assert_ptr_nonnull(b->grad);
  for (int64_t i = 0; i < o; i++) ck_assert_float_eq(md_data(b->grad)[i], (float)(n * 25));
  md_tensor_release(g), md_tensor_release(y);
  md_tensor_release(x), md_tensor_release(w), md_tensor_release(b);
}

START_TEST(conv2d_handles_empty_shapes_on_both_engines) {
  md_conv_backend engines[2] = {MD_CONV_IM2COL, MD_CONV_DNNL};
  for (int e = 0; e < 2; e++) {
    if (md_set_conv_backend(engines[e]) != MD_OK) continue; /* no oneDNN in this build */
    check_empty(0, 2, 3);
    check_empty(2, 0, 3);
    check_empty(2, 3, 0);
  }
}
END_TEST

/* ---- pooling and upsampling against naive references ---------------------------------------- */

static void naive_upsample(const float *x, float *y, int64_t planes, int64_t h, int64_t w, int64_t s) {
  for (int64_t p = 0; p < planes; p++)
    for (int64_t i = 0; i < h; i++)
      for (int64_t j = 0; j < w; j++)
        for (int64_t a = 0; a < s; a++)
          for (int64_t b = 0; b < s; b++) y[((p * h + i) * s + a) * w * s + j * s + b] = x[(p * h + i) * w + j];
}

static void naive_avg_pool(const float *x, float *y, int64_t planes, int64_t h, int64_t w, int64_t k, int64_t st) {
  int64_t ho = (h - k) / st + 1, wo = (w - k) / st + 1;
  for (int64_t p = 0; p < planes; p++)
    for (int64_t i = 0; i < ho; i++)
      for (int64_t j = 0; j < wo; j++) {
        double acc = 0;
        for (int64_t a = 0; a < k; a++)
          for (int64_t b = 0; b < k; b++) acc += x[(p * h + i * st + a) * w + j * st + b];
        y[(p * ho + i) * wo + j] = (float)(acc / (double)(k * k));
      }
}

/* Both ops are linear, so the adjoint identity <y, r> = <x, dx> (dx the
 * backward of r from zero) checks backward against the naive forward, and
 * backward accumulates when started from ones. */
static void check_pool(bool upsample, int64_t planes, int64_t h, int64_t w, int64_t a, int64_t b) {
  int64_t ho = upsample ? h * a : (h - a) / b + 1, wo = upsample ? w * a : (w - a) / b + 1;
  int64_t nx = planes * h * w, ny = planes * ho * wo;
  float *x = malloc(nx * sizeof *x), *y = malloc(ny * sizeof *y), *ry = malloc(ny * sizeof *ry);
  float *r = malloc(ny * sizeof *r), *dx = malloc(nx * sizeof *dx);
  fill_uniform(x, nx, 41), fill_uniform(r, ny, 42);
  if (upsample) {
    md_upsample_nearest_forward(x, y, planes, h, w, a, false);
    naive_upsample(x, ry, planes, h, w, a);
  } else {
    md_avg_pool2d_forward(x, y, planes, h, w, a, b);
    naive_avg_pool(x, ry, planes, h, w, a, b);
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
  float *ref = calloc(nx, sizeof *ref);
  for (int64_t p = 0; p < planes; p++)
    for (int64_t i = 0; i < ho; i++)
      for (int64_t j = 0; j < wo; j++) {
        float g = r[(p * ho + i) * wo + j];
        if (upsample) ref[(p * h + i / a) * w + j / a] += g;
        else
          for (int64_t u = 0; u < a; u++)
            for (int64_t v = 0; v < a; v++) ref[(p * h + i * b + u) * w + j * b + v] += g / (float)(a * a);
      }
  for (int64_t i = 0; i < nx; i++) ref[i] += 1.0f;
  ck_assert_close(dx, ref, nx, 1e-5, 1e-5);
  free(x), free(y), free(ry), free(r), free(dx), free(ref);
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

/* ---- linear against a naive reference ------------------------------------------------------ */

static void check_linear(int64_t rows, int64_t in, int64_t out, bool bias) {
  int64_t nx = rows * in, nw = out * in, ny = rows * out;
  float *x = calloc(nx + 1, sizeof *x), *w = calloc(nw + 1, sizeof *w), *b = calloc(out + 1, sizeof *b);
  float *y = calloc(ny + 1, sizeof *y), *ry = calloc(ny + 1, sizeof *ry), *dy = calloc(ny + 1, sizeof *dy);
  float *dx = calloc(nx + 1, sizeof *dx), *dw = calloc(nw + 1, sizeof *dw), *db = calloc(out + 1, sizeof *db);
  float *rdx = calloc(nx + 1, sizeof *rdx), *rdw = calloc(nw + 1, sizeof *rdw), *rdb = calloc(out + 1, sizeof *rdb);
  fill_uniform(x, nx, 51), fill_uniform(w, nw, 52), fill_uniform(b, out, 53), fill_uniform(dy, ny, 54);
  for (int64_t r = 0; r < rows; r++)
    for (int64_t o = 0; o < out; o++) {
      double acc = bias ? b[o] : 0;
      for (int64_t i = 0; i < in; i++) acc += (double)x[r * in + i] * w[o * in + i];
      ry[r * out + o] = (float)acc;
    }
  fill_uniform(y, ny, 99); /* garbage the kernel must overwrite */
  md_linear_forward(x, w, bias ? b : NULL, y, rows, in, out);
  ck_assert_close(y, ry, ny, 1e-5, 1e-4);
  for (int64_t i = 0; i < nx; i++) dx[i] = rdx[i] = 1.0f;
  for (int64_t i = 0; i < nw; i++) dw[i] = rdw[i] = 1.0f;
  for (int64_t i = 0; i < out; i++) db[i] = rdb[i] = 1.0f;
  for (int64_t r = 0; r < rows; r++)
    for (int64_t o = 0; o < out; o++) {
      float g = dy[r * out + o];
      rdb[o] += g;
      for (int64_t i = 0; i < in; i++) rdx[r * in + i] += g * w[o * in + i], rdw[o * in + i] += g * x[r * in + i];
    }
  md_linear_backward(x, w, dy, dx, dw, db, rows, in, out);
  ck_assert_close(dx, rdx, nx, 1e-5, 1e-4);
  ck_assert_close(dw, rdw, nw, 1e-5, 1e-4);
  ck_assert_close(db, rdb, out, 1e-5, 1e-4);
  free(x), free(w), free(b), free(y), free(ry), free(dy), free(dx), free(dw), free(db), free(rdx), free(rdw), free(rdb);
}

START_TEST(linear_matches_naive) {
  check_linear(5, 7, 3, true);
  check_linear(128, 32, 128, false);
  check_linear(3, 0, 4, true); /* no input features: the bias alone */
  check_linear(3, 0, 4, false);
  check_linear(0, 5, 4, true);
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

/* ---- argument errors ---------------------------------------------------------------------------- */

static void expect_error(int rc, const char *text) {
  ck_assert_int_eq(rc, MD_ERR);
  ck_assert_msg(strstr(md_errmsg(), text) != NULL, "error '%s' does not mention '%s'", md_errmsg(), text);
}

START_TEST(bad_arguments_give_specific_errors) {
  int64_t xs[4] = {1, 1, 5, 5}, ws[4] = {2, 1, 3, 3}, w0s[4] = {2, 1, 0, 0}, wrs[4] = {2, 1, 3, 1}, w3s[3] = {2, 1, 3};
  md_tensor *x = md_tensor_zeros(4, xs), *w = md_tensor_zeros(4, ws), *w0 = md_tensor_zeros(4, w0s);
  md_tensor *wr = md_tensor_zeros(4, wrs), *w3 = md_tensor_zeros(3, w3s), *y = NULL;
  expect_error(md_conv2d(&y, x, w0, NULL, 1, 0), "kernel size must be at least 1");
  expect_error(md_conv2d(&y, x, wr, NULL, 1, 0), "weight must be out x in x k x k");
  expect_error(md_conv2d(&y, x, w3, NULL, 1, 0), "weight must be out x in x k x k");
  expect_error(md_conv2d(&y, x, w, NULL, 0, 0), "stride must be in 1..65536, got 0");
  expect_error(md_conv2d(&y, x, w, NULL, INT64_C(1) << 62, 0), "stride must be in");
  expect_error(md_conv2d(&y, x, w, NULL, 1, -1), "padding must be in 0..65536, got -1");
  expect_error(md_conv2d(&y, x, w, NULL, 1, INT64_C(1) << 62), "padding must be in");
  int64_t ks[4] = {2, 1, 7, 7};
  md_tensor *wk = md_tensor_zeros(4, ks);
  expect_error(md_conv2d(&y, x, wk, NULL, 1, 0), "kernel 7 is larger than the padded input 5 x 5");
  ck_assert_int_eq(md_conv2d(&y, x, wk, NULL, 1, 1), MD_OK); /* 7 fits in 5 + 2 */
  md_tensor_release(y);
  expect_error(md_upsample_nearest(&y, x, 0), "scale must be a positive integer, got 0");
  expect_error(md_upsample_nearest(&y, x, INT64_C(1) << 40), "too large");
  expect_error(md_upsample_nearest(&y, w3, 2), "input must be N x C x H x W");
  expect_error(md_avg_pool2d(&y, x, 0, 1), "kernel and stride must be positive");
  expect_error(md_avg_pool2d(&y, x, 6, 6), "kernel 6 is larger than the input");
  expect_error(md_avg_pool2d(&y, w3, 2, 2), "input must be N x C x H x W");
  int64_t ls[2] = {3, 4};
  md_tensor *lw = md_tensor_zeros(2, ls);
  expect_error(md_linear(&y, x, lw, NULL), "linear: weight expects 4 input features, input has shape [1, 1, 5, 5]");
  expect_error(md_linear(&y, x, w, NULL), "linear: weight must be [out, in]");
  md_tensor_release(x), md_tensor_release(w), md_tensor_release(w0), md_tensor_release(wr), md_tensor_release(w3);
  md_tensor_release(wk), md_tensor_release(lw);
}
END_TEST

Suite *make_suite(void) {
  Suite *s = suite_create("conv and friends");
  TCase *tc = tcase_create("ops");
  tcase_set_timeout(tc, 120);
  tcase_add_test(tc, conv2d_gradients_match_finite_differences_im2col);
#ifdef MD_HAVE_DNNL
  tcase_add_test(tc, conv2d_gradients_match_finite_differences_dnnl);
  tcase_add_test(tc, dnnl_matches_im2col_at_unet_widths);
  tcase_add_test(tc, dnnl_winograd_matches_im2col);
  tcase_add_test(tc, dnnl_partial_gradients_touch_only_what_is_asked);
  tcase_add_test(tc, dnnl_cache_stays_bounded_and_correct);
#endif
  tcase_add_test(tc, conv2d_handles_empty_shapes_on_both_engines);
  tcase_add_test(tc, upsample_and_avg_pool_match_naive);
  tcase_add_test(tc, linear_matches_naive);
  tcase_add_test(tc, linear_with_no_input_features_is_the_bias);
  tcase_add_test(tc, bad_arguments_give_specific_errors);
  suite_add_tcase(s, tc);
  return s;
}
