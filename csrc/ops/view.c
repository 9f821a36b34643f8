#include "view.h"

#include <string.h>

#include "../autograd.h"
#include "blocked.h"

/* The output is a window of the input starting at iarg[0] floats: its
 * gradient lands in the same window of the input's gradient. */
static int window_backward(md_node *n, const float *dout, float *const *din) {
  if (!din[0]) return MD_OK;
  float *d = din[0] + n->iarg[0];
  for (int64_t i = 0; i < n->out_numel; i++) d[i] += dout[i];
  return MD_OK;
}

static int window(md_tensor **out, md_tensor *x, int64_t offset, int ndim, const int64_t *shape,
                  const char *op) {
  md_tensor *v = md_tensor_alias(x, offset, ndim, shape);
  if (!v) return MD_ERR;
  md_node *n;
  if (md_record(&n, v, op, window_backward, 1, &x) != MD_OK) {
    md_tensor_release(v);
    return MD_ERR;
  }
  if (n) n->iarg[0] = offset;
  *out = v;
  return MD_OK;
}

static int reshape_plain(md_tensor **out, md_tensor *x, int ndim, const int64_t *shape) {
  int64_t s[MD_MAX_DIMS], known = 1;
  int infer = -1;
  if (ndim > MD_MAX_DIMS) return md_error("reshape: at most %d dimensions, got %d", MD_MAX_DIMS, ndim);
  for (int i = 0; i < ndim; i++) {
    s[i] = shape[i];
    if (s[i] == -1) {
      if (infer >= 0) return md_error("reshape: only one dimension can be -1");
      infer = i;
    } else if (s[i] < 0) {
      return md_error("reshape: invalid size %lld", (long long)s[i]);
    } else {
      known *= s[i];
    }
  }
  if (infer >= 0) {
    if (known == 0 || x->numel % known != 0)
      return md_error("reshape: cannot infer -1 for %lld elements", (long long)x->numel);
    s[infer] = x->numel / known;
    known *= s[infer];
  }
  if (known != x->numel) {
    char b[MD_SHAPE_STR_LEN];
    return md_error("reshape: tensor of shape %s has %lld elements, the new shape has %lld",
                    md_shape_str(x, b, sizeof b), (long long)x->numel, (long long)known);
  }
  return window(out, x, 0, ndim, s, "reshape");
}

int md_reshape(md_tensor **out, md_tensor *x, int ndim, const int64_t *shape) {
  md_tensor *x_ = x;
  md_plain_scope plain;
  if (md_plain_inputs(&plain, 1, (md_tensor **const[]){&x_}) != MD_OK) return MD_ERR;
  int rc = reshape_plain(out, x_, ndim, shape);
  md_plain_release(&plain);
  return rc;
}

static int narrow_first_plain(md_tensor **out, md_tensor *x, int64_t start, int64_t len) {
  if (x->ndim == 0) return md_error("narrow: cannot slice a 0-dimensional tensor");
  if (start < 0 || len < 0 || start + len > x->shape[0])
    return md_error("narrow: rows %lld..%lld out of range for dimension 1 of size %lld",
                    (long long)start + 1, (long long)(start + len), (long long)x->shape[0]);
  int64_t s[MD_MAX_DIMS];
  memcpy(s, x->shape, sizeof s);
  s[0] = len;
  int64_t inner = x->shape[0] ? x->numel / x->shape[0] : 0;
  return window(out, x, start * inner, x->ndim, s, "narrow");
}

int md_narrow_first(md_tensor **out, md_tensor *x, int64_t start, int64_t len) {
  md_tensor *x_ = x;
  md_plain_scope plain;
  if (md_plain_inputs(&plain, 1, (md_tensor **const[]){&x_}) != MD_OK) return MD_ERR;
  int rc = narrow_first_plain(out, x_, start, len);
  md_plain_release(&plain);
  return rc;
}

static int select_first_plain(md_tensor **out, md_tensor *x, int64_t i) {
  if (x->ndim == 0) return md_error("select: cannot index a 0-dimensional tensor");
  if (i < 0 || i >= x->shape[0])
    return md_error("select: index %lld out of range for dimension 1 of size %lld",
                    (long long)i + 1, (long long)x->shape[0]);
  int64_t inner = x->numel / x->shape[0];
  return window(out, x, i * inner, x->ndim - 1, x->shape + 1, "select");
}

int md_select_first(md_tensor **out, md_tensor *x, int64_t i) {
  md_tensor *x_ = x;
  md_plain_scope plain;
  if (md_plain_inputs(&plain, 1, (md_tensor **const[]){&x_}) != MD_OK) return MD_ERR;
  int rc = select_first_plain(out, x_, i);
  md_plain_release(&plain);
  return rc;
}
