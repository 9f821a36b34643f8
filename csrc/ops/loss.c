#include "loss.h"

#include <assert.h>
#include <math.h>
#include <stdlib.h>

#include "../autograd.h"
#include "../detsum.h"
#include "blocked.h"

enum { LOSS_MSE, LOSS_BCE, LOSS_BCE_LOGITS, LOSS_CE, LOSS_NLL, LOSS_COUNT };
static const char *const loss_names[] = {[LOSS_MSE] = "mse_loss", [LOSS_BCE] = "binary_cross_entropy",
                                         [LOSS_BCE_LOGITS] = "binary_cross_entropy_with_logits",
                                         [LOSS_CE] = "cross_entropy", [LOSS_NLL] = "nll_loss"};
static_assert(sizeof loss_names / sizeof *loss_names == LOSS_COUNT, "a loss without a name");

static int same_shape(const char *op, const md_tensor *a, const md_tensor *b) {
  if (md_same_shape(a, b)) return MD_OK;
  char sa[MD_SHAPE_STR_LEN], sb[MD_SHAPE_STR_LEN];
  return md_error("%s: input %s and target %s must have the same shape", op, md_shape_str(a, sa, sizeof sa),
                  md_shape_str(b, sb, sizeof sb));
}

static inline float log_clamped(float v) { return fmaxf(logf(v), -100.0f); }

/* ---- elementwise losses: mean over all elements of f(a, b) -------------------------- */

static double pair_loss(int kind, float a, float b) {
  switch (kind) {
  case LOSS_MSE: return (double)(a - b) * (a - b);
  case LOSS_BCE: return -(b * log_clamped(a) + (1.0f - b) * log_clamped(1.0f - a));
  default: /* BCE with logits: max(x, 0) - x y + log(1 + exp(-|x|)) */
    return fmaxf(a, 0.0f) - a * b + log1pf(expf(-fabsf(a)));
  }
}

/* d loss / d a for one element (before the 1/n of the mean) */
static float pair_grad(int kind, float a, float b) {
  switch (kind) {
  case LOSS_MSE: return 2.0f * (a - b);
  case LOSS_BCE: return (a - b) / fmaxf((1.0f - a) * a, 1e-12f);
  default: return 1.0f / (1.0f + expf(-a)) - b;
  }
}

static int pair_backward(md_node *n, const float *dout, float *const *din) {
  int kind = (int)n->iarg[0];
  const md_tensor *a = n->inputs[0], *b = n->inputs[1];
  const float *pa = md_data(a), *pb = md_data(b);
  float g = dout[0] / (float)a->numel;
#pragma omp parallel for if (a->numel > 32768) schedule(static)
  for (int64_t i = 0; i < a->numel; i++) {
    float d = g * pair_grad(kind, pa[i], pb[i]);
    if (din[0]) din[0][i] += d;
    /* the target's gradient: only MSE is symmetric; BCE's targets get the
       logit-space derivative like PyTorch */
    if (din[1]) {
      if (kind == LOSS_MSE) din[1][i] -= d;
      else if (kind == LOSS_BCE) din[1][i] += g * (log_clamped(1.0f - pa[i]) - log_clamped(pa[i]));
      else din[1][i] -= g * pa[i];
    }
  }
  return MD_OK;
}

static int pair_plain(md_tensor **out, int kind, md_tensor *a, md_tensor *b) {
  if (same_shape(loss_names[kind], a, b) != MD_OK) return MD_ERR;
  if (a->numel == 0) return md_error("%s: empty input", loss_names[kind]);
  const float *pa = md_data(a), *pb = md_data(b);
  if (kind == LOSS_BCE)
    for (int64_t i = 0; i < a->numel; i++)
      if (!(pa[i] >= 0.0f && pa[i] <= 1.0f))
        return md_error("binary_cross_entropy: input %g at element %lld is not a probability in [0, 1]", pa[i],
                        (long long)i + 1);
  double part[MD_SUM_CHUNKS];
#pragma omp parallel for if (a->numel > 32768) schedule(static)
  for (int c = 0; c < MD_SUM_CHUNKS; c++) {
    double s = 0;
    for (int64_t i = md_chunk_start(a->numel, c); i < md_chunk_start(a->numel, c + 1); i++)
      s += pair_loss(kind, pa[i], pb[i]);
    part[c] = s;
  }
  double acc = md_sum_parts(part);
  md_tensor *y = md_tensor_scalar((float)(acc / (double)a->numel));
  if (!y) return MD_ERR;
  md_node *n;
  if (md_record(&n, y, loss_names[kind], pair_backward, 2, (md_tensor *[]){a, b}) != MD_OK) {
    md_tensor_release(y);
    return MD_ERR;
  }
  if (n) n->iarg[0] = kind;
  *out = y;
  return MD_OK;
}

static int pair(md_tensor **out, int kind, md_tensor *a, md_tensor *b) {
  md_tensor *a_ = a, *b_ = b;
  md_plain_scope plain;
  if (md_plain_inputs(&plain, 2, (md_tensor **const[]){&a_, &b_}) != MD_OK) return MD_ERR;
  int rc = pair_plain(out, kind, a_, b_);
  md_plain_release(&plain);
  return rc;
}

int md_mse_loss(md_tensor **out, md_tensor *a, md_tensor *b) { return pair(out, LOSS_MSE, a, b); }
int md_binary_cross_entropy(md_tensor **out, md_tensor *p, md_tensor *y) { return pair(out, LOSS_BCE, p, y); }
int md_binary_cross_entropy_with_logits(md_tensor **out, md_tensor *x, md_tensor *y) {
  return pair(out, LOSS_BCE_LOGITS, x, y);
}

/* ---- classification losses ------------------------------------------------------------ */

static int check_labels(const char *op, const md_tensor *x, const md_tensor *labels) {
  char sx[MD_SHAPE_STR_LEN], sl[MD_SHAPE_STR_LEN];
  if (x->ndim != 2) return md_error("%s: input must be N x classes, got %s", op, md_shape_str(x, sx, sizeof sx));
  if (labels->ndim != 1 || labels->shape[0] != x->shape[0])
    return md_error("%s: expected %lld labels for input %s, got labels of shape %s", op, (long long)x->shape[0],
                    md_shape_str(x, sx, sizeof sx), md_shape_str(labels, sl, sizeof sl));
  if (x->shape[0] == 0) return md_error("%s: empty batch", op);
  const float *l = md_data(labels);
  for (int64_t i = 0; i < labels->numel; i++)
    if (!(l[i] >= 0 && l[i] < (float)x->shape[1] && l[i] == floorf(l[i])))
      return md_error("%s: label %g out of range for %lld classes", op, l[i], (long long)x->shape[1]);
  return MD_OK;
}

/* Cross-entropy saves the softmax; NLL needs nothing but the labels. */
static int class_backward(md_node *n, const float *dout, float *const *din) {
  if (!din[0]) return MD_OK;
  const md_tensor *x = n->inputs[0];
  int64_t rows = x->shape[0], k = x->shape[1];
  const float *l = md_data(n->saved[0]);
  float g = dout[0] / (float)rows;
  for (int64_t r = 0; r < rows; r++) {
    float *d = din[0] + r * k;
    if (n->iarg[0] == LOSS_CE) {
      const float *p = md_data(n->saved[1]) + r * k;
      for (int64_t j = 0; j < k; j++) d[j] += g * p[j];
    }
    d[(int64_t)l[r]] -= g;
  }
  return MD_OK;
}

static int classify_plain(md_tensor **out, int kind, md_tensor *x, const md_tensor *labels) {
  if (check_labels(loss_names[kind], x, labels) != MD_OK) return MD_ERR;
  int64_t rows = x->shape[0], k = x->shape[1];
  const float *px = md_data(x), *l = md_data(labels);
  md_tensor *probs = kind == LOSS_CE ? md_tensor_empty_like(x) : NULL;
  if (kind == LOSS_CE && !probs) return MD_ERR;
  double acc = 0;
  for (int64_t r = 0; r < rows; r++) {
    const float *xr = px + r * k;
    int64_t label = (int64_t)l[r];
    if (kind == LOSS_NLL) {
      acc -= xr[label];
      continue;
    }
    float m = -INFINITY;
    for (int64_t j = 0; j < k; j++) m = fmaxf(m, xr[j]);
    double s = 0;
    for (int64_t j = 0; j < k; j++) s += exp((double)(xr[j] - m));
    double lse = m + log(s);
    float *pr = md_data(probs) + r * k;
    for (int64_t j = 0; j < k; j++) pr[j] = (float)exp(xr[j] - lse);
    acc += lse - xr[label];
  }
  md_tensor *y = md_tensor_scalar((float)(acc / (double)rows));
  md_node *n = NULL;
  int rc = y ? md_record(&n, y, loss_names[kind], class_backward, 1, &x) : MD_ERR;
  if (rc == MD_OK && n) {
    n->iarg[0] = kind;
    rc = md_node_save(n, 0, labels);
    if (rc == MD_OK && probs) rc = md_node_save(n, 1, probs);
  }
  md_tensor_release(probs);
  if (rc != MD_OK) {
    md_tensor_release(y);
    return MD_ERR;
  }
  *out = y;
  return MD_OK;
}

static int classify(md_tensor **out, int kind, md_tensor *x, const md_tensor *labels) {
  md_tensor *x_ = x, *labels_ = (md_tensor *)labels;
  md_plain_scope plain;
  if (md_plain_inputs(&plain, 2, (md_tensor **const[]){&x_, &labels_}) != MD_OK) return MD_ERR;
  int rc = classify_plain(out, kind, x_, labels_);
  md_plain_release(&plain);
  return rc;
}

int md_cross_entropy(md_tensor **out, md_tensor *logits, const md_tensor *labels) {
  return classify(out, LOSS_CE, logits, labels);
}
int md_nll_loss(md_tensor **out, md_tensor *logp, const md_tensor *labels) {
  return classify(out, LOSS_NLL, logp, labels);
}
