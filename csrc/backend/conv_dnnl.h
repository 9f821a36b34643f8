/* Convolution through oneDNN's blocked kernels (AVX-512 here): the forward
 * pass and both backward passes, on NCHW or blocked (nChw16c) buffers as
 * the shape's layouts say. Primitives are created once per shape and
 * cached; other layouts oneDNN wants (the weights', a plain x) are reached
 * by reorders at the edges. Backward passes accumulate (+=). With winograd,
 * 3x3 stride-1 layers with 16-channel multiples and enough positions use
 * Winograd F(4x4, 3x3); everything else uses the direct kernels. */
#ifndef MD_CONV_DNNL_H
#define MD_CONV_DNNL_H

#include "conv_shape.h"

#include <stdbool.h>

/* winograd: Winograd F(4x4, 3x3) where it pays (fp32 only); bf16: x, w and
 * dy rounded to bfloat16, products summed in fp32, fp32 outputs. */
int md_dnnl_conv_forward(const md_conv_shape *s, bool winograd, bool bf16, const float *x, const float *w,
                         const float *b, float *y);
/* assign_dx, assign_dwb: overwrite dx (dw and db) instead of adding to them */
int md_dnnl_conv_backward(const md_conv_shape *s, bool winograd, bool bf16, const float *x, const float *w,
                          const float *dy, float *dx, float *dw, float *db, bool assign_dx, bool assign_dwb);
/* oneDNN's name for the forward kernel it picked for this shape (for tests
 * and benchmarks), or NULL without oneDNN. */
const char *md_dnnl_conv_impl(const md_conv_shape *s, bool winograd, bool bf16);
/* Frees every cached primitive. */
void md_dnnl_conv_clear_cache(void);

#endif
