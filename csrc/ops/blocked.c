#include "blocked.h"

#include <string.h>

#include "../alloc.h"
#include "../autograd.h"

/* n elements from `from` (stride fs) to `to` (stride ts); the callers pass
 * the strides as constants, so that each direction gets its own vector code */
static inline void move(const float *from, int64_t fs, float *to, int64_t ts, int64_t n, bool accumulate) {
  if (accumulate)
    for (int64_t p = 0; p < n; p++) to[p * ts] += from[p * fs];
  else
    for (int64_t p = 0; p < n; p++) to[p * ts] = from[p * fs];
}

/* Each (image, 16-channel block) is a [16, hw] plain tile transposed into
 * [hw, 16] (or back); tiles are independent. Lane l of the block is plain
 * row l. */
static void convert_tiles(const float *src, float *dst, int64_t n, int64_t c, int64_t hw, bool to_blocked,
                          bool accumulate) {
  int64_t tiles = n * (c / MD_BLOCK);
#pragma omp parallel for if (tiles * hw * MD_BLOCK > 32768) schedule(static)
  for (int64_t t = 0; t < tiles; t++) {
    const float *s = src + t * MD_BLOCK * hw;
    float *d = dst + t * MD_BLOCK * hw;
    for (int l = 0; l < MD_BLOCK; l++) {
      if (to_blocked) move(s + l * hw, 1, d + l, MD_BLOCK, hw, accumulate);
      else move(s + l, MD_BLOCK, d + l * hw, 1, hw, accumulate);
    }
  }
}

void md_block_kernel(const float *plain, float *blocked, int64_t n, int64_t c, int64_t hw, bool accumulate) {
  convert_tiles(plain, blocked, n, c, hw, true, accumulate);
}

void md_unblock_kernel(const float *blocked, float *plain, int64_t n, int64_t c, int64_t hw, bool accumulate) {
  convert_tiles(blocked, plain, n, c, hw, false, accumulate);
}

static int64_t plane(const md_tensor *x) { return x->shape[2] * x->shape[3]; }

/* the gradient goes back through the inverse conversion (assigned when fresh) */
static int to_plain_backward(md_node *n, const float *dout, float *const *din) {
  const md_tensor *x = n->inputs[0];
  if (din[0]) md_block_kernel(dout, din[0], x->shape[0], x->shape[1], plane(x), !n->fresh[0]);
  return MD_OK;
}

static int to_blocked_backward(md_node *n, const float *dout, float *const *din) {
  const md_tensor *x = n->inputs[0];
  if (din[0]) md_unblock_kernel(dout, din[0], x->shape[0], x->shape[1], plane(x), !n->fresh[0]);
  return MD_OK;
}

static int convert(md_tensor **out, md_tensor *x, md_layout to) {
  if (x->storage->layout == to) {
    md_tensor_retain(x);
    *out = x;
    return MD_OK;
  }
  md_tensor *y = md_tensor_new_layout(x->ndim, x->shape, to);
  if (!y) return MD_ERR;
  if (to == MD_LAYOUT_PLAIN) md_unblock_kernel(md_data(x), md_data(y), x->shape[0], x->shape[1], plane(x), false);
  else md_block_kernel(md_data(x), md_data(y), x->shape[0], x->shape[1], plane(x), false);
  md_node *n;
  if (md_record(&n, y, to == MD_LAYOUT_PLAIN ? "to_plain" : "to_blocked",
                to == MD_LAYOUT_PLAIN ? to_plain_backward : to_blocked_backward, 1, &x) != MD_OK) {
    md_tensor_release(y);
    return MD_ERR;
  }
  if (n) n->assigns = true;
  *out = y;
  return MD_OK;
}

int md_to_plain(md_tensor **out, md_tensor *x) { return convert(out, x, MD_LAYOUT_PLAIN); }

int md_to_blocked(md_tensor **out, md_tensor *x) {
  if (!md_blockable(x->ndim, x->shape)) {
    char buf[MD_SHAPE_STR_LEN];
    return md_error("to_blocked: needs N x C x H x W with C a multiple of %d, got %s", MD_BLOCK,
                    md_shape_str(x, buf, sizeof buf));
  }
  return convert(out, x, MD_LAYOUT_BLOCKED);
}

int md_make_plain_inplace(md_tensor *t) {
  if (!md_is_blocked(t)) return MD_OK;
  md_tensor *p = md_tensor_new(t->ndim, t->shape);
  if (!p) return MD_ERR;
  md_unblock_kernel(md_data(t), md_data(p), t->shape[0], t->shape[1], plane(t), false);
  /* swap storages: t takes the plain one, p releases the blocked one. The
   * old storage's version moves on, so nodes that saved it refuse to sweep,
   * and the new one starts past every version recorded for t. */
  md_storage *old = t->storage;
  old->version++;
  t->storage = p->storage;
  t->storage->version = old->version;
  p->storage = old;
  md_tensor_release(p);
  return MD_OK;
}
