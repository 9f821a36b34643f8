/* The description of one 2-D convolution that both engines take
 * (backend/conv_im2col.h, backend/conv_dnnl.h): NCHW, square kernels,
 * symmetric padding. ops/conv.c fills it from the tensors and picks the engine. */
#ifndef MD_CONV_SHAPE_H
#define MD_CONV_SHAPE_H

#include <stdint.h>

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

#endif
