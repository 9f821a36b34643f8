/* Nearest-neighbour upsampling and average pooling over NCHW planes: the
 * differentiable ops and the kernels behind them, exposed for the tests.
 * In the kernels planes = N * C; backward accumulates into dx. */
#ifndef MD_POOL_H
#define MD_POOL_H

#include <stdbool.h>
#include <stdint.h>

#include "../tensor.h"

int md_upsample_nearest(md_tensor **out, md_tensor *x, int64_t scale);
int md_avg_pool2d(md_tensor **out, md_tensor *x, int64_t k, int64_t stride);

/* x [planes, h, w] -> y [planes, h*s, w*s]; blocked: the same tensors in
 * the blocked layout (planes = N * C with C a multiple of 16) */
void md_upsample_nearest_forward(const float *x, float *y, int64_t planes, int64_t h, int64_t w, int64_t s,
                                 bool blocked);
void md_upsample_nearest_backward(const float *dy, float *dx, int64_t planes, int64_t h, int64_t w, int64_t s,
                                  bool blocked);

/* x [planes, h, w] -> y [planes, (h-k)/st+1, (w-k)/st+1], no padding */
void md_avg_pool2d_forward(const float *x, float *y, int64_t planes, int64_t h, int64_t w, int64_t k, int64_t st);
void md_avg_pool2d_backward(const float *dy, float *dx, int64_t planes, int64_t h, int64_t w, int64_t k,
                            int64_t st);

#endif
