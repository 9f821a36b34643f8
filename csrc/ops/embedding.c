/* Embedding lookup (gather rows, scatter-add in backward) and ADM's
 * sinusoidal timestep embedding. */
#include <math.h>
#include <string.h>

#include "../autograd.h"
#include "embedding.h"
#include "blocked.h"

static int embedding_backward(md_node *n, const float *dout, float *const *din) {
  if (!din[0]) return MD_OK;
  const float *idx = md_data(n->saved[0]);
  int64_t dim = n->iarg[0];
  for (int64_t i = 0; i < n->saved[0]->numel; i++) {
    float *row = din[0] + (int64_t)idx[i] * dim;
    for (int64_t j = 0; j < dim; j++) row[j] += dout[i * dim + j];
  }
  return MD_OK;
}

static int embedding_plain(md_tensor **out, const md_tensor *idx, md_tensor *w) {
  char sw[MD_SHAPE_STR_LEN];
  if (w->ndim != 2) return md_error("embedding: weight must be num x dim, got %s", md_shape_str(w, sw, sizeof sw));
  if (idx->ndim + 1 > MD_MAX_DIMS) return md_error("embedding: indices have too many dimensions");
  int64_t num = w->shape[0], dim = w->shape[1];
  const float *pi = md_data(idx);
  for (int64_t i = 0; i < idx->numel; i++)
    if (!(pi[i] >= 0 && pi[i] < (float)num && pi[i] == floorf(pi[i])))
      return md_error("embedding: index %g out of range for %lld rows (indices are 0-based integers)", pi[i],
                      (long long)num);
  int64_t shape[MD_MAX_DIMS];
  memcpy(shape, idx->shape, sizeof(int64_t) * (size_t)idx->ndim);
  shape[idx->ndim] = dim;
  md_tensor *y = md_tensor_new(idx->ndim + 1, shape);
  if (!y) return MD_ERR;
  for (int64_t i = 0; i < idx->numel; i++)
    memcpy(md_data(y) + i * dim, md_data(w) + (int64_t)pi[i] * dim, (size_t)dim * sizeof(float));
  md_node *n;
  if (md_record(&n, y, "embedding", embedding_backward, 1, &w) != MD_OK || (n && md_node_save(n, 0, idx) != MD_OK)) {
    md_tensor_release(y);
    return MD_ERR;
  }
  if (n) n->iarg[0] = dim;
  *out = y;
  return MD_OK;
}

int md_embedding(md_tensor **out, const md_tensor *idx, md_tensor *w) {
  md_tensor *idx_ = (md_tensor *)idx, *w_ = w;
  md_plain_scope plain;
  if (md_plain_inputs(&plain, 2, (md_tensor **const[]){&idx_, &w_}) != MD_OK) return MD_ERR;
  int rc = embedding_plain(out, idx_, w_);
  md_plain_release(&plain);
  return rc;
}

static int timestep_embedding_plain(md_tensor **out, const md_tensor *t, int64_t dim, float max_period) {
  if (t->ndim != 1) return md_error("timestep_embedding: timesteps must be a 1-D tensor, got %d dimensions", t->ndim);
  if (dim < 1) return md_error("timestep_embedding: dim must be positive");
  for (int64_t i = 0; i < t->numel; i++) /* NaN or Inf would make every output NaN */
    if (!isfinite(md_data(t)[i])) return md_error("timestep_embedding: timestep %lld is %f", (long long)i + 1, md_data(t)[i]);
  int64_t shape[2] = {t->shape[0], dim}, half = dim / 2;
  md_tensor *y = md_tensor_zeros(2, shape);
  if (!y) return MD_ERR;
  for (int64_t i = 0; i < t->shape[0]; i++) {
    float *row = md_data(y) + i * dim;
    for (int64_t j = 0; j < half; j++) {
      double freq = exp(-log((double)max_period) * (double)j / (double)half);
      double a = (double)md_data(t)[i] * freq;
      row[j] = (float)cos(a);
      row[half + j] = (float)sin(a);
    }
  }
  *out = y;
  return MD_OK;
}

int md_timestep_embedding(md_tensor **out, const md_tensor *t, int64_t dim, float max_period) {
  md_tensor *t_ = (md_tensor *)t;
  md_plain_scope plain;
  if (md_plain_inputs(&plain, 1, (md_tensor **const[]){&t_}) != MD_OK) return MD_ERR;
  int rc = timestep_embedding_plain(out, t_, dim, max_period);
  md_plain_release(&plain);
  return rc;
}
