/* Multi-head self-attention over the H*W positions of an NCHW tensor. The
 * products run as batched matrix products over every (image, head) at once,
 * on strided views of the qkv buffer (no copies): at the U-Net's 7x7
 * (L = 49, d = 32) one oneDNN batched matmul is four times faster than
 * per-head loops. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../alloc.h"
#include "../autograd.h"
#include "../backend/blas.h"
#include "attention.h"
#include "vmath.h"
#include "blocked.h"

/* The products as batches over (image, head), as strided views of the
 * buffers: qkv [N, 3C, L] holds q, k, v of head h as [d, L] blocks (part 0,
 * 1, 2), out [N, C, L] holds o the same way, and the scores / probs are
 * [N, heads, L, L]. */
typedef struct {
  int64_t n, heads, d, l;
} attn_dims;

static const float *part(const float *qkv, const attn_dims *a, int p) { return qkv + p * a->heads * a->d * a->l; }
/* a [d, L] block of qkv (t = 1: its transpose, [L, d]) */
static md_strides qkv_view(const attn_dims *a, bool t) {
  return (md_strides){3 * a->heads * a->d * a->l, a->d * a->l, t ? 1 : a->l, t ? a->l : 1};
}
/* a [d, L] block of out / dout */
static md_strides out_view(const attn_dims *a) { return (md_strides){a->heads * a->d * a->l, a->d * a->l, a->l, 1}; }
/* an [L, L] matrix of the scores (t = 1: its transpose) */
static md_strides score_view(const attn_dims *a, bool t) {
  return (md_strides){a->heads * a->l * a->l, a->l * a->l, t ? 1 : a->l, t ? a->l : 1};
}

/* Row-wise softmax of rows [l] in place. */
static void softmax_rows(float *p, int64_t rows, int64_t l) {
#pragma omp parallel for if (rows * l > 32768) schedule(static)
  for (int64_t t = 0; t < rows; t++) {
    float *row = p + t * l, m = -INFINITY, sum = 0;
    for (int64_t s = 0; s < l; s++) m = row[s] > m ? row[s] : m;
#pragma omp simd reduction(+ : sum)
    for (int64_t s = 0; s < l; s++) sum += row[s] = md_expf(row[s] - m);
    float inv = 1.0f / sum;
#pragma omp simd
    for (int64_t s = 0; s < l; s++) row[s] *= inv;
  }
}

/* P = softmax(Q^T K / sqrt(d)) into probs, then O = V P^T. */
int md_attention_forward(const float *qkv, float *out, float *probs, int64_t n, int64_t heads, int64_t d, int64_t l) {
  attn_dims a = {n, heads, d, l};
  if (md_sgemm_batched(n, heads, l, l, d, 1.0f / sqrtf((float)d), part(qkv, &a, 0), qkv_view(&a, true),
                       part(qkv, &a, 1), qkv_view(&a, false), false, probs, score_view(&a, false)) != MD_OK)
    return MD_ERR;
  softmax_rows(probs, n * heads * l, l);
  return md_sgemm_batched(n, heads, d, l, l, 1.0f, part(qkv, &a, 2), qkv_view(&a, false), probs, score_view(&a, true),
                          false, out, out_view(&a));
}

/* dS = P * (dP - rowsum(dP * P)) / sqrt(d), in place of dP */
static void softmax_backward_rows(const float *p, float *dp, int64_t rows, int64_t l, float scale) {
#pragma omp parallel for if (rows * l > 32768) schedule(static)
  for (int64_t t = 0; t < rows; t++) {
    const float *pr = p + t * l;
    float *dr = dp + t * l, dot = 0;
#pragma omp simd reduction(+ : dot)
    for (int64_t s = 0; s < l; s++) dot += dr[s] * pr[s];
#pragma omp simd
    for (int64_t s = 0; s < l; s++) dr[s] = pr[s] * (dr[s] - dot) * scale;
  }
}

/* dV = dO P, dP = dO^T V, dS from dP, dQ = K dS^T, dK = Q dS; into dqkv,
 * added to it unless assign. */
int md_attention_backward(const float *qkv, const float *probs, const float *dout, float *dqkv, int64_t n,
                          int64_t heads, int64_t d, int64_t l, bool assign) {
  attn_dims a = {n, heads, d, l};
  md_strides qv = qkv_view(&a, false), ov = out_view(&a), sv = score_view(&a, false);
  float *dp = md_alloc_floats(n * heads * l * l);
  if (!dp) return md_error("attention backward: out of memory");
  bool acc = !assign;
  int rc = md_sgemm_batched(n, heads, d, l, l, 1.0f, dout, ov, probs, sv, acc, (float *)part(dqkv, &a, 2), qv);
  if (rc == MD_OK)
    rc = md_sgemm_batched(n, heads, l, l, d, 1.0f, dout, (md_strides){ov.b1, ov.b2, 1, l}, part(qkv, &a, 2), qv, false,
                          dp, sv);
  if (rc == MD_OK) {
    softmax_backward_rows(probs, dp, n * heads * l, l, 1.0f / sqrtf((float)d));
    rc = md_sgemm_batched(n, heads, d, l, l, 1.0f, part(qkv, &a, 1), qv, dp, score_view(&a, true), acc,
                          (float *)part(dqkv, &a, 0), qv);
  }
  if (rc == MD_OK)
    rc = md_sgemm_batched(n, heads, d, l, l, 1.0f, part(qkv, &a, 0), qv, dp, sv, acc, (float *)part(dqkv, &a, 1), qv);
  md_free_floats(dp, n * heads * l * l);
  return rc;
}

typedef struct {
  float *probs;
  int64_t floats;
} attn_ctx;

static void attn_ctx_free(void *p) {
  attn_ctx *c = p;
  md_free_floats(c->probs, c->floats);
  free(c);
}

static int attention_backward(md_node *n, const float *dout, float *const *din) {
  if (!din[0]) return MD_OK;
  const md_tensor *x = n->inputs[0];
  int64_t heads = n->iarg[0], c = x->shape[1] / 3, l = x->shape[2] * x->shape[3];
  return md_attention_backward(md_data(x), ((attn_ctx *)n->ctx)->probs, dout, din[0], x->shape[0], heads, c / heads,
                               l, n->fresh[0]);
}

static int attention_plain(md_tensor **out, md_tensor *qkv, int64_t heads) {
  char sx[MD_SHAPE_STR_LEN];
  if (qkv->ndim != 4 || qkv->shape[1] % 3 != 0)
    return md_error("attention: expected qkv as N x 3C x H x W, got %s", md_shape_str(qkv, sx, sizeof sx));
  int64_t n = qkv->shape[0], c = qkv->shape[1] / 3, l = qkv->shape[2] * qkv->shape[3];
  if (heads < 1 || c % heads != 0)
    return md_error("attention: %lld channels do not split into %lld heads", (long long)c, (long long)heads);
  int64_t shape[4] = {n, c, qkv->shape[2], qkv->shape[3]};
  md_tensor *y = md_tensor_new(4, shape);
  attn_ctx *ctx = malloc(sizeof *ctx);
  if (ctx) ctx->floats = n * heads * l * l, ctx->probs = md_alloc_floats(ctx->floats);
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
    node->assigns = true; /* q, k and v's gradients are each written once */
    node->ctx = ctx;
    node->ctx_free = attn_ctx_free;
  } else {
    attn_ctx_free(ctx);
  }
  *out = y;
  return MD_OK;
}

int md_attention(md_tensor **out, md_tensor *qkv, int64_t heads) {
  md_tensor *qkv_ = qkv;
  md_plain_scope plain;
  if (md_plain_inputs(&plain, 1, (md_tensor **const[]){&qkv_}) != MD_OK) return MD_ERR;
  int rc = attention_plain(out, qkv_, heads);
  md_plain_release(&plain);
  return rc;
}
