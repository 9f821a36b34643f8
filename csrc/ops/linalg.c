#include "linalg.h"

#include <string.h>

#include "../autograd.h"
#include "../backend/blas.h"
#include "view.h"
#include "blocked.h"

/* ---- batched matmul -----------------------------------------------------------------
 * C[i] = A[i % na] @ B[i % nb] for i < batch: the operand with fewer batch
 * matrices repeats (its batch dims are the trailing batch dims of the other).
 * iarg: batch, m, k, n, na, nb. */

static int matmul_backward(md_node *n, const float *dout, float *const *din) {
  int64_t batch = n->iarg[0], m = n->iarg[1], k = n->iarg[2], nn = n->iarg[3], na = n->iarg[4], nb = n->iarg[5];
  const float *a = md_data(n->inputs[0]), *b = md_data(n->inputs[1]);
  if (din[0]) /* dA = dC B^T */
    for (int64_t i = 0; i < batch; i++)
      md_sgemm(false, true, m, k, nn, 1.0f, dout + i * m * nn, nn, b + (i % nb) * k * nn, nn, 1.0f,
               din[0] + (i % na) * m * k, k);
  if (din[1]) { /* dB = A^T dC, summed over the batches that shared B */
    if (nb == 1 && na == batch)
      md_sgemm(true, false, k, nn, batch * m, 1.0f, a, k, dout, nn, 1.0f, din[1], nn);
    else
      for (int64_t i = 0; i < batch; i++)
        md_sgemm(true, false, k, nn, m, 1.0f, a + (i % na) * m * k, k, dout + i * m * nn, nn, 1.0f,
                 din[1] + (i % nb) * k * nn, nn);
  }
  return MD_OK;
}

static int batched(md_tensor **out, md_tensor *a, md_tensor *b, int64_t batch, int64_t m, int64_t k,
                   int64_t nn, int64_t na, int64_t nb, int ndim, const int64_t *shape) {
  md_tensor *c = k ? md_tensor_new(ndim, shape) : md_tensor_zeros(ndim, shape); /* k = 0: an empty sum */
  if (!c) return MD_ERR;
  const float *pa = md_data(a), *pb = md_data(b);
  float *pc = md_data(c);
  if (k == 0)
    ;
  else if (nb == 1 && na == batch) /* one GEMM over all rows of all batches */
    md_sgemm(false, false, batch * m, nn, k, 1.0f, pa, k, pb, nn, 0.0f, pc, nn);
  else
    for (int64_t i = 0; i < batch; i++)
      md_sgemm(false, false, m, nn, k, 1.0f, pa + (i % na) * m * k, k, pb + (i % nb) * k * nn, nn, 0.0f,
               pc + i * m * nn, nn);
  md_node *node;
  if (md_record(&node, c, "matmul", matmul_backward, 2, (md_tensor *[]){a, b}) != MD_OK) {
    md_tensor_release(c);
    return MD_ERR;
  }
  if (node) {
    node->iarg[0] = batch, node->iarg[1] = m, node->iarg[2] = k, node->iarg[3] = nn;
    node->iarg[4] = na, node->iarg[5] = nb;
  }
  *out = c;
  return MD_OK;
}

static int mismatch(const char *op, const md_tensor *a, const md_tensor *b) {
  char sa[MD_SHAPE_STR_LEN], sb[MD_SHAPE_STR_LEN];
  return md_error("%s: shapes %s and %s do not multiply", op, md_shape_str(a, sa, sizeof sa),
                  md_shape_str(b, sb, sizeof sb));
}

static int bmm_plain(md_tensor **out, md_tensor *a, md_tensor *b) {
  if (a->ndim != 3 || b->ndim != 3 || a->shape[0] != b->shape[0] || a->shape[2] != b->shape[1])
    return mismatch("bmm", a, b);
  int64_t shape[3] = {a->shape[0], a->shape[1], b->shape[2]};
  return batched(out, a, b, a->shape[0], a->shape[1], a->shape[2], b->shape[2], a->shape[0], a->shape[0], 3, shape);
}

int md_bmm(md_tensor **out, md_tensor *a, md_tensor *b) {
  md_tensor *a_ = a, *b_ = b;
  md_plain_scope plain;
  if (md_plain_inputs(&plain, 2, (md_tensor **const[]){&a_, &b_}) != MD_OK) return MD_ERR;
  int rc = bmm_plain(out, a_, b_);
  md_plain_release(&plain);
  return rc;
}

static int matmul_plain(md_tensor **out, md_tensor *a, md_tensor *b) {
  if (a->ndim == 0 || b->ndim == 0) return mismatch("matmul", a, b);
  /* 1-D operands become a row (a) or a column (b), removed again afterwards */
  if (a->ndim == 1 || b->ndim == 1) {
    md_tensor *a2 = a, *b2 = b, *c = NULL, *r = NULL;
    int64_t sa[2] = {1, a->shape[0]}, sb[2] = {b->shape[0], 1};
    int rc = MD_OK;
    if (a->ndim == 1) rc = md_reshape(&a2, a, 2, sa);
    if (rc == MD_OK && b->ndim == 1) rc = md_reshape(&b2, b, 2, sb);
    if (rc == MD_OK) rc = md_matmul(&c, a2, b2);
    if (rc == MD_OK) {
      int64_t shape[MD_MAX_DIMS];
      int nd = 0;
      for (int i = 0; i < c->ndim; i++) {
        bool drop = (a->ndim == 1 && i == c->ndim - 2) || (b->ndim == 1 && i == c->ndim - 1);
        if (!drop) shape[nd++] = c->shape[i];
      }
      rc = md_reshape(&r, c, nd, shape);
    }
    if (a2 != a) md_tensor_release(a2);
    if (b2 != b) md_tensor_release(b2);
    md_tensor_release(c);
    if (rc == MD_OK) *out = r;
    return rc;
  }
  int64_t m = a->shape[a->ndim - 2], k = a->shape[a->ndim - 1];
  int64_t kb = b->shape[b->ndim - 2], nn = b->shape[b->ndim - 1];
  if (k != kb) return mismatch("matmul", a, b);
  /* batch dims: the shorter list must be the trailing part of the longer one */
  const md_tensor *longer = a->ndim >= b->ndim ? a : b, *shorter = longer == a ? b : a;
  int lead = longer->ndim - shorter->ndim;
  for (int i = 0; i < shorter->ndim - 2; i++)
    if (shorter->shape[i] != longer->shape[lead + i]) return mismatch("matmul", a, b);
  int64_t na = md_shape_numel(a->ndim - 2, a->shape), nb = md_shape_numel(b->ndim - 2, b->shape);
  int64_t shape[MD_MAX_DIMS];
  memcpy(shape, longer->shape, sizeof shape);
  shape[longer->ndim - 2] = m, shape[longer->ndim - 1] = nn;
  int64_t batch = md_shape_numel(longer->ndim - 2, longer->shape);
  return batched(out, a, b, batch, m, k, nn, na, nb, longer->ndim, shape);
}

int md_matmul(md_tensor **out, md_tensor *a, md_tensor *b) {
  md_tensor *a_ = a, *b_ = b;
  md_plain_scope plain;
  if (md_plain_inputs(&plain, 2, (md_tensor **const[]){&a_, &b_}) != MD_OK) return MD_ERR;
  int rc = matmul_plain(out, a_, b_);
  md_plain_release(&plain);
  return rc;
}
