/* Mirrors csrc/ops/conv.c and its two engines, csrc/backend/conv_im2col.c
 * and csrc/backend/conv_dnnl.c: each engine's kernels against
 * naive_conv2d_forward / naive_conv2d_backward over the U-Net's shapes; the
 * tensor-level conv2d against finite differences on both engines; oneDNN
 * against im2col at the U-Net's widths (both algorithms, blocked layouts,
 * partial gradients); empty shapes; the primitive cache's bound; argument
 * errors. */
#include "backend/conv_dnnl.h"
#include "backend/conv_im2col.h"
#include "layout.h"
#include "ops/conv.h"
#include "testutil.h"

static md_conv_shape conv_shape(int64_t n, int64_t c, int64_t h, int64_t w, int64_t o, int64_t k, int64_t stride,
                                int64_t pad) {
  md_conv_shape s = {.n = n, .c = c, .h = h, .w = w, .o = o, .k = k, .stride = stride, .pad = pad};
  s.ho = (h + 2 * pad - k) / stride + 1;
  s.wo = (w + 2 * pad - k) / stride + 1;
  return s;
}

/* ---- each engine's kernels against the naive convolution ------------------------------- */

typedef int (*forward_fn)(const md_conv_shape *s, const float *x, const float *w, const float *b, float *y);
typedef int (*backward_fn)(const md_conv_shape *s, const float *x, const float *w, const float *dy, float *dx,
                           float *dw, float *db);
static forward_fn engine_forward = md_conv2d_im2col_forward;
static backward_fn engine_backward = md_conv2d_im2col_backward;
/* the bf16 engine rounds x, w and dy to bfloat16 and sums in fp32: its
 * reference is the naive convolution of the rounded inputs */
static bool engine_rounds_bf16 = false;

/* round to nearest even at 8 mantissa bits (inputs here are finite) */
static float to_bf16(float v) {
  uint32_t u;
  memcpy(&u, &v, sizeof u);
  u = (u + 0x7fff + ((u >> 16) & 1)) & 0xffff0000u;
  memcpy(&v, &u, sizeof v);
  return v;
}

static float *rounded_copy(const float *p, int64_t n) {
  float *r = malloc(n * sizeof *r);
  for (int64_t i = 0; i < n; i++) r[i] = engine_rounds_bf16 ? to_bf16(p[i]) : p[i];
  return r;
}

static void check_shape(int64_t n, int64_t c, int64_t h, int64_t o, int64_t k, int64_t stride, int64_t pad) {
  md_conv_shape s = conv_shape(n, c, h, h, o, k, stride, pad);
  int64_t nx = n * c * h * h, nw = o * c * k * k, ny = n * o * s.ho * s.wo;
  float *x = malloc(nx * sizeof *x), *w = malloc(nw * sizeof *w), *b = malloc(o * sizeof *b);
  float *y = malloc(ny * sizeof *y), *dy = malloc(ny * sizeof *dy);
  float *dx = calloc(nx, sizeof *dx), *dw = calloc(nw, sizeof *dw), *db = calloc(o, sizeof *db);
  double *ry = calloc(ny, sizeof *ry), *rdx = calloc(nx, sizeof *rdx), *rdw = calloc(nw, sizeof *rdw),
         *rdb = calloc(o, sizeof *rdb);
  fill_uniform(x, nx, 1), fill_uniform(w, nw, 2), fill_uniform(b, o, 3), fill_uniform(dy, ny, 4);
  float *rx = rounded_copy(x, nx), *rw = rounded_copy(w, nw), *rdy = rounded_copy(dy, ny);
  naive_conv2d_forward(&s, rx, rw, b, ry);
  naive_conv2d_backward(&s, rx, rw, rdy, rdx, rdw, rdb);
  free(rx), free(rw), free(rdy);
  float *fy = naive_to_float(ry, ny), *fdx = naive_to_float(rdx, nx), *fdw = naive_to_float(rdw, nw), *fdb = naive_to_float(rdb, o);
  ck_assert_int_eq(engine_forward(&s, x, w, b, y), MD_OK);
  ck_assert_close(y, fy, ny, 1e-4, 1e-4);
  /* backward accumulates: start from 1 and expect 1 + reference */
  for (int64_t i = 0; i < nx; i++) dx[i] = 1.0f, fdx[i] += 1.0f;
  ck_assert_int_eq(engine_backward(&s, x, w, dy, dx, dw, db), MD_OK);
  ck_assert_close(dx, fdx, nx, 1e-4, 1e-4);
  ck_assert_close(dw, fdw, nw, 1e-3, 1e-4);
  ck_assert_close(db, fdb, o, 1e-3, 1e-4);
  free(x), free(w), free(b), free(y), free(dy), free(dx), free(dw), free(db);
  free(ry), free(rdx), free(rdw), free(rdb), free(fy), free(fdx), free(fdw), free(fdb);
}

static void check_unet_shapes(void) {
  check_shape(2, 3, 28, 4, 3, 1, 1);  /* input conv */
  check_shape(2, 4, 28, 4, 3, 2, 1);  /* downsample 28 -> 14 */
  check_shape(3, 5, 7, 6, 3, 1, 1);   /* 7x7 level */
  check_shape(2, 6, 7, 18, 1, 1, 0);  /* 1x1 qkv / skip */
  check_shape(1, 2, 9, 3, 3, 2, 0);   /* odd size, no padding */
  check_shape(2, 3, 5, 2, 5, 1, 2);   /* larger kernel */
}

START_TEST(im2col_matches_naive_unet_shapes) {
  engine_forward = md_conv2d_im2col_forward;
  engine_backward = md_conv2d_im2col_backward;
  check_unet_shapes();
}
END_TEST

#ifdef MD_HAVE_DNNL
static int dnnl_forward(const md_conv_shape *s, const float *x, const float *w, const float *b, float *y) {
  return md_dnnl_conv_forward(s, true, false, x, w, b, y);
}
static int dnnl_backward(const md_conv_shape *s, const float *x, const float *w, const float *dy, float *dx,
                         float *dw, float *db) {
  return md_dnnl_conv_backward(s, true, false, x, w, dy, dx, dw, db, false, false);
}
static int bf16_forward(const md_conv_shape *s, const float *x, const float *w, const float *b, float *y) {
  return md_dnnl_conv_forward(s, false, true, x, w, b, y);
}
static int bf16_backward(const md_conv_shape *s, const float *x, const float *w, const float *dy, float *dx,
                         float *dw, float *db) {
  return md_dnnl_conv_backward(s, false, true, x, w, dy, dx, dw, db, false, false);
}

/* Only where oneDNN has bf16 kernels (AVX512_BF16); elsewhere it would run
 * its reference kernel, which md.set_precision refuses. */
START_TEST(dnnl_bf16_matches_naive_on_rounded_inputs) {
  md_conv_shape probe = conv_shape(1, 16, 8, 8, 16, 3, 1, 1);
  const char *impl = md_dnnl_conv_impl(&probe, false, true);
  if (!impl || !strstr(impl, "bf16")) return;
  engine_forward = bf16_forward;
  engine_backward = bf16_backward;
  engine_rounds_bf16 = true;
  check_unet_shapes();
  engine_rounds_bf16 = false;
  md_dnnl_conv_clear_cache();
}
END_TEST

START_TEST(dnnl_matches_naive_unet_shapes) {
  engine_forward = dnnl_forward;
  engine_backward = dnnl_backward;
  check_unet_shapes();
  check_unet_shapes(); /* again, through the primitive cache */
  md_dnnl_conv_clear_cache();
}
END_TEST
#endif

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
  conv_ctx c = {filled(4, xs, 11, -1, 1), filled(4, ws, 12, -1, 1), filled(1, bs, 13, -1, 1), NULL, stride, pad};
  c.x->requires_grad = c.w->requires_grad = c.b->requires_grad = true;
  md_tensor *y = NULL;
  ck_assert_int_eq(md_conv2d(&y, c.x, c.w, c.b, stride, pad), MD_OK);
  c.r = filled(y->ndim, y->shape, 14, -1, 1);
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
  ck_assert_int_eq(md_dnnl_conv_forward(&d, winograd, false, xl, w, bias ? b : NULL, yl), MD_OK);
  ck_assert_int_eq(md_dnnl_conv_backward(&d, winograd, false, xl, w, dyl, want_dx ? dxl : NULL, want_dw ? dw[1] : NULL,
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
    const char *impl = md_dnnl_conv_impl(&shapes[i], true, false);
    ck_assert_ptr_nonnull(impl);
    if (__builtin_cpu_supports("avx512f"))
      ck_assert_msg(strstr(impl, "wino") != NULL, "expected a Winograd kernel, oneDNN chose %s", impl);
    ck_assert_ptr_null(strstr(md_dnnl_conv_impl(&shapes[i], false, false), "wino"));
    compare_engines_with(shapes[i], true, true, true, true, true, true, true, false);
    compare_engines_with(shapes[i], true, true, true, true, true, true, true, true);
  }
  md_conv_shape small = conv_shape(1, 32, 28, 28, 32, 3, 1, 1); /* batch 1: the direct kernel is faster */
  ck_assert_ptr_null(strstr(md_dnnl_conv_impl(&small, true, false), "wino"));
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
      ck_assert_int_eq(md_dnnl_conv_forward(&s, true, false, x, w, NULL, y1), MD_OK);
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

/* ---- argument errors ---------------------------------------------------------------------------- */

static void expect_error(int rc, const char *text) {
  ck_assert_int_eq(rc, MD_ERR);
  ck_assert_msg(strstr(md_errmsg(), text) != NULL, "error '%s' does not mention '%s'", md_errmsg(), text);
}

START_TEST(conv2d_bad_arguments_give_specific_errors) {
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
  md_tensor_release(x), md_tensor_release(w), md_tensor_release(w0), md_tensor_release(wr), md_tensor_release(w3);
  md_tensor_release(wk);
  /* channels and bias that do not match */
  int64_t x3s[4] = {1, 3, 5, 5}, w1s[4] = {4, 1, 3, 3}, w33s[4] = {4, 3, 3, 3}, b5s[1] = {5}, xn3[3] = {3, 5, 5};
  md_tensor *x3 = md_tensor_zeros(4, x3s), *w1 = md_tensor_zeros(4, w1s), *w33 = md_tensor_zeros(4, w33s);
  md_tensor *b5 = md_tensor_zeros(1, b5s), *xbad = md_tensor_zeros(3, xn3);
  ck_assert_int_eq(md_conv2d(&y, x3, w1, NULL, 1, 1), MD_ERR);
  ck_assert_ptr_nonnull(strstr(md_errmsg(), "weight expects 1 input channels, input has 3"));
  ck_assert_int_eq(md_conv2d(&y, xbad, w1, NULL, 1, 1), MD_ERR);
  ck_assert_int_eq(md_conv2d(&y, x3, w33, b5, 1, 1), MD_ERR);
  ck_assert_ptr_nonnull(strstr(md_errmsg(), "bias must have 4 elements"));
  ck_assert_int_eq(md_conv2d(&y, x3, w33, NULL, 0, 1), MD_ERR);
  ck_assert_int_eq(md_conv2d(&y, x3, w33, NULL, 1, 1), MD_OK);
  ck_assert_int_eq(y->shape[1], 4);
  md_tensor_release(y);
  md_tensor_release(x3), md_tensor_release(w1), md_tensor_release(w33), md_tensor_release(b5), md_tensor_release(xbad);
}
END_TEST

Suite *make_suite(void) {
  Suite *s = suite_create("conv");
  TCase *tc = tcase_create("ops");
  tcase_set_timeout(tc, 120);
  tcase_add_test(tc, im2col_matches_naive_unet_shapes);
#ifdef MD_HAVE_DNNL
  tcase_add_test(tc, dnnl_matches_naive_unet_shapes);
#endif
  tcase_add_test(tc, conv2d_gradients_match_finite_differences_im2col);
#ifdef MD_HAVE_DNNL
  tcase_add_test(tc, conv2d_gradients_match_finite_differences_dnnl);
  tcase_add_test(tc, dnnl_matches_im2col_at_unet_widths);
  tcase_add_test(tc, dnnl_winograd_matches_im2col);
  tcase_add_test(tc, dnnl_bf16_matches_naive_on_rounded_inputs);
  tcase_add_test(tc, dnnl_partial_gradients_touch_only_what_is_asked);
  tcase_add_test(tc, dnnl_cache_stays_bounded_and_correct);
#endif
  tcase_add_test(tc, conv2d_handles_empty_shapes_on_both_engines);
  tcase_add_test(tc, conv2d_bad_arguments_give_specific_errors);
  suite_add_tcase(s, tc);
  return s;
}
