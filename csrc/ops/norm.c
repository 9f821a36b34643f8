/* Group normalisation: statistics per (image, group) over C/G channels and
 * all positions; per-channel affine; optionally a per-(image, channel)
 * shift added to the input first (the ResBlock's embedding) and SiLU on
 * top, so that silu(group_norm(h + emb)) is one op forward and backward.
 *
 * Plain and blocked (nChw16c) inputs run the same code: an image is a row
 * of tiles of 16-float vectors, and each lane of a vector belongs to one
 * channel. In plain NCHW a tile is one channel's positions (every lane is
 * that channel, with a scalar tail when H*W is not a multiple of 16); in the
 * blocked layout a tile is a block of 16 channels (lane l is channel 16b+l).
 * Every pass loads per-lane coefficients, runs a 16-wide loop over the tile
 * and folds the lane sums back into channels. Work is split by image; the
 * parameter gradients are reduced over images in a fixed order, so results
 * do not depend on the thread count. */
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "../autograd.h"
#include "norm.h"

#include "blocked.h"
#include "vmath.h"

enum { V = MD_BLOCK };

typedef struct {
  bool blocked;
  int64_t tiles, tile_len; /* floats per tile */
} gn_tiles;

static gn_tiles tiles_of(int64_t c, int64_t hw, bool blocked) {
  return blocked ? (gn_tiles){true, c / V, hw * V} : (gn_tiles){false, c, hw};
}

static inline int64_t lane_channel(const gn_tiles *g, int64_t t, int l) { return g->blocked ? t * V + l : t; }

/* coef[l] = per_channel[channel of lane l in tile t] */
static void lane_coefs(const gn_tiles *g, int64_t t, const float *per_channel, float *coef) {
  for (int l = 0; l < V; l++) coef[l] = per_channel[lane_channel(g, t, l)];
}

/* per_channel[channel of lane l] += acc[l] */
static void fold_lanes(const gn_tiles *g, int64_t t, const float *acc, double *per_channel) {
  if (g->blocked)
    for (int l = 0; l < V; l++) per_channel[t * V + l] += acc[l];
  else
    for (int l = 0; l < V; l++) per_channel[t] += acc[l];
}

/* ---- the 16-wide kernels over one tile of n floats ----------------------------------
 * Accumulators live in local arrays (registers) for the whole tile and are
 * added to the caller's at the end: accumulating through the pointer would
 * keep them in memory, one store-to-load round trip per vector. */

static void k_sum(const float *restrict x, int64_t n, float *restrict acc) {
  float s[V] = {0};
  int64_t i = 0;
  for (; i + V <= n; i += V)
#pragma omp simd
    for (int l = 0; l < V; l++) s[l] += x[i + l];
  for (int l = 0; i < n; i++, l++) s[l] += x[i];
  for (int l = 0; l < V; l++) acc[l] += s[l];
}

static void k_centered_squares(const float *restrict x, int64_t n, const float *restrict m, float *restrict acc) {
  float s[V] = {0};
  int64_t i = 0;
  for (; i + V <= n; i += V)
#pragma omp simd
    for (int l = 0; l < V; l++) s[l] += (x[i + l] - m[l]) * (x[i + l] - m[l]);
  for (int l = 0; i < n; i++, l++) s[l] += (x[i] - m[l]) * (x[i] - m[l]);
  for (int l = 0; l < V; l++) acc[l] += s[l];
}

static inline float silu_of(float z) { return z * md_sigmoidf(z); }

/* y = x * a + sh, then SiLU */
static void k_affine(const float *restrict x, float *restrict y, int64_t n, const float *restrict a,
                     const float *restrict sh, bool silu) {
  int64_t i = 0;
  if (silu) {
    for (; i + V <= n; i += V)
#pragma omp simd
      for (int l = 0; l < V; l++) y[i + l] = silu_of(x[i + l] * a[l] + sh[l]);
    for (int l = 0; i < n; i++, l++) y[i] = silu_of(x[i] * a[l] + sh[l]);
  } else {
    for (; i + V <= n; i += V)
#pragma omp simd
      for (int l = 0; l < V; l++) y[i + l] = x[i + l] * a[l] + sh[l];
    for (int l = 0; i < n; i++, l++) y[i] = x[i] * a[l] + sh[l];
  }
}

/* dz = dy * silu'(z) at z = x * a + sh */
static inline float silu_grad(float x, float dy, float a, float sh) {
  float z = x * a + sh, s = md_sigmoidf(z);
  return dy * s * (1.0f + z * (1.0f - s));
}

/* The gradient at the norm's output, d = dy, or with silu d = dz (written to
 * dz), and its sums: s1 += d, s2 += d * xhat with xhat = (x - m) * r. */
static void k_bwd_sums(const float *restrict x, const float *restrict dy, float *restrict dz, int64_t n,
                       const float *restrict m, const float *restrict r, const float *restrict a,
                       const float *restrict sh, bool silu, float *restrict s1, float *restrict s2) {
  float t1[V] = {0}, t2[V] = {0};
  int64_t i = 0;
  if (silu) {
    for (; i + V <= n; i += V)
#pragma omp simd
      for (int l = 0; l < V; l++) {
        float d = silu_grad(x[i + l], dy[i + l], a[l], sh[l]);
        dz[i + l] = d;
        t1[l] += d;
        t2[l] += d * (x[i + l] - m[l]) * r[l];
      }
    for (int l = 0; i < n; i++, l++) {
      float d = silu_grad(x[i], dy[i], a[l], sh[l]);
      dz[i] = d;
      t1[l] += d;
      t2[l] += d * (x[i] - m[l]) * r[l];
    }
  } else {
    for (; i + V <= n; i += V)
#pragma omp simd
      for (int l = 0; l < V; l++) {
        t1[l] += dy[i + l];
        t2[l] += dy[i + l] * (x[i + l] - m[l]) * r[l];
      }
    for (int l = 0; i < n; i++, l++) {
      t1[l] += dy[i];
      t2[l] += dy[i] * (x[i] - m[l]) * r[l];
    }
  }
  for (int l = 0; l < V; l++) s1[l] += t1[l], s2[l] += t2[l];
}

/* v = A d + B x + C; dx += v, or dx = v with assign (when dx is given);
 * acc += v */
static void k_bwd_apply(const float *restrict d, const float *restrict x, float *restrict dx, int64_t n,
                        const float *restrict A, const float *restrict B, const float *restrict C, bool assign,
                        float *restrict acc) {
  float t[V] = {0};
  int64_t i = 0;
  if (dx && assign) {
    for (; i + V <= n; i += V)
#pragma omp simd
      for (int l = 0; l < V; l++) {
        float v = A[l] * d[i + l] + B[l] * x[i + l] + C[l];
        dx[i + l] = v;
        t[l] += v;
      }
    for (int l = 0; i < n; i++, l++) {
      float v = A[l] * d[i] + B[l] * x[i] + C[l];
      dx[i] = v;
      t[l] += v;
    }
  } else if (dx) {
    for (; i + V <= n; i += V)
#pragma omp simd
      for (int l = 0; l < V; l++) {
        float v = A[l] * d[i + l] + B[l] * x[i + l] + C[l];
        dx[i + l] += v;
        t[l] += v;
      }
    for (int l = 0; i < n; i++, l++) {
      float v = A[l] * d[i] + B[l] * x[i] + C[l];
      dx[i] += v;
      t[l] += v;
    }
  } else {
    for (; i + V <= n; i += V)
#pragma omp simd
      for (int l = 0; l < V; l++) t[l] += A[l] * d[i + l] + B[l] * x[i + l] + C[l];
    for (int l = 0; i < n; i++, l++) t[l] += A[l] * d[i] + B[l] * x[i] + C[l];
  }
  for (int l = 0; l < V; l++) acc[l] += t[l];
}

/* ---- per image ------------------------------------------------------------------------ */

/* Scratch for one image: per-channel doubles and floats. */
typedef struct {
  double *s1, *s2; /* [c] */
  float *m, *r, *a, *sh, *A, *B, *C; /* [c] */
  float *dz;                         /* [c * hw], backward with silu */
} gn_scratch;

static bool scratch_alloc(gn_scratch *s, int64_t c, int64_t dz_floats) {
  s->s1 = malloc((size_t)c * sizeof(double)), s->s2 = malloc((size_t)c * sizeof(double));
  float *f = malloc((size_t)(7 * c) * sizeof(float));
  s->m = f, s->r = f + c, s->a = f + 2 * c, s->sh = f + 3 * c, s->A = f + 4 * c, s->B = f + 5 * c, s->C = f + 6 * c;
  s->dz = dz_floats ? malloc((size_t)dz_floats * sizeof(float)) : NULL;
  return s->s1 && s->s2 && f && (!dz_floats || s->dz);
}

static void scratch_free(gn_scratch *s) {
  free(s->s1), free(s->s2), free(s->m), free(s->dz);
}

/* The forward pass over tiles [t0, t1) of one image, in three sweeps with
 * group statistics between them; per-channel values are the image's slices
 * of the arrays in gn_fwd. */
typedef struct {
  const float *x, *shift, *w, *b;
  float *y, *mean, *rstd;
  int64_t c, hw, groups;
  float eps;
  bool silu;
  gn_tiles g;
  double *s1, *s2;     /* [n, c] sums, centred squares */
  float *m, *a, *sh;   /* [n, c] centre, scale, shift */
} gn_fwd;

static void fwd_sums(const gn_fwd *f, int64_t img, int64_t t0, int64_t t1) {
  const float *xi = f->x + img * f->c * f->hw;
  for (int64_t t = t0; t < t1; t++) {
    float acc[V] = {0};
    k_sum(xi + t * f->g.tile_len, f->g.tile_len, acc);
    fold_lanes(&f->g, t, acc, f->s1 + img * f->c);
  }
}

/* the group means, then each channel's centre (the mean minus its shift) */
static void fwd_means(const gn_fwd *f, int64_t img) {
  int64_t cg = f->c / f->groups, len = cg * f->hw;
  const double *s1 = f->s1 + img * f->c;
  const float *sh_in = f->shift ? f->shift + img * f->c : NULL;
  for (int64_t gi = 0; gi < f->groups; gi++) {
    double sum = 0;
    for (int64_t ch = gi * cg; ch < (gi + 1) * cg; ch++) sum += s1[ch] + (sh_in ? (double)sh_in[ch] * f->hw : 0.0);
    float mu = (float)(sum / (double)len);
    f->mean[img * f->groups + gi] = mu;
    for (int64_t ch = gi * cg; ch < (gi + 1) * cg; ch++) f->m[img * f->c + ch] = mu - (sh_in ? sh_in[ch] : 0.0f);
  }
}

static void fwd_squares(const gn_fwd *f, int64_t img, int64_t t0, int64_t t1) {
  const float *xi = f->x + img * f->c * f->hw;
  for (int64_t t = t0; t < t1; t++) {
    float m[V], acc[V] = {0};
    lane_coefs(&f->g, t, f->m + img * f->c, m);
    k_centered_squares(xi + t * f->g.tile_len, f->g.tile_len, m, acc);
    fold_lanes(&f->g, t, acc, f->s2 + img * f->c);
  }
}

/* 1/std per group, and y = (x - m) r w + b = x a + sh per channel */
static void fwd_scales(const gn_fwd *f, int64_t img) {
  int64_t cg = f->c / f->groups, len = cg * f->hw;
  for (int64_t gi = 0; gi < f->groups; gi++) {
    double ss = 0;
    for (int64_t ch = gi * cg; ch < (gi + 1) * cg; ch++) ss += f->s2[img * f->c + ch];
    float r = (float)(1.0 / sqrt(ss / (double)len + f->eps));
    f->rstd[img * f->groups + gi] = r;
    for (int64_t ch = gi * cg; ch < (gi + 1) * cg; ch++) {
      int64_t k = img * f->c + ch;
      f->a[k] = r * (f->w ? f->w[ch] : 1.0f);
      f->sh[k] = (f->b ? f->b[ch] : 0.0f) - f->m[k] * f->a[k];
    }
  }
}

static void fwd_apply(const gn_fwd *f, int64_t img, int64_t t0, int64_t t1) {
  int64_t off = img * f->c * f->hw;
  for (int64_t t = t0; t < t1; t++) {
    float a[V], sh[V];
    lane_coefs(&f->g, t, f->a + img * f->c, a);
    lane_coefs(&f->g, t, f->sh + img * f->c, sh);
    k_affine(f->x + off + t * f->g.tile_len, f->y + off + t * f->g.tile_len, f->g.tile_len, a, sh, f->silu);
  }
}

/* With at least as many images as threads, each thread takes whole images
 * (the three sweeps then find the image in its cache); with fewer (batch 1
 * at the REPL), the threads share each image's tiles. */
int md_group_norm_forward(const float *x, const float *shift, const float *w, const float *b, float *y, float *mean,
                          float *rstd, int64_t n, int64_t c, int64_t hw, int64_t groups, float eps, bool silu,
                          bool blocked) {
  gn_fwd f = {.x = x, .shift = shift, .w = w, .b = b, .y = y, .mean = mean, .rstd = rstd, .c = c, .hw = hw,
              .groups = groups, .eps = eps, .silu = silu, .g = tiles_of(c, hw, blocked)};
  f.s1 = calloc((size_t)(2 * n * c + 1), sizeof(double));
  f.m = malloc((size_t)(3 * n * c + 1) * sizeof(float));
  if (!f.s1 || !f.m) {
    free(f.s1), free(f.m);
    return md_error("group_norm: out of memory");
  }
  f.s2 = f.s1 + n * c, f.a = f.m + n * c, f.sh = f.m + 2 * n * c;
  int64_t tiles = f.g.tiles;
#pragma omp parallel
  {
    if (n >= omp_get_num_threads()) {
#pragma omp for schedule(static)
      for (int64_t img = 0; img < n; img++) {
        fwd_sums(&f, img, 0, tiles);
        fwd_means(&f, img);
        fwd_squares(&f, img, 0, tiles);
        fwd_scales(&f, img);
        fwd_apply(&f, img, 0, tiles);
      }
    } else {
      for (int64_t img = 0; img < n; img++) {
#pragma omp for schedule(static)
        for (int64_t t = 0; t < tiles; t++) fwd_sums(&f, img, t, t + 1);
#pragma omp single
        fwd_means(&f, img);
#pragma omp for schedule(static)
        for (int64_t t = 0; t < tiles; t++) fwd_squares(&f, img, t, t + 1);
#pragma omp single
        fwd_scales(&f, img);
#pragma omp for schedule(static)
        for (int64_t t = 0; t < tiles; t++) fwd_apply(&f, img, t, t + 1);
      }
    }
  }
  free(f.s1), free(f.m);
  return MD_OK;
}

/* dx = r (dz w - mean(dz w) - xhat mean(dz w xhat)) over the group, written
 * per channel as A dz + B x + C; dshift is the sum of dx over each channel's
 * positions. */
int md_group_norm_backward(const float *x, const float *shift, const float *w, const float *b, const float *mean,
                           const float *rstd, const float *dy, float *dx, float *dshift, float *dw, float *db,
                           int64_t n, int64_t c, int64_t hw, int64_t groups, bool silu, bool blocked,
                           bool assign_dx) {
  gn_tiles g = tiles_of(c, hw, blocked);
  int64_t cg = c / groups, len = cg * hw;
  double *sdy = calloc((size_t)(n * c + 1), sizeof *sdy), *sdyx = calloc((size_t)(n * c + 1), sizeof *sdyx);
  bool failed = !sdy || !sdyx;
#pragma omp parallel if (!failed)
  {
    gn_scratch s = {0};
    bool ok = !failed && scratch_alloc(&s, c, silu ? c * hw : 0);
    if (!ok) {
#pragma omp atomic write
      failed = true;
    }
#pragma omp for schedule(static)
    for (int64_t img = 0; img < n; img++) {
      if (!ok) continue;
      const float *xi = x + img * c * hw, *dyi = dy + img * c * hw, *sh_in = shift ? shift + img * c : NULL;
      float *dxi = dx ? dx + img * c * hw : NULL, acc1[V], acc2[V];
      for (int64_t gi = 0; gi < groups; gi++) {
        float mu = mean[img * groups + gi], r = rstd[img * groups + gi];
        for (int64_t ch = gi * cg; ch < (gi + 1) * cg; ch++) {
          s.m[ch] = mu - (sh_in ? sh_in[ch] : 0.0f);
          s.r[ch] = r;
          s.a[ch] = r * (w ? w[ch] : 1.0f);
          s.sh[ch] = (b ? b[ch] : 0.0f) - s.m[ch] * s.a[ch];
        }
      }
      memset(s.s1, 0, (size_t)c * sizeof(double));
      memset(s.s2, 0, (size_t)c * sizeof(double));
      for (int64_t t = 0; t < g.tiles; t++) {
        float m[V], r[V], a[V], sh[V];
        lane_coefs(&g, t, s.m, m), lane_coefs(&g, t, s.r, r), lane_coefs(&g, t, s.a, a), lane_coefs(&g, t, s.sh, sh);
        memset(acc1, 0, sizeof acc1);
        memset(acc2, 0, sizeof acc2);
        int64_t off = t * g.tile_len;
        k_bwd_sums(xi + off, dyi + off, silu ? s.dz + off : NULL, g.tile_len, m, r, a, sh, silu, acc1, acc2);
        fold_lanes(&g, t, acc1, s.s1);
        fold_lanes(&g, t, acc2, s.s2);
      }
      for (int64_t ch = 0; ch < c; ch++) sdy[img * c + ch] = s.s1[ch], sdyx[img * c + ch] = s.s2[ch];
      if (!dxi && !dshift) continue;
      for (int64_t gi = 0; gi < groups; gi++) {
        double a1 = 0, a2 = 0; /* sums over the group of dz w and dz w xhat */
        for (int64_t ch = gi * cg; ch < (gi + 1) * cg; ch++) {
          float wc = w ? w[ch] : 1.0f;
          a1 += s.s1[ch] * wc;
          a2 += s.s2[ch] * wc;
        }
        float r = rstd[img * groups + gi], m1 = (float)(a1 / (double)len), m2 = (float)(a2 / (double)len);
        for (int64_t ch = gi * cg; ch < (gi + 1) * cg; ch++) {
          s.A[ch] = r * (w ? w[ch] : 1.0f);
          s.B[ch] = -r * r * m2;
          s.C[ch] = r * r * m2 * s.m[ch] - r * m1;
        }
      }
      memset(s.s1, 0, (size_t)c * sizeof(double));
      for (int64_t t = 0; t < g.tiles; t++) {
        float A[V], B[V], C[V];
        lane_coefs(&g, t, s.A, A), lane_coefs(&g, t, s.B, B), lane_coefs(&g, t, s.C, C);
        memset(acc1, 0, sizeof acc1);
        int64_t off = t * g.tile_len;
        k_bwd_apply(silu ? s.dz + off : dyi + off, xi + off, dxi ? dxi + off : NULL, g.tile_len, A, B, C, assign_dx,
                    acc1);
        fold_lanes(&g, t, acc1, s.s1);
      }
      if (dshift)
        for (int64_t ch = 0; ch < c; ch++) dshift[img * c + ch] += (float)s.s1[ch];
    }
    scratch_free(&s);
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

/* inputs: x, weight, bias, shift. A fresh dx is overwritten; the small
 * gradients are zeroed when fresh and accumulated into. */
static int gn_backward(md_node *n, const float *dout, float *const *din) {
  gn_ctx *c = n->ctx;
  const md_tensor *x = n->inputs[0];
  for (int i = 1; i < 4; i++)
    if (din[i] && n->fresh[i]) memset(din[i], 0, (size_t)n->inputs[i]->numel * sizeof(float));
  int64_t hw = x->numel / (x->shape[0] * x->shape[1]);
  return md_group_norm_backward(md_data(x), data_or_null(n->inputs[3]), data_or_null(n->inputs[1]),
                                data_or_null(n->inputs[2]), c->mean, c->rstd, dout, din[0], din[3], din[1], din[2],
                                x->shape[0], x->shape[1], hw, n->iarg[0], n->iarg[1], md_is_blocked(x), n->fresh[0]);
}

static int group_norm_in_layout(md_tensor **out, md_tensor *x, int64_t groups, md_tensor *weight,
                                md_tensor *bias, float eps, bool silu, md_tensor *shift) {
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
  if (md_group_norm_forward(md_data(x), data_or_null(shift), data_or_null(weight), data_or_null(bias), md_data(y),
                            ctx->mean, ctx->rstd, n, c, hw, groups, eps, silu, md_is_blocked(x)) != MD_OK) {
    md_tensor_release(y);
    gn_ctx_free(ctx);
    return MD_ERR;
  }
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
    node->assigns = true;
    node->ctx = ctx;
    node->ctx_free = gn_ctx_free;
  } else {
    gn_ctx_free(ctx);
  }
  *out = y;
  return MD_OK;
}

/* x may be blocked (the kernels read both layouts); weight, bias, shift are plain */
int md_group_norm(md_tensor **out, md_tensor *x, int64_t groups, md_tensor *weight, md_tensor *bias, float eps,
                  bool silu, md_tensor *shift) {
  md_plain_scope plain;
  if (md_plain_inputs(&plain, 3, (md_tensor **const[]){&weight, &bias, &shift}) != MD_OK) return MD_ERR;
  int rc = group_norm_in_layout(out, x, groups, weight, bias, eps, silu, shift);
  md_plain_release(&plain);
  return rc;
}
