#include "reduce.h"

#include <assert.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../autograd.h"
#include "../detsum.h"
#include "../backend/threads.h"
#include "blocked.h"


static const char *const reduce_names[] = {[MD_SUM] = "sum", [MD_MEAN] = "mean", [MD_VAR] = "var", [MD_STD] = "std"};
static_assert(sizeof reduce_names / sizeof *reduce_names == MD_REDUCE_COUNT, "a reduction without a name");

/* x seen as [outer, len, inner] around the reduced dimension. */
typedef struct {
  int64_t outer, len, inner;
} span;

static int make_span(const char *op, const md_tensor *x, bool all, int dim, span *s, int *ndim,
                     int64_t *shape, bool keepdim) {
  if (all) {
    *s = (span){1, x->numel, 1};
    *ndim = 0;
    return MD_OK;
  }
  int d;
  if (md_resolve_dim(op, dim, x->ndim, &d) != MD_OK) return MD_ERR;
  s->outer = md_shape_numel(d, x->shape);
  s->len = x->shape[d];
  s->inner = md_shape_numel(x->ndim - d - 1, x->shape + d + 1);
  int k = 0;
  for (int i = 0; i < x->ndim; i++) {
    if (i != d) shape[k++] = x->shape[i];
    else if (keepdim) shape[k++] = 1;
  }
  *ndim = k;
  return MD_OK;
}

/* mean[o*inner+i] over the span, in double */
static void span_means(const float *x, span s, double *mean) {
  int64_t m = s.outer * s.inner;
#pragma omp parallel for if (m * s.len > MD_PAR_MIN && m > 1) schedule(static)
  for (int64_t oi = 0; oi < m; oi++) {
    int64_t o = oi / s.inner, i = oi % s.inner;
    const float *p = x + o * s.len * s.inner + i;
    double acc = 0;
    for (int64_t j = 0; j < s.len; j++) acc += p[j * s.inner];
    mean[oi] = s.len ? acc / (double)s.len : NAN;
  }
}

/* The all-elements case parallelises over the one long row instead. */
static double row_sum(const float *x, int64_t n) {
  double part[MD_SUM_CHUNKS];
#pragma omp parallel for if (n > MD_PAR_MIN) schedule(static)
  for (int c = 0; c < MD_SUM_CHUNKS; c++) {
    double s = 0;
    for (int64_t j = md_chunk_start(n, c); j < md_chunk_start(n, c + 1); j++) s += x[j];
    part[c] = s;
  }
  return md_sum_parts(part);
}

static double row_sq_dev(const float *x, int64_t n, double mean) {
  double part[MD_SUM_CHUNKS];
#pragma omp parallel for if (n > MD_PAR_MIN) schedule(static)
  for (int c = 0; c < MD_SUM_CHUNKS; c++) {
    double s = 0;
    for (int64_t j = md_chunk_start(n, c); j < md_chunk_start(n, c + 1); j++) s += (x[j] - mean) * (x[j] - mean);
    part[c] = s;
  }
  return md_sum_parts(part);
}

static int reduce_forward(md_reduce_op op, const float *x, span s, int correction, float *y) {
  int64_t m = s.outer * s.inner;
  double *mean = malloc((size_t)(m ? m : 1) * sizeof *mean);
  if (!mean) return md_error("%s: out of memory", reduce_names[op]);
  if (m == 1 && s.inner == 1) mean[0] = s.len ? row_sum(x, s.len) / (double)s.len : NAN;
  else span_means(x, s, mean);
  for (int64_t oi = 0; oi < m; oi++) {
    if (op == MD_SUM) y[oi] = s.len ? (float)(mean[oi] * (double)s.len) : 0.0f; /* empty sum is 0 */
    else if (op == MD_MEAN) y[oi] = (float)mean[oi];
  }
  if (op == MD_VAR || op == MD_STD) {
    double denom = (double)(s.len - correction);
    if (m == 1 && s.inner == 1) {
      double v = row_sq_dev(x, s.len, mean[0]) / denom;
      y[0] = (float)(op == MD_STD ? sqrt(v) : v);
    } else {
#pragma omp parallel for if (m * s.len > MD_PAR_MIN && m > 1) schedule(static)
      for (int64_t oi = 0; oi < m; oi++) {
        int64_t o = oi / s.inner, i = oi % s.inner;
        const float *p = x + o * s.len * s.inner + i;
        double acc = 0;
        for (int64_t j = 0; j < s.len; j++) acc += (p[j * s.inner] - mean[oi]) * (p[j * s.inner] - mean[oi]);
        double v = acc / denom;
        y[oi] = (float)(op == MD_STD ? sqrt(v) : v);
      }
    }
  }
  free(mean);
  return MD_OK;
}

static int reduce_backward(md_node *n, const float *dout, float *const *din) {
  if (!din[0]) return MD_OK;
  md_reduce_op op = (md_reduce_op)n->iarg[0];
  span s = {n->iarg[1], n->iarg[2], n->iarg[3]};
  int correction = (int)n->iarg[4];
  const float *x = md_data(n->inputs[0]);
  int64_t m = s.outer * s.inner;
  double *mean = NULL;
  if (op == MD_VAR || op == MD_STD) {
    mean = malloc((size_t)(m ? m : 1) * sizeof *mean);
    if (!mean) return md_error("%s backward: out of memory", reduce_names[op]);
    span_means(x, s, mean);
  }
  const float *y = n->saved[0] ? md_data(n->saved[0]) : NULL;
  float *dx = din[0];
  double denom = (double)(s.len - correction);
#pragma omp parallel for if (m * s.len > MD_PAR_MIN) schedule(static)
  for (int64_t o = 0; o < s.outer; o++) {
    for (int64_t j = 0; j < s.len; j++) {
      for (int64_t i = 0; i < s.inner; i++) {
        int64_t oi = o * s.inner + i, xi = (o * s.len + j) * s.inner + i;
        float g = dout[oi];
        switch (op) {
        case MD_SUM: dx[xi] += g; break;
        case MD_MEAN: dx[xi] += g / (float)s.len; break;
        case MD_VAR: dx[xi] += (float)(g * 2.0 * (x[xi] - mean[oi]) / denom); break;
        case MD_STD: dx[xi] += (float)(g * (x[xi] - mean[oi]) / (denom * y[oi])); break;
        case MD_REDUCE_COUNT: break;
        }
      }
    }
  }
  free(mean);
  return MD_OK;
}

static int reduce_plain(md_tensor **out, md_reduce_op op, md_tensor *x, bool all, int dim, bool keepdim,
              int correction) {
  span s;
  int nd;
  int64_t shape[MD_MAX_DIMS];
  if (make_span(reduce_names[op], x, all, dim, &s, &nd, shape, keepdim) != MD_OK) return MD_ERR;
  if ((op == MD_VAR || op == MD_STD) && s.len - correction <= 0)
    return md_error("%s: needs more than %d elements along the reduced dimension, got %lld",
                    reduce_names[op], correction, (long long)s.len);
  md_tensor *y = md_tensor_new(nd, shape);
  if (!y) return MD_ERR;
  if (reduce_forward(op, md_data(x), s, correction, md_data(y)) != MD_OK) {
    md_tensor_release(y);
    return MD_ERR;
  }
  md_node *n;
  if (md_record(&n, y, reduce_names[op], reduce_backward, 1, &x) != MD_OK ||
      (n && op == MD_STD && md_node_save(n, 0, y) != MD_OK)) {
    md_tensor_release(y);
    return MD_ERR;
  }
  if (n) {
    n->iarg[0] = op;
    n->iarg[1] = s.outer, n->iarg[2] = s.len, n->iarg[3] = s.inner;
    n->iarg[4] = correction;
  }
  *out = y;
  return MD_OK;
}

int md_reduce(md_tensor **out, md_reduce_op op, md_tensor *x, bool all, int dim, bool keepdim,
              int correction) {
  md_tensor *x_ = x;
  md_plain_scope plain;
  if (md_plain_inputs(&plain, 1, (md_tensor **const[]){&x_}) != MD_OK) return MD_ERR;
  int rc = reduce_plain(out, op, x_, all, dim, keepdim, correction);
  md_plain_release(&plain);
  return rc;
}

/* ---- max / min --------------------------------------------------------------------- */

static int max_backward(md_node *n, const float *dout, float *const *din) {
  if (!din[0]) return MD_OK;
  span s = {n->iarg[1], n->iarg[2], n->iarg[3]};
  const float *idx = md_data(n->saved[0]);
  for (int64_t o = 0; o < s.outer; o++)
    for (int64_t i = 0; i < s.inner; i++) {
      int64_t oi = o * s.inner + i;
      din[0][(o * s.len + (int64_t)idx[oi]) * s.inner + i] += dout[oi];
    }
  return MD_OK;
}

static int max_plain(md_tensor **values, md_tensor **indices, md_tensor *x, bool all, int dim, bool keepdim,
           bool is_min) {
  const char *op = is_min ? "min" : "max";
  span s;
  int nd;
  int64_t shape[MD_MAX_DIMS];
  if (make_span(op, x, all, dim, &s, &nd, shape, keepdim) != MD_OK) return MD_ERR;
  if (s.len == 0) return md_error("%s: cannot reduce an empty dimension", op);
  md_tensor *v = md_tensor_new(nd, shape), *ix = md_tensor_new(nd, shape);
  if (!v || !ix) {
    md_tensor_release(v);
    md_tensor_release(ix);
    return MD_ERR;
  }
  const float *px = md_data(x);
  float *pv = md_data(v), *pi = md_data(ix);
  int64_t m = s.outer * s.inner;
#pragma omp parallel for if (m * s.len > MD_PAR_MIN && m > 1) schedule(static)
  for (int64_t oi = 0; oi < m; oi++) {
    int64_t o = oi / s.inner, i = oi % s.inner;
    const float *p = px + o * s.len * s.inner + i;
    int64_t best = 0;
    for (int64_t j = 1; j < s.len; j++) {
      float a = p[j * s.inner], b = p[best * s.inner];
      if (isnan(b)) break; /* NaN wins, as in PyTorch */
      if (isnan(a) || (is_min ? a < b : a > b)) best = j;
    }
    pv[oi] = p[best * s.inner];
    pi[oi] = (float)best;
  }
  md_node *n;
  if (md_record(&n, v, op, max_backward, 1, &x) != MD_OK || (n && md_node_save(n, 0, ix) != MD_OK)) {
    md_tensor_release(v);
    md_tensor_release(ix);
    return MD_ERR;
  }
  if (n) n->iarg[1] = s.outer, n->iarg[2] = s.len, n->iarg[3] = s.inner;
  *values = v;
  if (indices) *indices = ix;
  else md_tensor_release(ix);
  return MD_OK;
}

int md_max(md_tensor **values, md_tensor **indices, md_tensor *x, bool all, int dim, bool keepdim,
           bool is_min) {
  md_tensor *x_ = x;
  md_plain_scope plain;
  if (md_plain_inputs(&plain, 1, (md_tensor **const[]){&x_}) != MD_OK) return MD_ERR;
  int rc = max_plain(values, indices, x_, all, dim, keepdim, is_min);
  md_plain_release(&plain);
  return rc;
}
