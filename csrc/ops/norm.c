/* Group normalisation: statistics per (image, group) over C/G channels and
 * all positions; per-channel affine; optionally a per-(image, channel)
 * shift added to the input first (the ResBlock's embedding) and SiLU fused
 * on top, so that silu(group_norm(h + emb)) is one pass forward and one
 * backward. Rows of one channel are summed in float by vector lanes, rows
 * into doubles; the per-channel parameter gradients are reduced over images
 * in a fixed order, so results do not depend on the thread count. */
#include <math.h>
#include <stdlib.h>

#include "../autograd.h"
#include "nn.h"
#include "vmath.h"

static inline float row_sum(const float *x, int64_t n) {
  float s = 0;
#pragma omp simd reduction(+ : s)
  for (int64_t i = 0; i < n; i++) s += x[i];
  return s;
}

/* sum of (x[i] - m)^2 */
static inline float row_centered_squares(const float *x, int64_t n, float m) {
  float s = 0;
#pragma omp simd reduction(+ : s)
  for (int64_t i = 0; i < n; i++) s += (x[i] - m) * (x[i] - m);
  return s;
}

void md_group_norm_forward(const float *x, const float *shift, const float *w, const float *b, float *y,
                           float *mean, float *rstd, int64_t n, int64_t c, int64_t hw, int64_t groups, float eps,
                           bool silu) {
  int64_t cg = c / groups, len = cg * hw;
#pragma omp parallel for schedule(static)
  for (int64_t ng = 0; ng < n * groups; ng++) {
    int64_t img = ng / groups, c0 = (ng % groups) * cg;
    const float *xg = x + ng * len, *sg = shift ? shift + img * c + c0 : NULL;
    double s = 0, ss = 0;
    for (int64_t ci = 0; ci < cg; ci++) s += (double)row_sum(xg + ci * hw, hw) + (sg ? (double)sg[ci] * hw : 0.0);
    float mu = (float)(s / (double)len);
    for (int64_t ci = 0; ci < cg; ci++) ss += row_centered_squares(xg + ci * hw, hw, mu - (sg ? sg[ci] : 0.0f));
    float r = (float)(1.0 / sqrt(ss / (double)len + eps));
    mean[ng] = mu;
    rstd[ng] = r;
    for (int64_t ci = 0; ci < cg; ci++) {
      int64_t ch = c0 + ci;
      /* y = ((x + shift) - mu) * r * w + b = x * a + sh */
      float a = r * (w ? w[ch] : 1.0f), sh = (b ? b[ch] : 0.0f) + ((sg ? sg[ci] : 0.0f) - mu) * a;
      const float *xc = xg + ci * hw;
      float *yc = y + ng * len + ci * hw;
      if (silu) {
#pragma omp simd
        for (int64_t i = 0; i < hw; i++) {
          float z = xc[i] * a + sh;
          yc[i] = z * md_sigmoidf(z);
        }
      } else {
#pragma omp simd
        for (int64_t i = 0; i < hw; i++) yc[i] = xc[i] * a + sh;
      }
    }
  }
}

/* With silu, dy is first taken through the activation: z = xhat * w + b is
 * recomputed and dz = dy * s (1 + z (1 - s)), s = sigmoid(z), into a
 * per-thread buffer of one group (it stays in cache for the second pass).
 * Then dx = rstd (dz w - mean(dz w) - xhat mean(dz w xhat)) over the group,
 * and dshift is the sum of dx over each channel's positions. */
int md_group_norm_backward(const float *x, const float *shift, const float *w, const float *b, const float *mean,
                           const float *rstd, const float *dy, float *dx, float *dshift, float *dw, float *db,
                           int64_t n, int64_t c, int64_t hw, int64_t groups, bool silu) {
  int64_t cg = c / groups, len = cg * hw;
  double *sdy = calloc((size_t)(n * c + 1), sizeof *sdy), *sdyx = calloc((size_t)(n * c + 1), sizeof *sdyx);
  if (!sdy || !sdyx) {
    free(sdy), free(sdyx);
    return md_error("group_norm backward: out of memory");
  }
  bool failed = false;
#pragma omp parallel
  {
    float *dz = silu ? malloc((size_t)(len + 1) * sizeof(float)) : NULL;
    if (silu && !dz) {
#pragma omp atomic write
      failed = true;
    }
#pragma omp for schedule(static)
    for (int64_t ng = 0; ng < n * groups; ng++) {
      if (silu && !dz) continue;
      int64_t img = ng / groups, c0 = (ng % groups) * cg;
      float mu = mean[ng], r = rstd[ng];
      const float *xg = x + ng * len, *sg = shift ? shift + img * c + c0 : NULL;
      const float *dyg = dy + ng * len, *dg = silu ? dz : dyg; /* the gradient at the norm's output */
      double a1 = 0, a2 = 0; /* sums over the group of dz w and dz w xhat */
      for (int64_t ci = 0; ci < cg; ci++) {
        int64_t ch = c0 + ci;
        float wc = w ? w[ch] : 1.0f, bc = b ? b[ch] : 0.0f, m = mu - (sg ? sg[ci] : 0.0f);
        const float *xc = xg + ci * hw, *dyc = dyg + ci * hw;
        float s1 = 0, s2 = 0;
        if (silu) {
          float *dzc = dz + ci * hw;
#pragma omp simd reduction(+ : s1, s2)
          for (int64_t i = 0; i < hw; i++) {
            float xh = (xc[i] - m) * r, z = xh * wc + bc, s = md_sigmoidf(z);
            float d = dyc[i] * s * (1.0f + z * (1.0f - s));
            dzc[i] = d;
            s1 += d;
            s2 += d * xh;
          }
        } else {
#pragma omp simd reduction(+ : s1, s2)
          for (int64_t i = 0; i < hw; i++) {
            float xh = (xc[i] - m) * r;
            s1 += dyc[i];
            s2 += dyc[i] * xh;
          }
        }
        sdy[img * c + ch] = s1, sdyx[img * c + ch] = s2;
        a1 += (double)s1 * wc;
        a2 += (double)s2 * wc;
      }
      if (!dx && !dshift) continue;
      float m1 = (float)(a1 / (double)len), m2 = (float)(a2 / (double)len);
      for (int64_t ci = 0; ci < cg; ci++) {
        int64_t ch = c0 + ci;
        float wc = w ? w[ch] : 1.0f, m = mu - (sg ? sg[ci] : 0.0f);
        const float *xc = xg + ci * hw, *dc = dg + ci * hw;
        float *dxc = dx ? dx + ng * len + ci * hw : NULL, rs = 0;
        if (dxc) {
#pragma omp simd reduction(+ : rs)
          for (int64_t i = 0; i < hw; i++) {
            float v = r * (dc[i] * wc - m1 - (xc[i] - m) * r * m2);
            dxc[i] += v;
            rs += v;
          }
        } else {
#pragma omp simd reduction(+ : rs)
          for (int64_t i = 0; i < hw; i++) rs += r * (dc[i] * wc - m1 - (xc[i] - m) * r * m2);
        }
        if (dshift) dshift[img * c + ch] += rs;
      }
    }
    free(dz);
  }
  if (!failed)
    for (int64_t img = 0; img < n; img++)
      for (int64_t ch = 0; ch < c; ch++) {
        if (db) db[ch] += (float)sdy[img * c + ch];
        if (dw) dw[ch] += (float)sdyx[img * c + ch];
      }
  free(sdy);
  free(sdyx);
  return failed ? md_error("group_norm backward: out of memory") : MD_OK;
}

typedef struct {
  float *mean, *rstd;
} gn_ctx;

static void gn_ctx_free(void *p) {
  gn_ctx *c = p;
  free(c->mean);
  free(c->rstd);
  free(c);
}

static const float *data_or_null(const md_tensor *t) { return t ? md_data(t) : NULL; }

/* inputs: x, weight, bias, shift */
static int gn_backward(md_node *n, const float *dout, float *const *din) {
  gn_ctx *c = n->ctx;
  const md_tensor *x = n->inputs[0];
  int64_t hw = x->numel / (x->shape[0] * x->shape[1]);
  return md_group_norm_backward(md_data(x), data_or_null(n->inputs[3]), data_or_null(n->inputs[1]),
                                data_or_null(n->inputs[2]), c->mean, c->rstd, dout, din[0], din[3], din[1], din[2],
                                x->shape[0], x->shape[1], hw, n->iarg[0], n->iarg[1]);
}

int md_group_norm(md_tensor **out, md_tensor *x, int64_t groups, md_tensor *weight, md_tensor *bias, float eps,
                  bool silu, md_tensor *shift) {
  char sx[MD_SHAPE_STR_LEN];
  if (x->ndim < 2) return md_error("group_norm: input must be N x C x ..., got %s", md_shape_str(x, sx, sizeof sx));
  int64_t n = x->shape[0], c = x->shape[1];
  if (groups < 1 || c % groups != 0)
    return md_error("group_norm: %lld channels are not divisible into %lld groups", (long long)c, (long long)groups);
  if ((weight && (weight->ndim != 1 || weight->shape[0] != c)) || (bias && (bias->ndim != 1 || bias->shape[0] != c)))
    return md_error("group_norm: weight and bias must have %lld elements", (long long)c);
  /* the shift is one value per (image, channel): [N, C] or [N, C, 1, ...] */
  if (shift && (shift->ndim < 2 || shift->shape[0] != n || shift->shape[1] != c || shift->numel != n * c))
    return md_error("group_norm: shift must be N x C = %lld x %lld, got %s", (long long)n, (long long)c,
                    md_shape_str(shift, sx, sizeof sx));
  int64_t hw = n && c ? x->numel / (n * c) : 0;
  md_tensor *y = md_tensor_empty_like(x);
  gn_ctx *ctx = calloc(1, sizeof *ctx);
  if (ctx) ctx->mean = malloc((size_t)(n * groups + 1) * sizeof(float)), ctx->rstd = malloc((size_t)(n * groups + 1) * sizeof(float));
  if (!y || !ctx || !ctx->mean || !ctx->rstd) {
    md_tensor_release(y);
    if (ctx) gn_ctx_free(ctx);
    return md_error("group_norm: out of memory");
  }
  md_group_norm_forward(md_data(x), data_or_null(shift), data_or_null(weight), data_or_null(bias), md_data(y),
                        ctx->mean, ctx->rstd, n, c, hw, groups, eps, silu);
  md_node *node;
  if (md_record(&node, y, silu ? "group_norm_silu" : "group_norm", gn_backward, 4,
                (md_tensor *[]){x, weight, bias, shift}) != MD_OK) {
    md_tensor_release(y);
    gn_ctx_free(ctx);
    return MD_ERR;
  }
  if (node) {
    node->iarg[0] = groups;
    node->iarg[1] = silu;
    node->ctx = ctx;
    node->ctx_free = gn_ctx_free;
  } else {
    gn_ctx_free(ctx);
  }
  *out = y;
  return MD_OK;
}
