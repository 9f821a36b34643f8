/* Group normalisation: statistics per (image, group) over C/G channels and
 * all positions; per-channel affine; optionally SiLU fused on top. */
#include <math.h>
#include <stdlib.h>

#include "../autograd.h"
#include "nn.h"

static inline float sigmoidf_(float z) { return 1.0f / (1.0f + expf(-z)); }

void md_group_norm_forward(const float *x, const float *w, const float *b, float *y, float *mean, float *rstd,
                           int64_t n, int64_t c, int64_t hw, int64_t groups, float eps, bool silu) {
  int64_t cg = c / groups, len = cg * hw;
#pragma omp parallel for schedule(static)
  for (int64_t ng = 0; ng < n * groups; ng++) {
    const float *xg = x + ng * len;
    double s = 0, ss = 0;
    for (int64_t i = 0; i < len; i++) s += xg[i];
    double mu = s / (double)len;
    for (int64_t i = 0; i < len; i++) ss += (xg[i] - mu) * (xg[i] - mu);
    float r = (float)(1.0 / sqrt(ss / (double)len + eps));
    mean[ng] = (float)mu;
    rstd[ng] = r;
    int64_t g = ng % groups;
    float *yg = y + ng * len;
    for (int64_t ci = 0; ci < cg; ci++) {
      int64_t ch = g * cg + ci;
      float a = r * (w ? w[ch] : 1.0f), sh = (b ? b[ch] : 0.0f) - (float)mu * a;
      const float *xc = xg + ci * hw;
      float *yc = yg + ci * hw;
      if (silu)
        for (int64_t i = 0; i < hw; i++) {
          float z = xc[i] * a + sh;
          yc[i] = z * sigmoidf_(z);
        }
      else
        for (int64_t i = 0; i < hw; i++) yc[i] = xc[i] * a + sh;
    }
  }
}

/* With silu, dy is first taken through the activation: the normalised value
 * z = xhat * w + b is recomputed and dz = dy * s (1 + z (1 - s)), s = sigmoid(z). */
int md_group_norm_backward(const float *x, const float *w, const float *b, const float *mean, const float *rstd,
                           const float *dy, float *dx, float *dw, float *db, int64_t n, int64_t c, int64_t hw,
                           int64_t groups, bool silu) {
  int64_t cg = c / groups, len = cg * hw;
  float *dz_all = silu ? malloc((size_t)(n * c * hw + 1) * sizeof(float)) : NULL;
  double *sdy = calloc((size_t)(n * c + 1), sizeof *sdy), *sdyx = calloc((size_t)(n * c + 1), sizeof *sdyx);
  if ((silu && !dz_all) || !sdy || !sdyx) {
    free(dz_all), free(sdy), free(sdyx);
    return md_error("group_norm backward: out of memory");
  }
  if (silu) {
#pragma omp parallel for schedule(static)
    for (int64_t ng = 0; ng < n * groups; ng++) {
      int64_t g = ng % groups;
      for (int64_t ci = 0; ci < cg; ci++) {
        int64_t ch = g * cg + ci, base = ng * len + ci * hw;
        float a = rstd[ng] * (w ? w[ch] : 1.0f), sh = (b ? b[ch] : 0.0f) - mean[ng] * a;
        for (int64_t i = 0; i < hw; i++) {
          float z = x[base + i] * a + sh, s = sigmoidf_(z);
          dz_all[base + i] = dy[base + i] * s * (1.0f + z * (1.0f - s));
        }
      }
    }
    dy = dz_all;
  }
  /* sdy, sdyx: per (image, channel) sums of dy and dy * xhat, reduced over images below */
#pragma omp parallel for schedule(static)
  for (int64_t ng = 0; ng < n * groups; ng++) {
    int64_t g = ng % groups, img = ng / groups;
    float mu = mean[ng], r = rstd[ng];
    const float *xg = x + ng * len, *dyg = dy + ng * len;
    double a1 = 0, a2 = 0; /* sums over the group of dxhat and dxhat * xhat */
    for (int64_t ci = 0; ci < cg; ci++) {
      int64_t ch = g * cg + ci;
      float wc = w ? w[ch] : 1.0f;
      double s1 = 0, s2 = 0;
      for (int64_t i = 0; i < hw; i++) {
        float xh = (xg[ci * hw + i] - mu) * r, d = dyg[ci * hw + i];
        s1 += d;
        s2 += d * xh;
      }
      sdy[img * c + ch] = s1, sdyx[img * c + ch] = s2;
      a1 += s1 * wc;
      a2 += s2 * wc;
    }
    if (!dx) continue;
    float m1 = (float)(a1 / (double)len), m2 = (float)(a2 / (double)len);
    float *dxg = dx + ng * len;
    for (int64_t ci = 0; ci < cg; ci++) {
      float wc = w ? w[g * cg + ci] : 1.0f;
      for (int64_t i = 0; i < hw; i++) {
        int64_t j = ci * hw + i;
        float xh = (xg[j] - mu) * r;
        dxg[j] += r * (dyg[j] * wc - m1 - xh * m2);
      }
    }
  }
  for (int64_t img = 0; img < n; img++)
      for (int64_t ch = 0; ch < c; ch++) {
        if (db) db[ch] += (float)sdy[img * c + ch];
        if (dw) dw[ch] += (float)sdyx[img * c + ch];
      }
  free(sdy);
  free(sdyx);
  free(dz_all);
  return MD_OK;
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

static int gn_backward(md_node *n, const float *dout, float *const *din) {
  gn_ctx *c = n->ctx;
  const md_tensor *x = n->inputs[0], *w = n->inputs[1];
  int64_t hw = x->numel / (x->shape[0] * x->shape[1]);
  const md_tensor *b = n->inputs[2];
  return md_group_norm_backward(md_data(x), w ? md_data(w) : NULL, b ? md_data(b) : NULL, c->mean, c->rstd, dout,
                                din[0], din[1], din[2], x->shape[0], x->shape[1], hw, n->iarg[0], n->iarg[1]);
}

int md_group_norm(md_tensor **out, md_tensor *x, int64_t groups, md_tensor *weight, md_tensor *bias, float eps,
                  bool silu) {
  char sx[MD_SHAPE_STR_LEN];
  if (x->ndim < 2) return md_error("group_norm: input must be N x C x ..., got %s", md_shape_str(x, sx, sizeof sx));
  int64_t n = x->shape[0], c = x->shape[1];
  if (groups < 1 || c % groups != 0)
    return md_error("group_norm: %lld channels are not divisible into %lld groups", (long long)c, (long long)groups);
  if ((weight && (weight->ndim != 1 || weight->shape[0] != c)) || (bias && (bias->ndim != 1 || bias->shape[0] != c)))
    return md_error("group_norm: weight and bias must have %lld elements", (long long)c);
  int64_t hw = n && c ? x->numel / (n * c) : 0;
  md_tensor *y = md_tensor_empty_like(x);
  gn_ctx *ctx = calloc(1, sizeof *ctx);
  if (ctx) ctx->mean = malloc((size_t)(n * groups + 1) * sizeof(float)), ctx->rstd = malloc((size_t)(n * groups + 1) * sizeof(float));
  if (!y || !ctx || !ctx->mean || !ctx->rstd) {
    md_tensor_release(y);
    if (ctx) gn_ctx_free(ctx);
    return md_error("group_norm: out of memory");
  }
  md_group_norm_forward(md_data(x), weight ? md_data(weight) : NULL, bias ? md_data(bias) : NULL, md_data(y),
                        ctx->mean, ctx->rstd, n, c, hw, groups, eps, silu);
  md_node *node;
  if (md_record(&node, y, silu ? "group_norm_silu" : "group_norm", gn_backward, 3, (md_tensor *[]){x, weight, bias}) != MD_OK) {
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
