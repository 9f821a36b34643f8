/* 2-D convolution, NCHW, square kernels, symmetric padding, optional bias.
 * The engine is oneDNN where available (backend/dnnl_conv.c) and
 * im2col + SGEMM otherwise; both are checked against a naive kernel in the
 * tests. */
#ifndef MD_CONV_H
#define MD_CONV_H

#include "../tensor.h"

typedef struct md_conv_shape {
  int64_t n, c, h, w;   /* input */
  int64_t o, k;         /* output channels, kernel size */
  int64_t stride, pad;
  int64_t ho, wo;       /* output */
  /* layouts of x (and dx) and y (and dy); im2col needs both plain. With
   * oneDNN, md_conv2d makes y blocked whenever o is a multiple of 16. */
  md_layout x_layout, y_layout;
  /* the weights' storage id and version, which name their contents: oneDNN
   * keeps its reordered copy of the weights until they change (w_id 0: do
   * not keep). Not part of the shape proper. */
  uint64_t w_id;
  uint32_t w_version;
} md_conv_shape;

/* MD_CONV_DNNL uses Winograd where it pays (see backend/dnnl_conv.h),
 * MD_CONV_DNNL_DIRECT never does. */
typedef enum { MD_CONV_IM2COL, MD_CONV_DNNL, MD_CONV_DNNL_DIRECT } md_conv_backend;

int md_conv2d(md_tensor **out, md_tensor *x, md_tensor *w, md_tensor *bias, int64_t stride, int64_t pad);

/* Which engine runs convolutions (for tests and benchmarks). */
int md_set_conv_backend(md_conv_backend b);
md_conv_backend md_get_conv_backend(void);

/* The im2col + SGEMM kernels, exposed for the tests. y = conv(x, w) + b;
 * backward accumulates into dx, dw, db (each may be NULL). */
int md_conv2d_im2col_forward(const md_conv_shape *s, const float *x, const float *w, const float *b, float *y);
int md_conv2d_im2col_backward(const md_conv_shape *s, const float *x, const float *w, const float *dy,
                              float *dx, float *dw, float *db);

#endif
