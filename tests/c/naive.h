/* The naive references every C suite checks the library against, in one
 * place: the most direct loops from each definition, accumulating in double
 * precision. Each says which code it is the oracle of. Results of arithmetic
 * are written as double (naive_to_float converts for ck_assert_close); pure
 * data movement writes float. Backward references accumulate into their
 * outputs, as the kernels they check do. Linked into every suite (naive.c). */
#ifndef MD_TEST_NAIVE_H
#define MD_TEST_NAIVE_H

#include <stdbool.h>
#include <stdint.h>

#include "backend/conv_shape.h"
#include "ops/pointwise.h"
#include "ops/reduce.h"
#include "tensor.h"

/* A malloc'd float copy of d[0..n). */
float *naive_to_float(const double *d, int64_t n);

/* ---- ops/pointwise.c ---- */

/* md_unary / md_unary_: op applied to one value with parameters p0, p1 */
double naive_unary(md_unary_op op, double x, double p0, double p1);
/* md_binary / md_binary_ (and the comparisons: 1 or 0) */
double naive_binary(md_binary_op op, double a, double b);
/* Broadcasting (md_binary, md_where, md_copy_): the flat index into x of the
 * element that lands at position flat of an output of shape (nd, shape); x's
 * dims are right-aligned and its size-1 dims repeat. */
int64_t naive_broadcast_index(const md_tensor *x, int nd, const int64_t *shape, int64_t flat);

/* ---- ops/reduce.c ---- */

/* md_reduce over x viewed as [outer, len, inner], reducing len: y [outer, inner] */
void naive_reduce(md_reduce_op op, const float *x, int64_t outer, int64_t len, int64_t inner, int correction,
                  double *y);
/* md_max (is_min: smallest) over the same view: values and the first index
 * of the extreme */
void naive_max(const float *x, int64_t outer, int64_t len, int64_t inner, bool is_min, float *values,
               int64_t *indices);

/* ---- ops/movement.c ---- */

/* md_cat of n tensors along dim (their other dims equal) into y */
void naive_cat(int n, md_tensor *const *xs, int dim, float *y);
/* md_stack of n same-shape tensors along a new dim */
void naive_stack(int n, md_tensor *const *xs, int dim, float *y);
/* md_permute: y.shape[i] = x.shape[perm[i]] */
void naive_permute(const md_tensor *x, const int *perm, float *y);
/* md_index_select: rows idx[0..nidx) of x along dim */
void naive_index_select(const md_tensor *x, int dim, const float *idx, int64_t nidx, float *y);

/* ---- ops/linalg.c ---- */

/* md_matmul / md_bmm: c[t] = a[t % na] @ b[t % nb] for t < batch, a [., m, k], b [., k, n] */
void naive_matmul(const float *a, const float *b, double *c, int64_t batch, int64_t na, int64_t nb, int64_t m,
                  int64_t k, int64_t n);

/* ---- ops/linear.c ---- */

/* md_linear_forward: y [rows, out] = x [rows, in] @ w [out, in]^T + b (b may be NULL) */
void naive_linear_forward(const float *x, const float *w, const float *b, double *y, int64_t rows, int64_t in,
                          int64_t out);
/* md_linear_backward: accumulates into dx, dw, db */
void naive_linear_backward(const float *x, const float *w, const float *dy, double *dx, double *dw, double *db,
                           int64_t rows, int64_t in, int64_t out);

/* ---- ops/conv.c, backend/conv_im2col.c, backend/conv_dnnl.c ---- */

/* direct convolution, NCHW, square kernel, zero padding (b may be NULL) */
void naive_conv2d_forward(const md_conv_shape *s, const float *x, const float *w, const float *b, double *y);
/* its adjoint, as the same loop nest: accumulates into dx, dw, db */
void naive_conv2d_backward(const md_conv_shape *s, const float *x, const float *w, const float *dy, double *dx,
                           double *dw, double *db);

/* ---- ops/norm.c ---- */

/* md_group_norm_forward: group_norm(x + shift[:, :, None]) * w + b, then SiLU
 * with silu; x, y [n, c, hw], shift [n, c] or NULL, w, b [c] */
void naive_group_norm(const float *x, const float *shift, const float *w, const float *b, double *y, int64_t n,
                      int64_t c, int64_t hw, int64_t groups, double eps, bool silu);

/* ---- ops/attention.c ---- */

/* md_attention_forward: qkv [n, 3C, l] -> out [n, C, l], softmax(q^T k / sqrt(d)) v per head */
void naive_attention(const float *qkv, double *out, int64_t n, int64_t heads, int64_t d, int64_t l);

/* ---- ops/pool.c ---- */

/* md_upsample_nearest_forward (plain): x [planes, h, w] -> y [planes, h*s, w*s] */
void naive_upsample_nearest_forward(const float *x, float *y, int64_t planes, int64_t h, int64_t w, int64_t s);
/* md_upsample_nearest_backward (plain): accumulates into dx */
void naive_upsample_nearest_backward(const float *dy, double *dx, int64_t planes, int64_t h, int64_t w, int64_t s);
/* md_avg_pool2d_forward: k x k windows every st, no padding */
void naive_avg_pool2d_forward(const float *x, double *y, int64_t planes, int64_t h, int64_t w, int64_t k, int64_t st);
/* md_avg_pool2d_backward: accumulates into dx */
void naive_avg_pool2d_backward(const float *dy, double *dx, int64_t planes, int64_t h, int64_t w, int64_t k,
                               int64_t st);

/* ---- ops/softmax.c ---- */

/* md_softmax (as_log: log_softmax) over x viewed as [outer, len, inner], along len */
void naive_softmax(const float *x, double *y, int64_t outer, int64_t len, int64_t inner, bool as_log);

/* ---- ops/loss.c (mean reduction) ---- */

/* md_mse_loss */
double naive_mse_loss(const float *a, const float *b, int64_t n);
/* md_binary_cross_entropy: logs clamped at -100 as in PyTorch */
double naive_binary_cross_entropy(const float *p, const float *y, int64_t n);
/* md_binary_cross_entropy_with_logits: BCE of sigmoid(x), computed directly */
double naive_binary_cross_entropy_with_logits(const float *x, const float *y, int64_t n);
/* md_cross_entropy: logits [n, k], labels [n] of 0-based classes */
double naive_cross_entropy(const float *logits, const float *labels, int64_t n, int64_t k);
/* md_nll_loss: logp [n, k] */
double naive_nll_loss(const float *logp, const float *labels, int64_t n, int64_t k);

/* ---- ops/embedding.c ---- */

/* md_embedding: rows idx[0..nidx) of w [., dim] */
void naive_embedding(const float *idx, int64_t nidx, const float *w, int64_t dim, float *y);
/* md_timestep_embedding: ADM's [cos(t f_j), sin(t f_j)], f_j = max_period^(-j/half);
 * an odd dim leaves the last column 0 */
void naive_timestep_embedding(const float *t, int64_t n, int64_t dim, double max_period, double *y);

/* ---- layout.c (md_block_kernel) and ops/blocked.c ---- */

/* plain [n, c, hw] -> blocked: (n, c, p) at ((n C/16 + c/16) hw + p) 16 + c%16 */
void naive_block(const float *plain, float *blocked, int64_t n, int64_t c, int64_t hw);

/* ---- optim.c ---- */

/* md_adam_step (decoupled: AdamW), PyTorch's rule at the given 1-based step */
void naive_adam(double *p, const float *g, double *m, double *v, int64_t n, int step, double lr, double b1,
                double b2, double eps, double wd, bool decoupled);
/* md_sgd_step with momentum (first: the buffer starts as the gradient), PyTorch's rule */
void naive_sgd(double *p, const float *g, double *buf, int64_t n, bool first, double lr, double momentum,
               double dampening, double wd, bool nesterov);

/* ---- rng.c ---- */

/* Philox4x32-10 as in Random123 */
void naive_philox(const uint32_t key[2], const uint32_t ctr[4], uint32_t out[4]);

/* ---- io/png.c ---- */

/* md_png_to_byte: [-1, 1] -> 0..255, rounded, NaN -> 0 */
unsigned char naive_to_byte(float v);
/* md_make_grid: the value at channel ch, row y, column x of the grid of
 * b [n, c, h, w] with nrow images a row, pad pixels of value pv between */
float naive_grid_at(const float *b, int64_t n, int64_t c, int64_t h, int64_t w, int64_t nrow, int64_t pad, float pv,
                    int64_t ch, int64_t y, int64_t x);

#endif
