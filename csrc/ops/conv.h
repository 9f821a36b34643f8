/* 2-D convolution, NCHW, square kernels, symmetric padding, optional bias.
 * The engine is oneDNN where available (backend/conv_dnnl.c) and
 * im2col + SGEMM otherwise; both are checked against a naive kernel in the
 * tests. */
#ifndef MD_CONV_H
#define MD_CONV_H

#include "../backend/conv_shape.h"


/* MD_CONV_DNNL uses Winograd where it pays (see backend/conv_dnnl.h),
 * MD_CONV_DNNL_DIRECT never does; MD_CONV_DNNL_BF16 is the direct kernels
 * on bfloat16 inputs with fp32 sums and outputs. */
typedef enum {
  MD_CONV_IM2COL,
  MD_CONV_DNNL,
  MD_CONV_DNNL_DIRECT,
  MD_CONV_DNNL_BF16,
  MD_CONV_BACKEND_COUNT
} md_conv_backend;

int md_conv2d(md_tensor **out, md_tensor *x, md_tensor *w, md_tensor *bias, int64_t stride, int64_t pad);

/* Which engine runs convolutions (for tests and benchmarks). */
int md_set_conv_backend(md_conv_backend b);
md_conv_backend md_get_conv_backend(void);

#endif
