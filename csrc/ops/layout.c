#include "layout.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../autograd.h"
#include "view.h"

#define PAR_MIN 32768

/* ---- clone, copy_, fill_ ----------------------------------------------------- */

static int add_backward(md_node *n, const float *dout, float *const *din) {
  if (din[0])
    for (int64_t i = 0; i < n->out_numel; i++) din[0][i] += dout[i];
  return MD_OK;
}

int md_clone(md_tensor **out, md_tensor *x) {
  md_tensor *y = md_tensor_clone_data(x);
  if (!y) return MD_ERR;
  md_node *n;
  if (md_record(&n, y, "clone", add_backward, 1, &x) != MD_OK) {
    md_tensor_release(y);
    return MD_ERR;
  }
  *out = y;
  return MD_OK;
}

/* Same element count (any shape, as Torch7's copy) or src broadcasting to
 * dst's shape; a broadcast source is read through strides that are 0 along
 * its repeated dimensions. */
int md_copy_(md_tensor *dst, const md_tensor *src) {
  int64_t st[MD_MAX_DIMS] = {0};
  bool same = src->numel == dst->numel, fits = src->ndim <= dst->ndim;
  int64_t stride = 1;
  for (int d = dst->ndim - 1, s = src->ndim - 1; !same && fits && s >= 0; d--, s--) {
    fits = src->shape[s] == dst->shape[d] || src->shape[s] == 1;
    st[d] = src->shape[s] == 1 ? 0 : stride;
    stride *= src->shape[s];
  }
  if (!same && !fits) {
    char a[MD_SHAPE_STR_LEN], b[MD_SHAPE_STR_LEN];
    return md_error("copy_: source of shape %s does not fit a destination of shape %s",
                    md_shape_str(src, a, sizeof a), md_shape_str(dst, b, sizeof b));
  }
  if (md_begin_inplace(dst, "copy_") != MD_OK) return MD_ERR;
  const float *ps = md_data(src);
  float *pd = md_data(dst);
  if (same) {
    memmove(pd, ps, (size_t)dst->numel * sizeof(float));
    return MD_OK;
  }
#pragma omp parallel for if (dst->numel > PAR_MIN) schedule(static)
  for (int64_t i = 0; i < dst->numel; i++) {
    int64_t rem = i, off = 0;
    for (int d = dst->ndim - 1; d >= 0; d--) {
      off += (rem % dst->shape[d]) * st[d];
      rem /= dst->shape[d];
    }
    pd[i] = ps[off];
  }
  return MD_OK;
}

int md_fill_(md_tensor *dst, float value) {
  if (md_begin_inplace(dst, "fill_") != MD_OK) return MD_ERR;
  float *d = md_data(dst);
#pragma omp parallel for if (dst->numel > PAR_MIN) schedule(static)
  for (int64_t i = 0; i < dst->numel; i++) d[i] = value;
  return MD_OK;
}

/* ---- cat, stack ------------------------------------------------------------------
 * Along dim every tensor is [outer, len_k * inner]; the output interleaves
 * those blocks. */

/* Runs of w floats: piece o of input k sits at o * total * inner + at in the
 * output. In the blocked layout, concatenating whole 16-channel blocks
 * along channels gives the same runs as NCHW does. A fresh gradient is a
 * copy of its runs. */
static int cat_backward(md_node *n, const float *dout, float *const *din) {
  int64_t outer = n->iarg[0], inner = n->iarg[1], total = n->iarg[2], at = 0;
  for (int k = 0; k < n->ninputs; k++) {
    int64_t w = n->iarg[3 + k] * inner;
    if (din[k]) {
      float *dk = din[k];
      bool copy = n->fresh[k];
#pragma omp parallel for if (outer * w > 32768) schedule(static)
      for (int64_t o = 0; o < outer; o++) {
        const float *g = dout + o * total * inner + at;
        float *d = dk + o * w;
        if (copy) memcpy(d, g, (size_t)w * sizeof(float));
        else
          for (int64_t i = 0; i < w; i++) d[i] += g[i];
      }
    }
    at += w;
  }
  return MD_OK;
}

int md_cat(md_tensor **out, int n, md_tensor *const *xs, int dim) {
  if (n < 1) return md_error("cat: expected at least one tensor");
  const md_tensor *x0 = xs[0];
  int d;
  if (x0->ndim == 0) return md_error("cat: cannot concatenate 0-dimensional tensors");
  if (md_resolve_dim("cat", dim, x0->ndim, &d) != MD_OK) return MD_ERR;
  /* A node holds at most MD_NODE_MAX_INPUTS inputs: concatenate longer lists
   * as a tree of groups (each element copied log(n) times, not n times), so
   * the gradient still reaches every tensor. */
  if (n > MD_NODE_MAX_INPUTS) {
    int groups = MD_NODE_MAX_INPUTS, made = 0, rc = MD_OK;
    md_tensor *parts[MD_NODE_MAX_INPUTS];
    for (int g = 0; g < groups; g++) {
      int first = (int)((int64_t)n * g / groups), last = (int)((int64_t)n * (g + 1) / groups);
      rc = md_cat(&parts[g], last - first, xs + first, dim);
      if (rc != MD_OK) break;
      made++;
    }
    if (rc == MD_OK) rc = md_cat(out, groups, parts, dim);
    for (int g = 0; g < made; g++) md_tensor_release(parts[g]);
    return rc;
  }
  int64_t shape[MD_MAX_DIMS];
  memcpy(shape, x0->shape, sizeof shape);
  shape[d] = 0;
  for (int k = 0; k < n; k++) {
    const md_tensor *x = xs[k];
    bool ok = x->ndim == x0->ndim;
    for (int i = 0; ok && i < x->ndim; i++) ok = i == d || x->shape[i] == x0->shape[i];
    if (!ok) {
      char a[MD_SHAPE_STR_LEN], b[MD_SHAPE_STR_LEN];
      return md_error("cat: tensor %d has shape %s, expected %s except along dimension %d", k + 1,
                      md_shape_str(x, a, sizeof a), md_shape_str(x0, b, sizeof b), d + 1);
    }
    shape[d] += x->shape[d];
  }
  bool blocked = false;
  for (int k = 0; k < n; k++) blocked = blocked || md_is_blocked(xs[k]);
  if (blocked) { /* blocked inputs concatenate along channels only, all of them blocked */
    for (int k = 0; k < n; k++)
      if (!md_is_blocked(xs[k]) || d != 1)
        return md_error("internal: cat of blocked tensors needs all of them blocked, along dimension 2");
  }
  md_tensor *y = md_tensor_new_layout(x0->ndim, shape, blocked ? MD_LAYOUT_BLOCKED : MD_LAYOUT_PLAIN);
  if (!y) return MD_ERR;
  int64_t outer = md_shape_numel(d, shape), inner = md_shape_numel(x0->ndim - d - 1, shape + d + 1);
  int64_t at = 0;
  for (int k = 0; k < n; k++) {
    int64_t w = xs[k]->shape[d] * inner;
    const float *src = md_data(xs[k]);
    float *dst = md_data(y) + at;
#pragma omp parallel for if (outer * w > 32768) schedule(static)
    for (int64_t o = 0; o < outer; o++) memcpy(dst + o * shape[d] * inner, src + o * w, (size_t)w * sizeof(float));
    at += w;
  }
  md_node *node;
  if (md_record(&node, y, "cat", cat_backward, n, xs) != MD_OK) {
    md_tensor_release(y);
    return MD_ERR;
  }
  if (node) {
    node->assigns = true;
    node->iarg[0] = outer, node->iarg[1] = inner, node->iarg[2] = shape[d];
    for (int k = 0; k < n; k++) node->iarg[3 + k] = xs[k]->shape[d];
  }
  *out = y;
  return MD_OK;
}

int md_stack(md_tensor **out, int n, md_tensor *const *xs, int dim) {
  if (n < 1) return md_error("stack: expected at least one tensor");
  int d;
  if (md_resolve_dim("stack", dim, xs[0]->ndim + 1, &d) != MD_OK) return MD_ERR;
  if (xs[0]->ndim + 1 > MD_MAX_DIMS) return md_error("stack: result would have more than %d dimensions", MD_MAX_DIMS);
  md_tensor **views = malloc((size_t)n * sizeof *views);
  if (!views) return md_error("stack: out of memory for %d tensors", n);
  int rc = MD_OK, made = 0;
  for (int k = 0; k < n && rc == MD_OK; k++) {
    if (!md_same_shape(xs[k], xs[0])) {
      char a[MD_SHAPE_STR_LEN], b[MD_SHAPE_STR_LEN];
      rc = md_error("stack: tensor %d has shape %s, tensor 1 has %s", k + 1, md_shape_str(xs[k], a, sizeof a),
                    md_shape_str(xs[0], b, sizeof b));
      break;
    }
    int64_t shape[MD_MAX_DIMS];
    for (int i = 0, j = 0; i <= xs[k]->ndim; i++) shape[i] = i == d ? 1 : xs[k]->shape[j++];
    rc = md_reshape(&views[k], xs[k], xs[k]->ndim + 1, shape);
    if (rc == MD_OK) made++;
  }
  if (rc == MD_OK) rc = md_cat(out, n, views, d);
  for (int k = 0; k < made; k++) md_tensor_release(views[k]);
  free(views);
  return rc;
}

/* ---- permute ----------------------------------------------------------------------- */

/* For each output index, the input offset: out[o] = x[src_offset(o)]. The
 * backward pass runs the same walk and accumulates instead. */
static void permute_walk(int nd, const int64_t *out_shape, const int64_t *src_stride, const float *x,
                         float *y, bool backward) {
  int64_t len = nd ? out_shape[nd - 1] : 1, step = nd ? src_stride[nd - 1] : 0;
  int64_t rows = md_shape_numel(nd, out_shape) / (len ? len : 1);
  if (len == 0) return;
#pragma omp parallel for if (rows * len > PAR_MIN) schedule(static)
  for (int64_t r = 0; r < rows; r++) {
    int64_t off = 0, rem = r;
    for (int d = nd - 2; d >= 0; d--) {
      off += (rem % out_shape[d]) * src_stride[d];
      rem /= out_shape[d];
    }
    float *row = y + r * len;
    if (backward) {
      float *dx = (float *)x;
      for (int64_t i = 0; i < len; i++) dx[off + i * step] += row[i];
    } else {
      for (int64_t i = 0; i < len; i++) row[i] = x[off + i * step];
    }
  }
}

static void permuted_strides(const md_tensor *x, const int64_t *perm, int64_t *src_stride) {
  int64_t st[MD_MAX_DIMS], s = 1;
  for (int d = x->ndim - 1; d >= 0; d--) {
    st[d] = s;
    s *= x->shape[d];
  }
  for (int i = 0; i < x->ndim; i++) src_stride[i] = st[perm[i]];
}

static int permute_backward(md_node *n, const float *dout, float *const *din) {
  if (!din[0]) return MD_OK;
  int64_t src_stride[MD_MAX_DIMS];
  permuted_strides(n->inputs[0], n->iarg, src_stride);
  /* each input element appears once in the output, so rows never collide */
  permute_walk(n->out_ndim, n->out_shape, src_stride, din[0], (float *)dout, true);
  return MD_OK;
}

int md_permute(md_tensor **out, md_tensor *x, const int *perm) {
  int64_t shape[MD_MAX_DIMS], p64[MD_MAX_DIMS];
  bool seen[MD_MAX_DIMS] = {false};
  for (int i = 0; i < x->ndim; i++) {
    if (perm[i] < 0 || perm[i] >= x->ndim || seen[perm[i]])
      return md_error("permute: expected a permutation of the %d dimensions", x->ndim);
    seen[perm[i]] = true;
    p64[i] = perm[i];
    shape[i] = x->shape[perm[i]];
  }
  md_tensor *y = md_tensor_new(x->ndim, shape);
  if (!y) return MD_ERR;
  int64_t src_stride[MD_MAX_DIMS];
  permuted_strides(x, p64, src_stride);
  permute_walk(x->ndim, shape, src_stride, md_data(x), md_data(y), false);
  md_node *n;
  if (md_record(&n, y, "permute", permute_backward, 1, &x) != MD_OK) {
    md_tensor_release(y);
    return MD_ERR;
  }
  if (n) memcpy(n->iarg, p64, sizeof(int64_t) * (size_t)x->ndim);
  *out = y;
  return MD_OK;
}

/* ---- index_select -------------------------------------------------------------------- */

static int index_select_backward(md_node *n, const float *dout, float *const *din) {
  if (!din[0]) return MD_OK;
  int64_t outer = n->iarg[0], len = n->iarg[1], inner = n->iarg[2], k = n->iarg[3];
  const float *idx = md_data(n->saved[0]);
  for (int64_t o = 0; o < outer; o++)
    for (int64_t j = 0; j < k; j++) {
      const float *g = dout + (o * k + j) * inner;
      float *d = din[0] + (o * len + (int64_t)idx[j]) * inner;
      for (int64_t i = 0; i < inner; i++) d[i] += g[i];
    }
  return MD_OK;
}

int md_index_select(md_tensor **out, md_tensor *x, int dim, const md_tensor *idx) {
  int d;
  if (x->ndim == 0) return md_error("index_select: cannot index a 0-dimensional tensor");
  if (md_resolve_dim("index_select", dim, x->ndim, &d) != MD_OK) return MD_ERR;
  if (idx->ndim > 1) return md_error("index_select: indices must be 1-dimensional, got %d dimensions", idx->ndim);
  const float *pi = md_data(idx);
  int64_t k = idx->numel, len = x->shape[d];
  for (int64_t j = 0; j < k; j++)
    if (pi[j] != floorf(pi[j]))
      return md_error("index_select: index %g is not an integer", pi[j]);
    else if (!(pi[j] >= 0 && pi[j] < (float)len))
      return md_error("index_select: index %g out of range for dimension %d of size %lld (indices are 0-based)",
                      pi[j], d + 1, (long long)len);
  int64_t shape[MD_MAX_DIMS];
  memcpy(shape, x->shape, sizeof shape);
  shape[d] = k;
  md_tensor *y = md_tensor_new(x->ndim, shape);
  if (!y) return MD_ERR;
  int64_t outer = md_shape_numel(d, x->shape), inner = md_shape_numel(x->ndim - d - 1, x->shape + d + 1);
  const float *px = md_data(x);
  float *py = md_data(y);
#pragma omp parallel for if (y->numel > PAR_MIN) schedule(static)
  for (int64_t oj = 0; oj < outer * k; oj++) {
    int64_t o = oj / k, j = oj % k;
    memcpy(py + oj * inner, px + (o * len + (int64_t)pi[j]) * inner, (size_t)inner * sizeof(float));
  }
  md_node *n;
  if (md_record(&n, y, "index_select", index_select_backward, 1, &x) != MD_OK ||
      (n && md_node_save(n, 0, idx) != MD_OK)) {
    md_tensor_release(y);
    return MD_ERR;
  }
  if (n) n->iarg[0] = outer, n->iarg[1] = len, n->iarg[2] = inner, n->iarg[3] = k;
  *out = y;
  return MD_OK;
}
