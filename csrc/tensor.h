/* Tensors: float32, row-major (NCHW), contiguous, up to MD_MAX_DIMS dimensions.
 *
 * A tensor is a shape plus an offset into a refcounted storage. Views
 * (reshape, slicing along the first dimension) share storage; everything else
 * copies. Tensors themselves are refcounted too, because the autograd graph
 * holds references to the inputs of each recorded op.
 *
 * Ownership: every function returning md_tensor * hands the caller one
 * reference (release it with md_tensor_release), or returns NULL with an error
 * message set (see error.h). */
#ifndef MD_TENSOR_H
#define MD_TENSOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"

#define MD_MAX_DIMS 6

/* How a storage holds its tensor's values. Plain is row-major (NCHW).
 * Blocked is oneDNN's nChw16c: a 4-D [N, C, H, W] tensor with C a multiple
 * of 16 stored as [N][C/16][H][W][16], the layout oneDNN's convolutions read
 * and write natively. The U-Net's activations stay blocked from one
 * convolution to the next through the ops that know the layout (see
 * ops/blocked.h); the binding hands every other op a plain copy, so users
 * only ever see NCHW values. A tensor keeps its layout for life. */
typedef enum { MD_LAYOUT_PLAIN = 0, MD_LAYOUT_BLOCKED = 1 } md_layout;
#define MD_BLOCK 16

typedef struct md_storage {
  float *data;
  int64_t size;     /* in floats */
  int refcount;
  uint32_t version; /* bumped by every in-place write (code writing md_data()
                     * directly must bump it too); autograd and the
                     * convolution engine's weight cache rely on it */
  md_layout layout;
  uint64_t id; /* unique for the process's life: (id, version) names the contents */
} md_storage;

/* A tensor's autograd node (autograd.h) begins with this header: its
 * reference count and the function that frees it. That is all tensor.c
 * needs to know, so tensors sit below autograd. */
typedef struct md_node md_node;
typedef struct md_node_ref {
  int refcount;
  void (*destroy)(struct md_node_ref *self);
} md_node_ref;
/* Drops one reference to n (NULL is fine); the last one frees it. */
void md_node_ref_release(md_node *n);

typedef struct md_tensor {
  int refcount;
  md_storage *storage;
  int64_t offset; /* in floats */
  int ndim;       /* 0 for a scalar */
  int64_t shape[MD_MAX_DIMS];
  int64_t numel;
  /* autograd: a leaf has grad_fn == NULL; results of recorded ops have a
   * grad_fn and requires_grad set. `grad` is accumulated into leaves only. */
  bool requires_grad;
  struct md_tensor *grad;
  md_node *grad_fn;
} md_tensor;

static inline float *md_data(const md_tensor *t) { return t->storage->data + t->offset; }
static inline bool md_is_blocked(const md_tensor *t) { return t->storage->layout == MD_LAYOUT_BLOCKED; }
/* Whether a tensor of this shape can be blocked: 4-D, channels a positive multiple of 16. */
static inline bool md_blockable(int ndim, const int64_t *shape) {
  return ndim == 4 && shape[1] > 0 && shape[1] % MD_BLOCK == 0;
}

/* Creation. Shapes are validated (0..MD_MAX_DIMS dims, no negative sizes). */
md_tensor *md_tensor_new(int ndim, const int64_t *shape);   /* uninitialised */
/* Uninitialised, in the given layout (blocked needs a blockable shape). */
md_tensor *md_tensor_new_layout(int ndim, const int64_t *shape, md_layout layout);
md_tensor *md_tensor_zeros(int ndim, const int64_t *shape);
md_tensor *md_tensor_full(int ndim, const int64_t *shape, float value);
/* Same shape and layout as t. */
md_tensor *md_tensor_empty_like(const md_tensor *t);
md_tensor *md_tensor_zeros_like(const md_tensor *t);
md_tensor *md_tensor_scalar(float value);                   /* 0-dim */
md_tensor *md_tensor_from_data(int ndim, const int64_t *shape, const float *data);
/* A copy of the data, in t's layout: a new leaf that does not require grad. */
md_tensor *md_tensor_clone_data(const md_tensor *t);

/* A tensor sharing t's storage, starting `offset` floats into t, with the
 * given shape (which must fit). Not recorded by autograd: ops that expose
 * views to users (reshape, select) record their own node. */
md_tensor *md_tensor_alias(const md_tensor *t, int64_t offset, int ndim, const int64_t *shape);

void md_tensor_retain(md_tensor *t);
void md_tensor_release(md_tensor *t); /* NULL is fine */

/* Shape helpers. */
int64_t md_shape_numel(int ndim, const int64_t *shape);
bool md_same_shape(const md_tensor *a, const md_tensor *b);
/* Writes "[2, 3, 28, 28]" into buf and returns buf, for error messages. */
const char *md_shape_str(const md_tensor *t, char *buf, size_t n);
#define MD_SHAPE_STR_LEN 96
/* Resolves a 0-based dimension that may be negative (-1 = last);
 * returns MD_ERR with a message naming `op` when out of range. */
int md_resolve_dim(const char *op, int dim, int ndim, int *out);


/* Memory accounting, so the binding can tell Lua's collector about tensor
 * memory it cannot see. */
int64_t md_mem_live_bytes(void);
int64_t md_mem_allocated_total(void); /* monotonically increasing */

#endif
