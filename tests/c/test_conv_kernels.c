/* Convolution: the im2col + SGEMM engine (and oneDNN when built in) against a
 * naive direct convolution, forward and both backward passes, over the
 * U-Net's shapes; and the tensor-level op's argument checks. */
#include "autograd.h"
#include "backend/conv_dnnl.h"
#include "backend/conv_im2col.h"
#include "ops/conv.h"
#include "testutil.h"

static void naive_forward(const md_conv_shape *s, const float *x, const float *w, const float *b, double *y) {
  for (int64_t n = 0; n < s->n; n++)
    for (int64_t o = 0; o < s->o; o++)
      for (int64_t oy = 0; oy < s->ho; oy++)
        for (int64_t ox = 0; ox < s->wo; ox++) {
          double acc = b ? b[o] : 0;
          for (int64_t c = 0; c < s->c; c++)
            for (int64_t i = 0; i < s->k; i++)
              for (int64_t j = 0; j < s->k; j++) {
                int64_t iy = oy * s->stride + i - s->pad, ix = ox * s->stride + j - s->pad;
                if (iy >= 0 && iy < s->h && ix >= 0 && ix < s->w)
                  acc += (double)x[((n * s->c + c) * s->h + iy) * s->w + ix] * w[((o * s->c + c) * s->k + i) * s->k + j];
              }
          y[((n * s->o + o) * s->ho + oy) * s->wo + ox] = acc;
        }
}

/* the adjoint of naive_forward, written as the same loop nest */
static void naive_backward(const md_conv_shape *s, const float *x, const float *w, const float *dy, double *dx,
                           double *dw, double *db) {
  for (int64_t n = 0; n < s->n; n++)
    for (int64_t o = 0; o < s->o; o++)
      for (int64_t oy = 0; oy < s->ho; oy++)
        for (int64_t ox = 0; ox < s->wo; ox++) {
          double g = dy[((n * s->o + o) * s->ho + oy) * s->wo + ox];
          db[o] += g;
          for (int64_t c = 0; c < s->c; c++)
            for (int64_t i = 0; i < s->k; i++)
              for (int64_t j = 0; j < s->k; j++) {
                int64_t iy = oy * s->stride + i - s->pad, ix = ox * s->stride + j - s->pad;
                if (iy < 0 || iy >= s->h || ix < 0 || ix >= s->w) continue;
                int64_t xi = ((n * s->c + c) * s->h + iy) * s->w + ix, wi = ((o * s->c + c) * s->k + i) * s->k + j;
                dx[xi] += g * w[wi];
                dw[wi] += g * x[xi];
              }
        }
}

static float *to_float(const double *d, int64_t n) {
  float *f = malloc((size_t)n * sizeof *f);
  for (int64_t i = 0; i < n; i++) f[i] = (float)d[i];
  return f;
}

typedef int (*forward_fn)(const md_conv_shape *s, const float *x, const float *w, const float *b, float *y);
typedef int (*backward_fn)(const md_conv_shape *s, const float *x, const float *w, const float *dy, float *dx,
                           float *dw, float *db);
static forward_fn engine_forward = md_conv2d_im2col_forward;
static backward_fn engine_backward = md_conv2d_im2col_backward;

static void check_shape(int64_t n, int64_t c, int64_t h, int64_t o, int64_t k, int64_t stride, int64_t pad) {
  md_conv_shape s = {.n = n, .c = c, .h = h, .w = h, .o = o, .k = k, .stride = stride, .pad = pad};
  s.ho = (h + 2 * pad - k) / stride + 1;
  s.wo = s.ho;
  int64_t nx = n * c * h * h, nw = o * c * k * k, ny = n * o * s.ho * s.wo;
  float *x = malloc(nx * sizeof *x), *w = malloc(nw * sizeof *w), *b = malloc(o * sizeof *b);
  float *y = malloc(ny * sizeof *y), *dy = malloc(ny * sizeof *dy);
  float *dx = calloc(nx, sizeof *dx), *dw = calloc(nw, sizeof *dw), *db = calloc(o, sizeof *db);
  double *ry = calloc(ny, sizeof *ry), *rdx = calloc(nx, sizeof *rdx), *rdw = calloc(nw, sizeof *rdw),
         *rdb = calloc(o, sizeof *rdb);
  fill_uniform(x, nx, 1), fill_uniform(w, nw, 2), fill_uniform(b, o, 3), fill_uniform(dy, ny, 4);
  naive_forward(&s, x, w, b, ry);
  naive_backward(&s, x, w, dy, rdx, rdw, rdb);
  float *fy = to_float(ry, ny), *fdx = to_float(rdx, nx), *fdw = to_float(rdw, nw), *fdb = to_float(rdb, o);
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
  return md_dnnl_conv_forward(s, true, x, w, b, y);
}
static int dnnl_backward(const md_conv_shape *s, const float *x, const float *w, const float *dy, float *dx,
                         float *dw, float *db) {
  return md_dnnl_conv_backward(s, true, x, w, dy, dx, dw, db, false, false);
}

START_TEST(dnnl_matches_naive_unet_shapes) {
  engine_forward = dnnl_forward;
  engine_backward = dnnl_backward;
  check_unet_shapes();
  check_unet_shapes(); /* again, through the primitive cache */
  md_dnnl_conv_clear_cache();
}
END_TEST
#endif

START_TEST(conv2d_rejects_bad_arguments) {
  int64_t xs[4] = {1, 3, 5, 5}, ws[4] = {4, 1, 3, 3}, bs[1] = {5}, x3[3] = {3, 5, 5};
  md_tensor *x = md_tensor_zeros(4, xs), *w = md_tensor_zeros(4, ws), *b = md_tensor_zeros(1, bs);
  md_tensor *xbad = md_tensor_zeros(3, x3), *y = NULL;
  ck_assert_int_eq(md_conv2d(&y, x, w, NULL, 1, 1), MD_ERR);
  ck_assert_ptr_nonnull(strstr(md_errmsg(), "weight expects 1 input channels, input has 3"));
  ck_assert_int_eq(md_conv2d(&y, xbad, w, NULL, 1, 1), MD_ERR);
  ws[1] = 3;
  md_tensor *w3 = md_tensor_zeros(4, ws);
  ck_assert_int_eq(md_conv2d(&y, x, w3, b, 1, 1), MD_ERR);
  ck_assert_ptr_nonnull(strstr(md_errmsg(), "bias must have 4 elements"));
  ck_assert_int_eq(md_conv2d(&y, x, w3, NULL, 0, 1), MD_ERR);
  ck_assert_int_eq(md_conv2d(&y, x, w3, NULL, 1, 1), MD_OK);
  ck_assert_int_eq(y->shape[1], 4);
  md_tensor_release(y);
  md_tensor_release(x), md_tensor_release(w), md_tensor_release(w3), md_tensor_release(b), md_tensor_release(xbad);
}
END_TEST

Suite *make_suite(void) {
  Suite *s = suite_create("conv");
  TCase *tc = tcase_create("kernels");
  tcase_set_timeout(tc, 60);
  tcase_add_test(tc, im2col_matches_naive_unet_shapes);
#ifdef MD_HAVE_DNNL
  tcase_add_test(tc, dnnl_matches_naive_unet_shapes);
#endif
  tcase_add_test(tc, conv2d_rejects_bad_arguments);
  suite_add_tcase(s, tc);
  return s;
}
