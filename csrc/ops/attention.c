/* Multi-head self-attention over the H*W positions of an NCHW tensor,
 * fused: scores, softmax and the weighted sum per (image, head) in one
 * pass, parallel over (image, head). At the U-Net's 7x7 (L = 49, d = 32)
 * the matrices are too small for BLAS to pay off; plain loops that
 * vectorise over positions are faster. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../autograd.h"
#include "nn.h"
#include "vmath.h"

/* q, k, v of head h in image i: [d, L] blocks of qkv [N, 3C, L] */
#define HEAD(base, i, part, h) ((base) + ((i) * 3 * heads * d + (part) * heads * d + (h) * d) * l)

/* dst[j][i] = src[i][j] for src [rows, cols] */
static void transpose(const float *restrict src, float *restrict dst, int64_t rows, int64_t cols) {
  for (int64_t i = 0; i < rows; i++)
    for (int64_t j = 0; j < cols; j++) dst[j * rows + i] = src[i * cols + j];
}

/* Row-wise softmax of p [l, l] in place. */
static void softmax_rows(float *p, int64_t l) {
  for (int64_t t = 0; t < l; t++) {
    float *row = p + t * l, m = -INFINITY, sum = 0;
    for (int64_t s = 0; s < l; s++) m = row[s] > m ? row[s] : m;
#pragma omp simd reduction(+ : sum)
    for (int64_t s = 0; s < l; s++) sum += row[s] = md_expf(row[s] - m);
    float inv = 1.0f / sum;
#pragma omp simd
    for (int64_t s = 0; s < l; s++) row[s] *= inv;
  }
}

/* Every product is written with the reduced index outside and a contiguous
 * one inside, so the inner loops are vector FMAs: the scores run over key
 * positions, and P V and dS K run over channels of the transposed V, K
 * (per-thread scratch), whose results are transposed back. */
int md_attention_forward(const float *qkv, float *out, float *probs, int64_t n, int64_t heads, int64_t d, int64_t l) {
  float scale = 1.0f / sqrtf((float)d);
  bool failed = false;
#pragma omp parallel
  {
    float *vt = malloc((size_t)(2 * l * d) * sizeof(float)), *ot = vt ? vt + l * d : NULL;
    if (!vt) {
#pragma omp atomic write
      failed = true;
    }
#pragma omp for schedule(static)
    for (int64_t ih = 0; ih < n * heads; ih++) {
      if (!vt) continue;
      int64_t i = ih / heads, h = ih % heads;
      const float *q = HEAD(qkv, i, 0, h), *k = HEAD(qkv, i, 1, h), *v = HEAD(qkv, i, 2, h);
      float *p = probs + ih * l * l, *o = out + (i * heads * d + h * d) * l;
      memset(p, 0, (size_t)(l * l) * sizeof(float));
      for (int64_t c = 0; c < d; c++)
        for (int64_t t = 0; t < l; t++) {
          float a = q[c * l + t] * scale;
#pragma omp simd
          for (int64_t s = 0; s < l; s++) p[t * l + s] += a * k[c * l + s];
        }
      softmax_rows(p, l);
      transpose(v, vt, d, l); /* vt [l, d] */
      memset(ot, 0, (size_t)(l * d) * sizeof(float));
      for (int64_t t = 0; t < l; t++)
        for (int64_t s = 0; s < l; s++) {
          float ps = p[t * l + s];
#pragma omp simd
          for (int64_t c = 0; c < d; c++) ot[t * d + c] += ps * vt[s * d + c];
        }
      transpose(ot, o, l, d);
    }
    free(vt);
  }
  return failed ? md_error("attention: out of memory") : MD_OK;
}

int md_attention_backward(const float *qkv, const float *probs, const float *dout, float *dqkv, int64_t n,
                          int64_t heads, int64_t d, int64_t l) {
  float scale = 1.0f / sqrtf((float)d);
  bool failed = false;
#pragma omp parallel
  {
    float *dp = malloc((size_t)(l * l + 2 * l * d) * sizeof(float));
    float *kt = dp ? dp + l * l : NULL, *dqt = dp ? kt + l * d : NULL;
    if (!dp) {
#pragma omp atomic write
      failed = true;
    }
#pragma omp for schedule(static)
    for (int64_t ih = 0; ih < n * heads; ih++) {
      if (!dp) continue;
      int64_t i = ih / heads, h = ih % heads;
      const float *q = HEAD(qkv, i, 0, h), *k = HEAD(qkv, i, 1, h), *v = HEAD(qkv, i, 2, h);
      float *dq = HEAD(dqkv, i, 0, h), *dk = HEAD(dqkv, i, 1, h), *dv = HEAD(dqkv, i, 2, h);
      const float *p = probs + ih * l * l, *g = dout + (i * heads * d + h * d) * l;
      memset(dp, 0, (size_t)(l * l) * sizeof(float));
      for (int64_t c = 0; c < d; c++)
        for (int64_t t = 0; t < l; t++) {
          float gc = g[c * l + t];
#pragma omp simd
          for (int64_t s = 0; s < l; s++) {
            dp[t * l + s] += gc * v[c * l + s];
            dv[c * l + s] += gc * p[t * l + s];
          }
        }
      /* through the softmax: dS = P * (dP - rowsum(dP * P)), in place */
      for (int64_t t = 0; t < l; t++) {
        float dot = 0;
#pragma omp simd reduction(+ : dot)
        for (int64_t s = 0; s < l; s++) dot += dp[t * l + s] * p[t * l + s];
#pragma omp simd
        for (int64_t s = 0; s < l; s++) dp[t * l + s] = p[t * l + s] * (dp[t * l + s] - dot) * scale;
      }
      for (int64_t c = 0; c < d; c++)
        for (int64_t t = 0; t < l; t++) {
          float a = q[c * l + t];
#pragma omp simd
          for (int64_t s = 0; s < l; s++) dk[c * l + s] += a * dp[t * l + s];
        }
      transpose(k, kt, d, l); /* kt [l, d] */
      memset(dqt, 0, (size_t)(l * d) * sizeof(float));
      for (int64_t t = 0; t < l; t++)
        for (int64_t s = 0; s < l; s++) {
          float ds = dp[t * l + s];
#pragma omp simd
          for (int64_t c = 0; c < d; c++) dqt[t * d + c] += ds * kt[s * d + c];
        }
      for (int64_t c = 0; c < d; c++)
        for (int64_t t = 0; t < l; t++) dq[c * l + t] += dqt[t * d + c];
    }
    free(dp);
  }
  return failed ? md_error("attention backward: out of memory") : MD_OK;
}

typedef struct {
  float *probs;
} attn_ctx;

static void attn_ctx_free(void *p) {
  free(((attn_ctx *)p)->probs);
  free(p);
}

static int attention_backward(md_node *n, const float *dout, float *const *din) {
  if (!din[0]) return MD_OK;
  const md_tensor *x = n->inputs[0];
  int64_t heads = n->iarg[0], c = x->shape[1] / 3, l = x->shape[2] * x->shape[3];
  return md_attention_backward(md_data(x), ((attn_ctx *)n->ctx)->probs, dout, din[0], x->shape[0], heads, c / heads,
                               l);
}

int md_attention(md_tensor **out, md_tensor *qkv, int64_t heads) {
  char sx[MD_SHAPE_STR_LEN];
  if (qkv->ndim != 4 || qkv->shape[1] % 3 != 0)
    return md_error("attention: expected qkv as N x 3C x H x W, got %s", md_shape_str(qkv, sx, sizeof sx));
  int64_t n = qkv->shape[0], c = qkv->shape[1] / 3, l = qkv->shape[2] * qkv->shape[3];
  if (heads < 1 || c % heads != 0)
    return md_error("attention: %lld channels do not split into %lld heads", (long long)c, (long long)heads);
  int64_t shape[4] = {n, c, qkv->shape[2], qkv->shape[3]};
  md_tensor *y = md_tensor_new(4, shape);
  attn_ctx *ctx = malloc(sizeof *ctx);
  if (ctx) ctx->probs = malloc((size_t)(n * heads * l * l + 1) * sizeof(float));
  if (!y || !ctx || !ctx->probs) {
    md_tensor_release(y);
    if (ctx) attn_ctx_free(ctx);
    return md_error("attention: out of memory");
  }
  if (md_attention_forward(md_data(qkv), md_data(y), ctx->probs, n, heads, c / heads, l) != MD_OK) {
    md_tensor_release(y);
    attn_ctx_free(ctx);
    return MD_ERR;
  }
  md_node *node;
  if (md_record(&node, y, "attention", attention_backward, 1, &qkv) != MD_OK) {
    md_tensor_release(y);
    attn_ctx_free(ctx);
    return MD_ERR;
  }
  if (node) {
    node->iarg[0] = heads;
    node->ctx = ctx;
    node->ctx_free = attn_ctx_free;
  } else {
    attn_ctx_free(ctx);
  }
  *out = y;
  return MD_OK;
}
