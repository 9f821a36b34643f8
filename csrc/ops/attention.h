/* Spatial multi-head self-attention over a qkv tensor: the differentiable op
 * and its raw kernels. */
#ifndef MD_ATTENTION_H
#define MD_ATTENTION_H

#include <stdbool.h>
#include <stdint.h>

#include "../tensor.h"

/* qkv [N, 3C, H, W] (q, k, v blocks of C channels, each split into heads of
 * C/heads channels) -> [N, C, H, W]: softmax(q^T k / sqrt(d)) v per head. */
int md_attention(md_tensor **out, md_tensor *qkv, int64_t heads);


/* The raw kernels, exposed for the tests. */
int md_attention_forward(const float *qkv, float *out, float *probs, int64_t n, int64_t heads, int64_t d, int64_t l);
/* backward adds into dqkv, or overwrites it with assign */
int md_attention_backward(const float *qkv, const float *probs, const float *dout, float *dqkv, int64_t n,
                          int64_t heads, int64_t d, int64_t l, bool assign);

#endif
