#include "tensor.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"

static int64_t live_bytes, total_bytes;
static uint64_t storages_made;

int64_t md_mem_live_bytes(void) { return live_bytes; }
int64_t md_mem_allocated_total(void) { return total_bytes; }

/* 64-byte aligned so that AVX-512 loads and oneDNN never see a split line. */
static md_storage *storage_new(int64_t n) {
  md_storage *s = malloc(sizeof *s);
  if (!s) {
    md_error("out of memory allocating a tensor header");
    return NULL;
  }
  int64_t bytes = md_alloc_bytes(n);
  s->data = md_alloc_floats(n);
  if (!s->data) {
    free(s);
    md_error("out of memory allocating %lld floats (%.1f MiB)", (long long)n,
             (double)bytes / (1 << 20));
    return NULL;
  }
  s->size = n;
  s->refcount = 1;
  s->version = 0;
  s->layout = MD_LAYOUT_PLAIN;
  s->id = ++storages_made;
  live_bytes += bytes;
  total_bytes += bytes;
  return s;
}

static void storage_release(md_storage *s) {
  if (!s || --s->refcount > 0) return;
  live_bytes -= md_alloc_bytes(s->size);
  md_free_floats(s->data, s->size);
  free(s);
}

int64_t md_shape_numel(int ndim, const int64_t *shape) {
  int64_t n = 1;
  for (int i = 0; i < ndim; i++) n *= shape[i];
  return n;
}

static int check_shape(int ndim, const int64_t *shape) {
  if (ndim < 0 || ndim > MD_MAX_DIMS)
    return md_error("tensors have 0 to %d dimensions, got %d", MD_MAX_DIMS, ndim);
  int64_t n = 1;
  for (int i = 0; i < ndim; i++) {
    if (shape[i] < 0)
      return md_error("size of dimension %d must be non-negative, got %lld", i + 1,
                      (long long)shape[i]);
    if (shape[i] > 0 && n > (INT64_C(1) << 40) / shape[i])
      return md_error("tensor too large");
    n *= shape[i];
  }
  return MD_OK;
}

static md_tensor *tensor_header(md_storage *s, int64_t offset, int ndim, const int64_t *shape) {
  md_tensor *t = calloc(1, sizeof *t);
  if (!t) {
    md_error("out of memory allocating a tensor header");
    return NULL;
  }
  t->refcount = 1;
  t->storage = s;
  t->offset = offset;
  t->ndim = ndim;
  for (int i = 0; i < ndim; i++) t->shape[i] = shape[i];
  t->numel = md_shape_numel(ndim, shape);
  return t;
}

md_tensor *md_tensor_new_layout(int ndim, const int64_t *shape, md_layout layout) {
  if (check_shape(ndim, shape) != MD_OK) return NULL;
  if (layout == MD_LAYOUT_BLOCKED && !md_blockable(ndim, shape))
    return md_error("a blocked tensor must be N x C x H x W with C a multiple of %d", MD_BLOCK), NULL;
  md_storage *s = storage_new(md_shape_numel(ndim, shape));
  if (!s) return NULL;
  s->layout = layout;
  md_tensor *t = tensor_header(s, 0, ndim, shape);
  if (!t) storage_release(s);
  return t;
}

md_tensor *md_tensor_new(int ndim, const int64_t *shape) { return md_tensor_new_layout(ndim, shape, MD_LAYOUT_PLAIN); }

md_tensor *md_tensor_full(int ndim, const int64_t *shape, float value) {
  md_tensor *t = md_tensor_new(ndim, shape);
  if (!t) return NULL;
  float *d = md_data(t);
  for (int64_t i = 0; i < t->numel; i++) d[i] = value;
  return t;
}

md_tensor *md_tensor_zeros(int ndim, const int64_t *shape) {
  md_tensor *t = md_tensor_new(ndim, shape);
  if (t) memset(md_data(t), 0, (size_t)t->numel * sizeof(float));
  return t;
}

md_tensor *md_tensor_empty_like(const md_tensor *t) { return md_tensor_new_layout(t->ndim, t->shape, t->storage->layout); }

md_tensor *md_tensor_zeros_like(const md_tensor *t) {
  md_tensor *z = md_tensor_empty_like(t);
  if (z) memset(md_data(z), 0, (size_t)z->numel * sizeof(float));
  return z;
}
md_tensor *md_tensor_scalar(float value) { return md_tensor_full(0, NULL, value); }

md_tensor *md_tensor_from_data(int ndim, const int64_t *shape, const float *data) {
  md_tensor *t = md_tensor_new(ndim, shape);
  if (t) memcpy(md_data(t), data, (size_t)t->numel * sizeof(float));
  return t;
}

md_tensor *md_tensor_clone_data(const md_tensor *t) {
  md_tensor *c = md_tensor_empty_like(t);
  if (c) memcpy(md_data(c), md_data(t), (size_t)t->numel * sizeof(float));
  return c;
}

md_tensor *md_tensor_alias(const md_tensor *t, int64_t offset, int ndim, const int64_t *shape) {
  if (check_shape(ndim, shape) != MD_OK) return NULL;
  int64_t n = md_shape_numel(ndim, shape);
  if (md_is_blocked(t) && (offset != 0 || ndim != t->ndim || n != t->numel || shape[1] != t->shape[1]))
    return md_error("internal: a view of a blocked tensor must have its shape (convert it to plain first)"), NULL;
  if (offset < 0 || t->offset + offset + n > t->storage->size)
    return md_error("view of %lld elements at offset %lld does not fit in %lld", (long long)n,
                    (long long)offset, (long long)(t->storage->size - t->offset)),
           NULL;
  md_tensor *v = tensor_header(t->storage, t->offset + offset, ndim, shape);
  if (v) t->storage->refcount++;
  return v;
}

void md_node_ref_release(md_node *n) {
  md_node_ref *r = (md_node_ref *)n;
  if (r && --r->refcount == 0) r->destroy(r);
}

void md_tensor_retain(md_tensor *t) {
  if (t) t->refcount++;
}

void md_tensor_release(md_tensor *t) {
  if (!t || --t->refcount > 0) return;
  storage_release(t->storage);
  md_tensor_release(t->grad);
  md_node_ref_release(t->grad_fn);
  free(t);
}

bool md_same_shape(const md_tensor *a, const md_tensor *b) {
  if (a->ndim != b->ndim) return false;
  for (int i = 0; i < a->ndim; i++)
    if (a->shape[i] != b->shape[i]) return false;
  return true;
}

const char *md_shape_str(const md_tensor *t, char *buf, size_t n) {
  size_t k = (size_t)snprintf(buf, n, "[");
  for (int i = 0; i < t->ndim && k < n; i++)
    k += (size_t)snprintf(buf + k, n - k, i ? ", %lld" : "%lld", (long long)t->shape[i]);
  if (k < n) snprintf(buf + k, n - k, "]");
  return buf;
}

int md_resolve_dim(const char *op, int dim, int ndim, int *out) {
  int d = dim < 0 ? dim + ndim : dim;
  if (d < 0 || d >= ndim)
    return md_error("%s: dimension %d out of range for a %d-dimensional tensor", op,
                    dim < 0 ? dim : dim + 1, ndim);
  *out = d;
  return MD_OK;
}
