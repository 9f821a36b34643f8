/* The naive references (see naive.h): each written from the definition,
 * with no blocking, vectorisation or threads, and double accumulators. */
#include "naive.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

float *naive_to_float(const double *d, int64_t n) {
  float *f = malloc((size_t)(n > 0 ? n : 1) * sizeof *f);
  for (int64_t i = 0; i < n; i++) f[i] = (float)d[i];
  return f;
}

/* ---- ops/pointwise.c ---- */

double naive_unary(md_unary_op op, double x, double p0, double p1) {
  switch (op) {
  case MD_NEG: return -x;
  case MD_SQRT: return sqrt(x);
  case MD_RSQRT: return 1 / sqrt(x);
  case MD_EXP: return exp(x);
  case MD_LOG: return log(x);
  case MD_ABS: return fabs(x);
  case MD_SIN: return sin(x);
  case MD_COS: return cos(x);
  case MD_SIGMOID: return 1 / (1 + exp(-x));
  case MD_TANH: return tanh(x);
  case MD_RELU: return x > 0 ? x : 0;
  case MD_SILU: return x / (1 + exp(-x));
  case MD_AFFINE: return p0 * x + p1;
  case MD_RECIP: return p0 / x;
  case MD_POWS: return pow(x, p0);
  case MD_CLAMP: return fmin(fmax(x, p0), p1);
  default: return NAN;
  }
}

double naive_binary(md_binary_op op, double a, double b) {
  switch (op) {
  case MD_ADD: return a + b;
  case MD_SUB: return a - b;
  case MD_MUL: return a * b;
  case MD_DIV: return a / b;
  case MD_POW: return pow(a, b);
  case MD_MAXIMUM: return fmax(a, b);
  case MD_MINIMUM: return fmin(a, b);
  case MD_EQ: return a == b;
  case MD_NE: return a != b;
  case MD_LT: return a < b;
  case MD_LE: return a <= b;
  case MD_GT: return a > b;
  case MD_GE: return a >= b;
  default: return NAN;
  }
}

int64_t naive_broadcast_index(const md_tensor *x, int nd, const int64_t *shape, int64_t flat) {
  int64_t idx = 0, stride = 1;
  for (int d = nd - 1; d >= 0; d--) {
    int64_t pos = flat % shape[d];
    flat /= shape[d];
    int xd = d - (nd - x->ndim);
    if (xd < 0) continue;
    if (x->shape[xd] != 1) idx += pos * stride;
    stride *= x->shape[xd];
  }
  return idx;
}

/* ---- ops/reduce.c ---- */

void naive_reduce(md_reduce_op op, const float *x, int64_t outer, int64_t len, int64_t inner, int correction,
                  double *y) {
  for (int64_t o = 0; o < outer; o++)
    for (int64_t i = 0; i < inner; i++) {
      double s = 0, ss = 0;
      for (int64_t j = 0; j < len; j++) s += x[(o * len + j) * inner + i];
      double mean = s / (double)len;
      for (int64_t j = 0; j < len; j++) {
        double dv = x[(o * len + j) * inner + i] - mean;
        ss += dv * dv;
      }
      double var = ss / (double)(len - correction);
      y[o * inner + i] = op == MD_SUM ? s : op == MD_MEAN ? mean : op == MD_VAR ? var : sqrt(var);
    }
}

void naive_max(const float *x, int64_t outer, int64_t len, int64_t inner, bool is_min, float *values,
               int64_t *indices) {
  for (int64_t o = 0; o < outer; o++)
    for (int64_t i = 0; i < inner; i++) {
      int64_t best = 0;
      for (int64_t j = 1; j < len; j++) {
        float cand = x[(o * len + j) * inner + i], cur = x[(o * len + best) * inner + i];
        if (is_min ? cand < cur : cand > cur) best = j;
      }
      values[o * inner + i] = x[(o * len + best) * inner + i];
      indices[o * inner + i] = best;
    }
}

/* ---- ops/movement.c ---- */

void naive_cat(int n, md_tensor *const *xs, int dim, float *y) {
  int64_t outer = md_shape_numel(dim, xs[0]->shape), inner = md_shape_numel(xs[0]->ndim - dim - 1, xs[0]->shape + dim + 1);
  int64_t at = 0;
  for (int64_t o = 0; o < outer; o++)
    for (int k = 0; k < n; k++) {
      int64_t chunk = xs[k]->shape[dim] * inner;
      for (int64_t i = 0; i < chunk; i++) y[at++] = md_data(xs[k])[o * chunk + i];
    }
}

void naive_stack(int n, md_tensor *const *xs, int dim, float *y) {
  int64_t outer = md_shape_numel(dim, xs[0]->shape), inner = md_shape_numel(xs[0]->ndim - dim, xs[0]->shape + dim);
  for (int64_t o = 0; o < outer; o++)
    for (int k = 0; k < n; k++)
      for (int64_t i = 0; i < inner; i++) y[(o * n + k) * inner + i] = md_data(xs[k])[o * inner + i];
}

void naive_permute(const md_tensor *x, const int *perm, float *y) {
  int64_t stride[MD_MAX_DIMS], shape[MD_MAX_DIMS];
  int64_t step = 1;
  for (int d = x->ndim - 1; d >= 0; d--) stride[d] = step, step *= x->shape[d];
  for (int d = 0; d < x->ndim; d++) shape[d] = x->shape[perm[d]];
  for (int64_t i = 0; i < x->numel; i++) {
    int64_t rem = i, src = 0;
    for (int d = x->ndim - 1; d >= 0; d--) {
      src += (rem % shape[d]) * stride[perm[d]];
      rem /= shape[d];
    }
    y[i] = md_data(x)[src];
  }
}

void naive_index_select(const md_tensor *x, int dim, const float *idx, int64_t nidx, float *y) {
  int64_t outer = md_shape_numel(dim, x->shape), len = x->shape[dim];
  int64_t inner = md_shape_numel(x->ndim - dim - 1, x->shape + dim + 1);
  for (int64_t o = 0; o < outer; o++)
    for (int64_t j = 0; j < nidx; j++)
      for (int64_t i = 0; i < inner; i++)
        y[(o * nidx + j) * inner + i] = md_data(x)[(o * len + (int64_t)idx[j]) * inner + i];
}

/* ---- ops/linalg.c ---- */

void naive_matmul(const float *a, const float *b, double *c, int64_t batch, int64_t na, int64_t nb, int64_t m,
                  int64_t k, int64_t n) {
  for (int64_t t = 0; t < batch; t++)
    for (int64_t i = 0; i < m; i++)
      for (int64_t j = 0; j < n; j++) {
        double acc = 0;
        for (int64_t l = 0; l < k; l++) acc += (double)a[((t % na) * m + i) * k + l] * b[((t % nb) * k + l) * n + j];
        c[(t * m + i) * n + j] = acc;
      }
}

/* ---- ops/linear.c ---- */

void naive_linear_forward(const float *x, const float *w, const float *b, double *y, int64_t rows, int64_t in,
                          int64_t out) {
  for (int64_t r = 0; r < rows; r++)
    for (int64_t o = 0; o < out; o++) {
      double acc = b ? b[o] : 0;
      for (int64_t i = 0; i < in; i++) acc += (double)x[r * in + i] * w[o * in + i];
      y[r * out + o] = acc;
    }
}

void naive_linear_backward(const float *x, const float *w, const float *dy, double *dx, double *dw, double *db,
                           int64_t rows, int64_t in, int64_t out) {
  for (int64_t r = 0; r < rows; r++)
    for (int64_t o = 0; o < out; o++) {
      double g = dy[r * out + o];
      db[o] += g;
      for (int64_t i = 0; i < in; i++) dx[r * in + i] += g * w[o * in + i], dw[o * in + i] += g * x[r * in + i];
    }
}

/* ---- conv ---- */

void naive_conv2d_forward(const md_conv_shape *s, const float *x, const float *w, const float *b, double *y) {
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

void naive_conv2d_backward(const md_conv_shape *s, const float *x, const float *w, const float *dy, double *dx,
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

/* ---- ops/norm.c ---- */

void naive_group_norm(const float *x, const float *shift, const float *w, const float *b, double *y, int64_t n,
                      int64_t c, int64_t hw, int64_t groups, double eps, bool silu) {
  int64_t cg = c / groups;
  for (int64_t i = 0; i < n; i++)
    for (int64_t gi = 0; gi < groups; gi++) {
      double s = 0, ss = 0;
      int64_t base = (i * c + gi * cg) * hw, len = cg * hw;
#define XS(j) ((double)x[base + (j)] + (shift ? shift[i * c + gi * cg + (j) / hw] : 0.0))
      for (int64_t j = 0; j < len; j++) s += XS(j);
      double mu = s / (double)len;
      for (int64_t j = 0; j < len; j++) ss += (XS(j) - mu) * (XS(j) - mu);
      double r = 1 / sqrt(ss / (double)len + eps);
      for (int64_t j = 0; j < len; j++) {
        int64_t ch = gi * cg + j / hw;
        double v = (XS(j) - mu) * r * w[ch] + b[ch];
        y[base + j] = silu ? v / (1 + exp(-v)) : v;
      }
#undef XS
    }
}

/* ---- ops/attention.c ---- */

void naive_attention(const float *qkv, double *out, int64_t n, int64_t heads, int64_t d, int64_t l) {
  int64_t c = heads * d;
  double *p = malloc((size_t)l * sizeof *p);
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

/* ---- ops/pool.c ---- */

void naive_upsample_nearest_forward(const float *x, float *y, int64_t planes, int64_t h, int64_t w, int64_t s) {
  for (int64_t p = 0; p < planes; p++)
    for (int64_t i = 0; i < h * s; i++)
      for (int64_t j = 0; j < w * s; j++) y[(p * h * s + i) * w * s + j] = x[(p * h + i / s) * w + j / s];
}

void naive_upsample_nearest_backward(const float *dy, double *dx, int64_t planes, int64_t h, int64_t w, int64_t s) {
  for (int64_t p = 0; p < planes; p++)
    for (int64_t i = 0; i < h * s; i++)
      for (int64_t j = 0; j < w * s; j++) dx[(p * h + i / s) * w + j / s] += dy[(p * h * s + i) * w * s + j];
}

void naive_avg_pool2d_forward(const float *x, double *y, int64_t planes, int64_t h, int64_t w, int64_t k, int64_t st) {
  int64_t ho = (h - k) / st + 1, wo = (w - k) / st + 1;
  for (int64_t p = 0; p < planes; p++)
    for (int64_t i = 0; i < ho; i++)
      for (int64_t j = 0; j < wo; j++) {
        double acc = 0;
        for (int64_t a = 0; a < k; a++)
          for (int64_t b = 0; b < k; b++) acc += x[(p * h + i * st + a) * w + j * st + b];
        y[(p * ho + i) * wo + j] = acc / (double)(k * k);
      }
}

void naive_avg_pool2d_backward(const float *dy, double *dx, int64_t planes, int64_t h, int64_t w, int64_t k,
                               int64_t st) {
  int64_t ho = (h - k) / st + 1, wo = (w - k) / st + 1;
  for (int64_t p = 0; p < planes; p++)
    for (int64_t i = 0; i < ho; i++)
      for (int64_t j = 0; j < wo; j++)
        for (int64_t a = 0; a < k; a++)
          for (int64_t b = 0; b < k; b++)
            dx[(p * h + i * st + a) * w + j * st + b] += dy[(p * ho + i) * wo + j] / (double)(k * k);
}

/* ---- ops/softmax.c ---- */

void naive_softmax(const float *x, double *y, int64_t outer, int64_t len, int64_t inner, bool as_log) {
  for (int64_t o = 0; o < outer; o++)
    for (int64_t i = 0; i < inner; i++) {
      double m = -INFINITY, s = 0;
      for (int64_t j = 0; j < len; j++) m = fmax(m, x[(o * len + j) * inner + i]);
      for (int64_t j = 0; j < len; j++) s += exp(x[(o * len + j) * inner + i] - m);
      for (int64_t j = 0; j < len; j++) {
        double z = x[(o * len + j) * inner + i] - m;
        y[(o * len + j) * inner + i] = as_log ? z - log(s) : exp(z) / s;
      }
    }
}

/* ---- ops/loss.c ---- */

double naive_mse_loss(const float *a, const float *b, int64_t n) {
  double acc = 0;
  for (int64_t i = 0; i < n; i++) acc += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
  return acc / (double)n;
}

double naive_binary_cross_entropy(const float *p, const float *y, int64_t n) {
  double acc = 0;
  for (int64_t i = 0; i < n; i++) acc -= y[i] * fmax(log(p[i]), -100.0) + (1.0 - y[i]) * fmax(log(1.0 - p[i]), -100.0);
  return acc / (double)n;
}

double naive_binary_cross_entropy_with_logits(const float *x, const float *y, int64_t n) {
  double acc = 0;
  for (int64_t i = 0; i < n; i++) {
    double s = 1 / (1 + exp(-(double)x[i]));
    acc -= y[i] * log(s) + (1.0 - y[i]) * log(1 - s);
  }
  return acc / (double)n;
}

double naive_cross_entropy(const float *logits, const float *labels, int64_t n, int64_t k) {
  double *logp = malloc((size_t)(n * k) * sizeof *logp), acc = 0;
  naive_softmax(logits, logp, n, k, 1, true);
  for (int64_t r = 0; r < n; r++) acc -= logp[r * k + (int64_t)labels[r]];
  free(logp);
  return acc / (double)n;
}

double naive_nll_loss(const float *logp, const float *labels, int64_t n, int64_t k) {
  double acc = 0;
  for (int64_t r = 0; r < n; r++) acc -= logp[r * k + (int64_t)labels[r]];
  return acc / (double)n;
}

/* ---- ops/embedding.c ---- */

void naive_embedding(const float *idx, int64_t nidx, const float *w, int64_t dim, float *y) {
  for (int64_t i = 0; i < nidx; i++)
    for (int64_t j = 0; j < dim; j++) y[i * dim + j] = w[(int64_t)idx[i] * dim + j];
}

void naive_timestep_embedding(const float *t, int64_t n, int64_t dim, double max_period, double *y) {
  int64_t half = dim / 2;
  for (int64_t i = 0; i < n; i++) {
    for (int64_t j = 0; j < dim; j++) y[i * dim + j] = 0;
    for (int64_t j = 0; j < half; j++) {
      double f = pow(max_period, -(double)j / (double)half);
      y[i * dim + j] = cos(t[i] * f);
      y[i * dim + half + j] = sin(t[i] * f);
    }
  }
}

/* ---- layout ---- */

void naive_block(const float *plain, float *blocked, int64_t n, int64_t c, int64_t hw) {
  for (int64_t i = 0; i < n; i++)
    for (int64_t ch = 0; ch < c; ch++)
      for (int64_t p = 0; p < hw; p++)
        blocked[((i * (c / 16) + ch / 16) * hw + p) * 16 + ch % 16] = plain[(i * c + ch) * hw + p];
}

/* ---- optim.c ---- */

void naive_adam(double *p, const float *g, double *m, double *v, int64_t n, int step, double lr, double b1,
                double b2, double eps, double wd, bool decoupled) {
  for (int64_t i = 0; i < n; i++) {
    double gi = g[i];
    if (decoupled) p[i] *= 1 - lr * wd;
    else gi += wd * p[i];
    m[i] = b1 * m[i] + (1 - b1) * gi;
    v[i] = b2 * v[i] + (1 - b2) * gi * gi;
    double mhat = m[i] / (1 - pow(b1, step)), vhat = v[i] / (1 - pow(b2, step));
    p[i] -= lr * mhat / (sqrt(vhat) + eps);
  }
}

void naive_sgd(double *p, const float *g, double *buf, int64_t n, bool first, double lr, double momentum,
               double dampening, double wd, bool nesterov) {
  for (int64_t i = 0; i < n; i++) {
    double d = g[i] + wd * p[i];
    buf[i] = first ? d : momentum * buf[i] + (1 - dampening) * d;
    p[i] -= lr * (nesterov ? d + momentum * buf[i] : buf[i]);
  }
}

/* ---- rng.c ---- */

static void mulhilo(uint32_t a, uint32_t b, uint32_t *hi, uint32_t *lo) {
  uint64_t p = (uint64_t)a * b;
  *hi = (uint32_t)(p >> 32), *lo = (uint32_t)p;
}

/* mulhilo, then the round permutation, key bumped between rounds */
void naive_philox(const uint32_t key[2], const uint32_t ctr[4], uint32_t out[4]) {
  uint32_t c[4] = {ctr[0], ctr[1], ctr[2], ctr[3]}, k[2] = {key[0], key[1]};
  for (int r = 0; r < 10; r++) {
    if (r > 0) k[0] += 0x9E3779B9u, k[1] += 0xBB67AE85u;
    uint32_t hi0, lo0, hi1, lo1;
    mulhilo(0xD2511F53u, c[0], &hi0, &lo0);
    mulhilo(0xCD9E8D57u, c[2], &hi1, &lo1);
    uint32_t nx[4] = {hi1 ^ c[1] ^ k[0], lo1, hi0 ^ c[3] ^ k[1], lo0};
    memcpy(c, nx, sizeof c);
  }
  memcpy(out, c, sizeof c);
}

/* ---- io/png.c ---- */

unsigned char naive_to_byte(float v) {
  double b = ((double)v + 1.0) * 127.5;
  if (b != b) return 0;
  if (b < 0) b = 0;
  if (b > 255) b = 255;
  return (unsigned char)floor(b + 0.5); /* ties differ from lrintf only on exact .5, which the test avoids */
}

float naive_grid_at(const float *b, int64_t n, int64_t c, int64_t h, int64_t w, int64_t nrow, int64_t pad, float pv,
                    int64_t ch, int64_t y, int64_t x) {
  int64_t cols = n < nrow ? n : nrow;
  int64_t gy = y - pad, gx = x - pad;
  if (gy < 0 || gx < 0 || gy % (h + pad) >= h || gx % (w + pad) >= w) return pv;
  int64_t i = (gy / (h + pad)) * cols + gx / (w + pad);
  if (gx / (w + pad) >= cols || i >= n) return pv;
  return b[((i * c + ch) * h + gy % (h + pad)) * w + gx % (w + pad)];
}
