/* The U-Net's other layers: group normalisation, softmax, embeddings,
 * spatial self-attention, nearest upsampling and average pooling. Each is a
 * forward kernel and a backward kernel over float buffers plus a
 * differentiable tensor-level op. */
#ifndef MD_NN_H
#define MD_NN_H

#include "../tensor.h"

/* x [N, C, *]; weight and bias [C] or NULL. PyTorch semantics: biased
 * variance, eps inside the square root. shift [N, C] or NULL is added to
 * x first: group_norm(x + shift[:, :, None, None]), the ResBlock's
 * embedding add. With silu, the output is silu(group_norm(...)), the
 * U-Net's norm-then-activate. One pass each way; the normalised values are
 * recomputed in backward instead of stored. */
int md_group_norm(md_tensor **out, md_tensor *x, int64_t groups, md_tensor *weight, md_tensor *bias, float eps,
                  bool silu, md_tensor *shift);

/* softmax / log_softmax along dim (0-based) */
int md_softmax(md_tensor **out, md_tensor *x, int dim, bool log);

/* idx: any shape of 0-based integer values < w.shape[0]; w [num, dim] */
int md_embedding(md_tensor **out, const md_tensor *idx, md_tensor *w);
/* ADM's sinusoidal embedding: t [N] -> [N, dim], cos half then sin half. */
int md_timestep_embedding(md_tensor **out, const md_tensor *t, int64_t dim, float max_period);

/* qkv [N, 3C, H, W] (q, k, v blocks of C channels, each split into heads of
 * C/heads channels) -> [N, C, H, W]: softmax(q^T k / sqrt(d)) v per head. */
int md_attention(md_tensor **out, md_tensor *qkv, int64_t heads);

int md_upsample_nearest(md_tensor **out, md_tensor *x, int64_t scale);
int md_avg_pool2d(md_tensor **out, md_tensor *x, int64_t k, int64_t stride);

/* Raw kernels, exposed for the tests. */
/* x, y [n, c, hw] (or blocked, c a multiple of 16); shift [n, c], w, b [c]
 * may be NULL; mean, rstd [n, groups] are written forward and read
 * backward. Backward accumulates into the gradients that are not NULL
 * (overwrites dx with assign_dx). */
int md_group_norm_forward(const float *x, const float *shift, const float *w, const float *b, float *y, float *mean,
                          float *rstd, int64_t n, int64_t c, int64_t hw, int64_t groups, float eps, bool silu,
                          bool blocked);
int md_group_norm_backward(const float *x, const float *shift, const float *w, const float *b, const float *mean,
                           const float *rstd, const float *dy, float *dx, float *dshift, float *dw, float *db,
                           int64_t n, int64_t c, int64_t hw, int64_t groups, bool silu, bool blocked,
                           bool assign_dx);
int md_attention_forward(const float *qkv, float *out, float *probs, int64_t n, int64_t heads, int64_t d, int64_t l);
/* backward adds into dqkv, or overwrites it with assign */
int md_attention_backward(const float *qkv, const float *probs, const float *dout, float *dqkv, int64_t n,
                          int64_t heads, int64_t d, int64_t l, bool assign);

#endif
