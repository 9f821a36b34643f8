/* Nearest-neighbour upsampling and average pooling over NCHW planes: the
 * kernels behind md_upsample_nearest and md_avg_pool2d (declared in nn.h),
 * exposed for the tests. planes = N * C; backward accumulates into dx. */
#ifndef MD_POOL_H
#define MD_POOL_H

#include <stdint.h>

#include <stdbool.h>

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
