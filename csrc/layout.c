#include "layout.h"

#include "backend/threads.h"

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
#pragma omp parallel for if (tiles * hw * MD_BLOCK > MD_PAR_MIN) schedule(static)
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

int md_plain_values(md_tensor **out, const md_tensor *t) {
  if (!md_is_blocked(t)) {
    md_tensor_retain((md_tensor *)t);
    *out = (md_tensor *)t;
    return MD_OK;
  }
  md_tensor *p = md_tensor_new(t->ndim, t->shape);
  if (!p) return MD_ERR;
  md_unblock_kernel(md_data(t), md_data(p), t->shape[0], t->shape[1], plane(t), false);
  *out = p;
  return MD_OK;
}
