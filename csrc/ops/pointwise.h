/* Elementwise ops: binary ops with NumPy/PyTorch broadcasting, unary ops
 * (with up to two scalar parameters), comparisons and where. All
 * differentiable ones record autograd nodes; comparisons never do. */
#ifndef MD_POINTWISE_H
#define MD_POINTWISE_H

#include "../tensor.h"

typedef enum {
  MD_ADD, MD_SUB, MD_MUL, MD_DIV, MD_POW, MD_MAXIMUM, MD_MINIMUM,
  /* comparisons: 1.0 where true, 0.0 elsewhere; not differentiable */
  MD_EQ, MD_NE, MD_LT, MD_LE, MD_GT, MD_GE,
  MD_BINARY_COUNT,
} md_binary_op;

typedef enum {
  MD_NEG, MD_SQRT, MD_RSQRT, MD_EXP, MD_LOG, MD_ABS, MD_SIN, MD_COS,
  MD_SIGMOID, MD_TANH, MD_RELU, MD_SILU,
  MD_AFFINE,  /* p0 * x + p1: arithmetic with numbers */
  MD_RECIP,   /* p0 / x */
  MD_POWS,    /* x ^ p0 */
  MD_CLAMP,   /* min(max(x, p0), p1) */
  MD_UNARY_COUNT,
} md_unary_op;

const char *md_binary_name(md_binary_op op);
const char *md_unary_name(md_unary_op op);

/* out = a op b, broadcasting. */
int md_binary(md_tensor **out, md_binary_op op, md_tensor *a, md_tensor *b);
/* a = a op b in place; b must broadcast to a's shape. */
int md_binary_(md_binary_op op, md_tensor *a, const md_tensor *b);

int md_unary(md_tensor **out, md_unary_op op, md_tensor *x, float p0, float p1);
int md_unary_(md_unary_op op, md_tensor *x, float p0, float p1);

/* cond ? a : b elementwise, broadcasting all three; differentiable in a, b. */
int md_where(md_tensor **out, md_tensor *cond, md_tensor *a, md_tensor *b);

/* The broadcast shape of a and b, or an error naming op and both shapes. */
int md_broadcast_shape(const char *op, const md_tensor *a, const md_tensor *b, int *ndim, int64_t *shape);

#endif
