/* Convolution through oneDNN's blocked direct kernels (AVX-512 here): the
 * forward pass and both backward passes, on plain NCHW buffers. Primitives
 * are created once per shape and cached; layouts oneDNN prefers are
 * reached by reorders at the edges. Backward passes accumulate (+=). */
#ifndef MD_DNNL_CONV_H
#define MD_DNNL_CONV_H

#include "../ops/conv.h"

int md_dnnl_conv_forward(const md_conv_shape *s, const float *x, const float *w, const float *b, float *y);
int md_dnnl_conv_backward(const md_conv_shape *s, const float *x, const float *w, const float *dy, float *dx,
                          float *dw, float *db);
/* Frees every cached primitive. */
void md_dnnl_conv_clear_cache(void);

#endif
