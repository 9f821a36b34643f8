/* Kernels of the U-Net layers and the tensor ops against naive references:
 * group norm (forward and backward), attention (forward and backward),
 * broadcasting arithmetic, reductions, matmul. */
#include "autograd.h"
#include "ops/blocked.h"
#include "ops/linalg.h"
#include "ops/attention.h"
#include "ops/embedding.h"
#include "ops/norm.h"
#include "ops/pool.h"
#include "ops/softmax.h"
#include "ops/pointwise.h"
#include "ops/reduce.h"
#include "testutil.h"

/* ---- group norm ---------------------------------------------------------------------- */

static void naive_gn(const float *x, const float *shift, const float *w, const float *b, double *y, int64_t n,
                     int64_t c, int64_t hw, int64_t g, double eps) {
  int64_t cg = c / g;
  for (int64_t i = 0; i < n; i++)
    for (int64_t gi = 0; gi < g; gi++) {
      double s = 0, ss = 0;
      int64_t base = (i * c + gi * cg) * hw, len = cg * hw;
#define XS(j) ((double)x[base + (j)] + (shift ? shift[i * c + gi * cg + (j) / hw] : 0.0))
      for (int64_t j = 0; j < len; j++) s += XS(j);
      double mu = s / len;
      for (int64_t j = 0; j < len; j++) ss += (XS(j) - mu) * (XS(j) - mu);
      double r = 1 / sqrt(ss / len + eps);
      for (int64_t j = 0; j < len; j++) {
        int64_t ch = gi * cg + j / hw;
        y[base + j] = (XS(j) - mu) * r * w[ch] + b[ch];
      }
#undef XS
    }
}

typedef struct {
  float *x, *s, *w, *b, *r;
  int64_t n, c, hw, g;
  bool silu;
} gn_case;

static void naive_gn_act(const gn_case *k, double *y) {
  naive_gn(k->x, k->s, k->w, k->b, y, k->n, k->c, k->hw, k->g, 1e-5);
  if (k->silu)
    for (int64_t i = 0; i < k->n * k->c * k->hw; i++) y[i] = y[i] / (1 + exp(-y[i]));
}

/* sum(r * gn(x)) for finite differences */
static double gn_loss(void *p) {
  gn_case *k = p;
  int64_t total = k->n * k->c * k->hw;
  double *y = malloc(total * sizeof *y), acc = 0;
  naive_gn_act(k, y);
  for (int64_t i = 0; i < total; i++) acc += y[i] * k->r[i];
  free(y);
  return acc;
}

/* _i: bit 0 fuses SiLU, bit 1 adds a per-(image, channel) shift, bit 2 runs
 * the blocked layout (32 channels in 2 groups, so a group spans a block;
 * plain has 8 channels in 4 groups), bit 3 takes one image (fewer images
 * than threads: they share its tiles); hw = 37 leaves a tail after the
 * vector lanes. The kernels see blocked copies and their results are
 * unblocked before the comparison. */
START_TEST(group_norm_matches_naive_and_finite_differences) {
  bool blocked = _i & 4;
  gn_case k = {.n = _i & 8 ? 1 : 2, .c = blocked ? 32 : 8, .hw = 37, .g = blocked ? 2 : 4, .silu = _i & 1};
  int64_t total = k.n * k.c * k.hw;
  k.x = malloc(total * 4), k.r = malloc(total * 4), k.w = malloc(k.c * 4), k.b = malloc(k.c * 4);
  k.s = _i & 2 ? malloc(k.n * k.c * 4) : NULL;
  fill_uniform(k.x, total, 1), fill_uniform(k.r, total, 2), fill_uniform(k.w, k.c, 3), fill_uniform(k.b, k.c, 4);
  if (k.s) fill_uniform(k.s, k.n * k.c, 7);
  float *y = malloc(total * 4), *mean = malloc(k.n * k.g * 4), *rstd = malloc(k.n * k.g * 4), *fy = malloc(total * 4);
  float *kx = malloc(total * 4), *kr = malloc(total * 4), *ky = malloc(total * 4), *kdx = calloc(total, 4);
  double *ry = malloc(total * sizeof *ry);
  if (blocked) md_block_kernel(k.x, kx, k.n, k.c, k.hw, false), md_block_kernel(k.r, kr, k.n, k.c, k.hw, false);
  else memcpy(kx, k.x, total * 4), memcpy(kr, k.r, total * 4);
  ck_assert_int_eq(md_group_norm_forward(kx, k.s, k.w, k.b, ky, mean, rstd, k.n, k.c, k.hw, k.g, 1e-5f, k.silu, blocked),
                   MD_OK);
  if (blocked) md_unblock_kernel(ky, y, k.n, k.c, k.hw, false);
  else memcpy(y, ky, total * 4);
  naive_gn_act(&k, ry);
  for (int64_t i = 0; i < total; i++) fy[i] = (float)ry[i];
  ck_assert_close(y, fy, total, 1e-5, 1e-4);
  float *dx = calloc(total, 4), *dw = calloc(k.c, 4), *db = calloc(k.c, 4), *ds = calloc(k.n * k.c, 4);
  ck_assert_int_eq(md_group_norm_backward(kx, k.s, k.w, k.b, mean, rstd, kr, kdx, k.s ? ds : NULL, dw, db, k.n, k.c,
                                          k.hw, k.g, k.silu, blocked, false),
                   MD_OK);
  if (blocked) md_unblock_kernel(kdx, dx, k.n, k.c, k.hw, false);
  else memcpy(dx, kdx, total * 4);
  /* overwriting a fresh buffer gives what accumulating from zero gave */
  float *kdx2 = malloc(total * 4), *dw2 = calloc(k.c, 4), *db2 = calloc(k.c, 4);
  for (int64_t i = 0; i < total; i++) kdx2[i] = NAN;
  ck_assert_int_eq(md_group_norm_backward(kx, k.s, k.w, k.b, mean, rstd, kr, kdx2, NULL, dw2, db2, k.n, k.c, k.hw, k.g,
                                          k.silu, blocked, true),
                   MD_OK);
  ck_assert_close(kdx2, kdx, total, 1e-7, 1e-6);
  free(kdx2), free(dw2), free(db2);
  ck_assert(grad_check(gn_loss, &k, k.x, dx, total, 1e-2f, 50) <= 1.0);
  ck_assert(grad_check(gn_loss, &k, k.w, dw, k.c, 1e-2f, 50) <= 1.0);
  ck_assert(grad_check(gn_loss, &k, k.b, db, k.c, 1e-2f, 50) <= 1.0);
  if (k.s) ck_assert(grad_check(gn_loss, &k, k.s, ds, k.n * k.c, 1e-2f, 50) <= 1.0);
  free(k.x), free(k.s), free(k.r), free(k.w), free(k.b), free(y), free(mean), free(rstd), free(fy), free(ry);
  free(dx), free(dw), free(db), free(ds), free(kx), free(kr), free(ky), free(kdx);
}
END_TEST

/* The layout conversions are inverse permutations: block then unblock is
 * the identity, and blocked element (n, c, p) sits at ((n C/16 + c/16) hw + p) 16 + c%16. */
START_TEST(block_and_unblock_are_inverse_permutations) {
  int64_t n = 2, c = 32, hw = 5, total = n * c * hw;
  float *x = malloc(total * 4), *bl = malloc(total * 4), *back = malloc(total * 4);
  fill_uniform(x, total, 9);
  md_block_kernel(x, bl, n, c, hw, false);
  for (int64_t i = 0; i < n; i++)
    for (int64_t ch = 0; ch < c; ch++)
      for (int64_t p = 0; p < hw; p++)
        ck_assert_float_eq(bl[((i * (c / 16) + ch / 16) * hw + p) * 16 + ch % 16], x[(i * c + ch) * hw + p]);
  md_unblock_kernel(bl, back, n, c, hw, false);
  for (int64_t i = 0; i < total; i++) ck_assert_float_eq(back[i], x[i]);
  md_unblock_kernel(bl, back, n, c, hw, true); /* accumulating doubles it */
  for (int64_t i = 0; i < total; i++) ck_assert_float_eq(back[i], 2 * x[i]);
  free(x), free(bl), free(back);
}
END_TEST

/* ---- attention --------------------------------------------------------------------- */

typedef struct {
  float *qkv, *r;
  int64_t n, heads, d, l;
} attn_case;

static void naive_attention(const float *qkv, double *out, int64_t n, int64_t heads, int64_t d, int64_t l) {
  int64_t c = heads * d;
  double *p = malloc(l * sizeof *p);
  for (int64_t i = 0; i < n; i++)
    for (int64_t h = 0; h < heads; h++) {
      const float *q = qkv + (i * 3 * c + h * d) * l, *k = q + c * l, *v = q + 2 * c * l;
      for (int64_t t = 0; t < l; t++) {
        double m = -1e300, s = 0;
        for (int64_t u = 0; u < l; u++) {
          double a = 0;
          for (int64_t ch = 0; ch < d; ch++) a += (double)q[ch * l + t] * k[ch * l + u];
          p[u] = a / sqrt((double)d);
          if (p[u] > m) m = p[u];
        }
        for (int64_t u = 0; u < l; u++) s += p[u] = exp(p[u] - m);
        for (int64_t ch = 0; ch < d; ch++) {
          double acc = 0;
          for (int64_t u = 0; u < l; u++) acc += p[u] / s * v[ch * l + u];
          out[(i * c + h * d + ch) * l + t] = acc;
        }
      }
    }
  free(p);
}

static double attn_loss(void *p) {
  attn_case *k = p;
  int64_t total = k->n * k->heads * k->d * k->l;
  double *y = malloc(total * sizeof *y), acc = 0;
  naive_attention(k->qkv, y, k->n, k->heads, k->d, k->l);
  for (int64_t i = 0; i < total; i++) acc += y[i] * k->r[i];
  free(y);
  return acc;
}

START_TEST(attention_matches_naive_and_finite_differences) {
  attn_case k = {.n = 2, .heads = 2, .d = 4, .l = 9};
  int64_t nin = k.n * 3 * k.heads * k.d * k.l, nout = nin / 3;
  k.qkv = malloc(nin * 4), k.r = malloc(nout * 4);
  fill_uniform(k.qkv, nin, 5), fill_uniform(k.r, nout, 6);
  float *y = malloc(nout * 4), *probs = malloc(k.n * k.heads * k.l * k.l * 4), *fy = malloc(nout * 4);
  double *ry = malloc(nout * sizeof *ry);
  md_attention_forward(k.qkv, y, probs, k.n, k.heads, k.d, k.l);
  naive_attention(k.qkv, ry, k.n, k.heads, k.d, k.l);
  for (int64_t i = 0; i < nout; i++) fy[i] = (float)ry[i];
  ck_assert_close(y, fy, nout, 1e-5, 1e-4);
  float *dqkv = calloc(nin, 4);
  md_attention_backward(k.qkv, probs, k.r, dqkv, k.n, k.heads, k.d, k.l, false);
  ck_assert(grad_check(attn_loss, &k, k.qkv, dqkv, nin, 1e-2f, 80) <= 1.0);
  float *fresh = malloc(nin * 4); /* overwriting gives what adding to zeros gave */
  for (int64_t i = 0; i < nin; i++) fresh[i] = NAN;
  md_attention_backward(k.qkv, probs, k.r, fresh, k.n, k.heads, k.d, k.l, true);
  ck_assert_close(fresh, dqkv, nin, 1e-6, 1e-5);
  free(fresh);
  free(k.qkv), free(k.r), free(y), free(probs), free(fy), free(ry), free(dqkv);
}
END_TEST

/* ---- tensor ops ------------------------------------------------------------------------ */

static md_tensor *filled(int nd, const int64_t *shape, uint32_t seed) {
  md_tensor *t = md_tensor_new(nd, shape);
  fill_uniform(md_data(t), t->numel, seed);
  return t;
}

START_TEST(broadcast_binary_matches_naive) {
  int64_t sa[4] = {2, 3, 1, 4}, sb[3] = {3, 5, 1};
  md_tensor *a = filled(4, sa, 1), *b = filled(3, sb, 2), *y;
  ck_assert_int_eq(md_binary(&y, MD_MUL, a, b), MD_OK);
  ck_assert_int_eq(y->ndim, 4);
  ck_assert_int_eq(y->shape[2], 5);
  const float *pa = md_data(a), *pb = md_data(b), *py = md_data(y);
  for (int i = 0; i < 2; i++)
    for (int j = 0; j < 3; j++)
      for (int k = 0; k < 5; k++)
        for (int l = 0; l < 4; l++)
          ck_assert_float_eq(py[((i * 3 + j) * 5 + k) * 4 + l], pa[(i * 3 + j) * 4 + l] * pb[j * 5 + k]);
  md_tensor_release(y);
  int64_t sc[1] = {7};
  md_tensor *c = filled(1, sc, 3);
  ck_assert_int_eq(md_binary(&y, MD_ADD, a, c), MD_ERR);
  ck_assert_ptr_nonnull(strstr(md_errmsg(), "cannot broadcast"));
  md_tensor_release(a), md_tensor_release(b), md_tensor_release(c);
}
END_TEST

START_TEST(reductions_match_naive) {
  int64_t s[3] = {3, 50, 4};
  md_tensor *x = filled(3, s, 4), *y;
  const float *px = md_data(x);
  ck_assert_int_eq(md_reduce(&y, MD_VAR, x, false, 1, false, 1), MD_OK);
  for (int o = 0; o < 3; o++)
    for (int i = 0; i < 4; i++) {
      double m = 0, v = 0;
      for (int j = 0; j < 50; j++) m += px[(o * 50 + j) * 4 + i];
      m /= 50;
      for (int j = 0; j < 50; j++) v += (px[(o * 50 + j) * 4 + i] - m) * (px[(o * 50 + j) * 4 + i] - m);
      ck_assert_double_eq_tol(md_data(y)[o * 4 + i], v / 49, 1e-5);
    }
  md_tensor_release(y);
  md_tensor *ix;
  ck_assert_int_eq(md_max(&y, &ix, x, true, 0, false, false), MD_OK);
  float best = px[0];
  for (int64_t i = 1; i < x->numel; i++) best = fmaxf(best, px[i]);
  ck_assert_float_eq(md_data(y)[0], best);
  ck_assert_float_eq(px[(int64_t)md_data(ix)[0]], best);
  md_tensor_release(y), md_tensor_release(ix), md_tensor_release(x);
}
END_TEST

START_TEST(matmul_matches_naive) {
  int64_t sa[3] = {2, 5, 7}, sb[3] = {2, 7, 3};
  md_tensor *a = filled(3, sa, 7), *b = filled(3, sb, 8), *y;
  ck_assert_int_eq(md_matmul(&y, a, b), MD_OK);
  for (int bt = 0; bt < 2; bt++)
    for (int i = 0; i < 5; i++)
      for (int j = 0; j < 3; j++) {
        double acc = 0;
        for (int k = 0; k < 7; k++) acc += (double)md_data(a)[(bt * 5 + i) * 7 + k] * md_data(b)[(bt * 7 + k) * 3 + j];
        ck_assert_double_eq_tol(md_data(y)[(bt * 5 + i) * 3 + j], acc, 1e-5);
      }
  md_tensor_release(y), md_tensor_release(a), md_tensor_release(b);
}
END_TEST

Suite *make_suite(void) {
  Suite *s = suite_create("layers");
  TCase *tc = tcase_create("kernels");
  tcase_set_timeout(tc, 60);
  tcase_add_loop_test(tc, group_norm_matches_naive_and_finite_differences, 0, 16);
  tcase_add_test(tc, block_and_unblock_are_inverse_permutations);
  tcase_add_test(tc, attention_matches_naive_and_finite_differences);
  tcase_add_test(tc, broadcast_binary_matches_naive);
  tcase_add_test(tc, reductions_match_naive);
  tcase_add_test(tc, matmul_matches_naive);
  suite_add_tcase(s, tc);
  return s;
}
