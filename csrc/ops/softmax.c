/* softmax and log_softmax along one dimension, with max subtraction. */
#include <math.h>

#include "../autograd.h"
#include "softmax.h"
#include "blocked.h"

static void softmax_forward(const float *x, float *y, int64_t outer, int64_t len, int64_t inner, bool as_log) {
#pragma omp parallel for if (outer * inner * len > 32768) schedule(static)
  for (int64_t oi = 0; oi < outer * inner; oi++) {
    int64_t o = oi / inner, i = oi % inner;
    const float *xr = x + o * len * inner + i;
    float *yr = y + o * len * inner + i;
    float m = -INFINITY;
    for (int64_t j = 0; j < len; j++) m = fmaxf(m, xr[j * inner]);
    double s = 0;
    for (int64_t j = 0; j < len; j++) s += expf(xr[j * inner] - m);
    float ls = (float)log(s);
    for (int64_t j = 0; j < len; j++) {
      float z = xr[j * inner] - m - ls;
      yr[j * inner] = as_log ? z : expf(z);
    }
  }
}

/* softmax: dx = y * (dy - sum(dy * y)); log_softmax: dx = dy - exp(y) * sum(dy) */
static void softmax_backward_kernel(const float *y, const float *dy, float *dx, int64_t outer, int64_t len,
                                    int64_t inner, bool as_log) {
#pragma omp parallel for if (outer * inner * len > 32768) schedule(static)
  for (int64_t oi = 0; oi < outer * inner; oi++) {
    int64_t o = oi / inner, i = oi % inner, base = o * len * inner + i;
    double s = 0;
    for (int64_t j = 0; j < len; j++) s += as_log ? dy[base + j * inner] : dy[base + j * inner] * y[base + j * inner];
    for (int64_t j = 0; j < len; j++) {
      int64_t k = base + j * inner;
      dx[k] += as_log ? dy[k] - expf(y[k]) * (float)s : y[k] * (dy[k] - (float)s);
    }
  }
}

static int softmax_backward(md_node *n, const float *dout, float *const *din) {
  if (din[0])
    softmax_backward_kernel(md_data(n->saved[0]), dout, din[0], n->iarg[0], n->iarg[1], n->iarg[2], n->iarg[3]);
  return MD_OK;
}

static int softmax_plain(md_tensor **out, md_tensor *x, int dim, bool as_log) {
  const char *op = as_log ? "log_softmax" : "softmax";
  int d;
  if (x->ndim == 0) return md_error("%s: needs at least one dimension", op);
  if (md_resolve_dim(op, dim, x->ndim, &d) != MD_OK) return MD_ERR;
  int64_t outer = md_shape_numel(d, x->shape), len = x->shape[d];
  int64_t inner = md_shape_numel(x->ndim - d - 1, x->shape + d + 1);
  md_tensor *y = md_tensor_empty_like(x);
  if (!y) return MD_ERR;
  softmax_forward(md_data(x), md_data(y), outer, len, inner, as_log);
  md_node *n;
  if (md_record(&n, y, op, softmax_backward, 1, &x) != MD_OK || (n && md_node_save(n, 0, y) != MD_OK)) {
    md_tensor_release(y);
    return MD_ERR;
  }
  if (n) n->iarg[0] = outer, n->iarg[1] = len, n->iarg[2] = inner, n->iarg[3] = as_log;
  *out = y;
  return MD_OK;
}

int md_softmax(md_tensor **out, md_tensor *x, int dim, bool as_log) {
  md_tensor *x_ = x;
  md_plain_scope plain;
  if (md_plain_inputs(&plain, 1, (md_tensor **const[]){&x_}) != MD_OK) return MD_ERR;
  int rc = softmax_plain(out, x_, dim, as_log);
  md_plain_release(&plain);
  return rc;
}
