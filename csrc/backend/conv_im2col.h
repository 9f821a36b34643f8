/* Convolution as im2col + SGEMM (OpenBLAS): the portable engine and the
 * reference the oneDNN engine (conv_dnnl.h) is tested against. Plain NCHW
 * buffers only. y = conv(x, w) + b; backward accumulates into dx, dw, db
 * (each may be NULL). */
#ifndef MD_CONV_IM2COL_H
#define MD_CONV_IM2COL_H

#include "conv_shape.h"

int md_conv2d_im2col_forward(const md_conv_shape *s, const float *x, const float *w, const float *b, float *y);
int md_conv2d_im2col_backward(const md_conv_shape *s, const float *x, const float *w, const float *dy,
                              float *dx, float *dw, float *db);

#endif
