#include "conv_im2col.h"

#include <stdlib.h>
#include <string.h>

#include "../error.h"
#include "blas.h"
#include "threads.h"


/* ---- im2col + SGEMM ------------------------------------------------------------------
 * For one image, col[(c*k + i)*k + j][oy*wo + ox] = x[c][oy*s + i - p][ox*s + j - p]
 * (0 outside), so that y = W[o][c*k*k] @ col. col2im is the adjoint: it
 * accumulates a column matrix back into the image. */

static void im2col(const md_conv_shape *s, const float *x, float *col) {
  int64_t k = s->k, hw = s->ho * s->wo, rows = s->c * k * k;
#pragma omp parallel for if (rows * hw > MD_PAR_MIN) schedule(static)
  for (int64_t r = 0; r < rows; r++) {
    int64_t c = r / (k * k), i = (r / k) % k, j = r % k;
    const float *xc = x + c * s->h * s->w;
    float *dst = col + r * hw;
    for (int64_t oy = 0; oy < s->ho; oy++) {
      int64_t iy = oy * s->stride + i - s->pad;
      float *d = dst + oy * s->wo;
      if (iy < 0 || iy >= s->h) {
        memset(d, 0, (size_t)s->wo * sizeof(float));
        continue;
      }
      const float *xrow = xc + iy * s->w;
      for (int64_t ox = 0; ox < s->wo; ox++) {
        int64_t ix = ox * s->stride + j - s->pad;
        d[ox] = ix >= 0 && ix < s->w ? xrow[ix] : 0.0f;
      }
    }
  }
}

static void col2im(const md_conv_shape *s, const float *col, float *dx) {
  int64_t k = s->k, hw = s->ho * s->wo;
  /* parallel over channels: each channel's rows touch only that channel */
#pragma omp parallel for if (s->c * k * k * hw > MD_PAR_MIN) schedule(static)
  for (int64_t c = 0; c < s->c; c++) {
    float *xc = dx + c * s->h * s->w;
    for (int64_t i = 0; i < k; i++)
      for (int64_t j = 0; j < k; j++) {
        const float *src = col + ((c * k + i) * k + j) * hw;
        for (int64_t oy = 0; oy < s->ho; oy++) {
          int64_t iy = oy * s->stride + i - s->pad;
          if (iy < 0 || iy >= s->h) continue;
          float *xrow = xc + iy * s->w;
          for (int64_t ox = 0; ox < s->wo; ox++) {
            int64_t ix = ox * s->stride + j - s->pad;
            if (ix >= 0 && ix < s->w) xrow[ix] += src[oy * s->wo + ox];
          }
        }
      }
  }
}

/* A 1x1 stride-1 unpadded convolution needs no column matrix. */
static bool is_pointwise(const md_conv_shape *s) { return s->k == 1 && s->stride == 1 && s->pad == 0; }

int md_conv2d_im2col_forward(const md_conv_shape *s, const float *x, const float *w, const float *b, float *y) {
  int64_t ckk = s->c * s->k * s->k, hw = s->ho * s->wo;
  float *col = is_pointwise(s) ? NULL : malloc((size_t)(ckk * hw) * sizeof(float));
  if (!is_pointwise(s) && !col) return md_error("conv2d: out of memory for the column buffer");
  for (int64_t n = 0; n < s->n; n++) {
    const float *xn = x + n * s->c * s->h * s->w;
    float *yn = y + n * s->o * hw;
    if (b)
      for (int64_t o = 0; o < s->o; o++)
        for (int64_t i = 0; i < hw; i++) yn[o * hw + i] = b[o];
    if (col) im2col(s, xn, col);
    md_sgemm(false, false, s->o, hw, ckk, 1.0f, w, ckk, col ? col : xn, hw, b ? 1.0f : 0.0f, yn, hw);
  }
  free(col);
  return MD_OK;
}

int md_conv2d_im2col_backward(const md_conv_shape *s, const float *x, const float *w, const float *dy,
                              float *dx, float *dw, float *db) {
  int64_t ckk = s->c * s->k * s->k, hw = s->ho * s->wo;
  bool pw = is_pointwise(s);
  float *col = pw ? NULL : malloc((size_t)(ckk * hw) * sizeof(float));
  if (!pw && !col) return md_error("conv2d backward: out of memory for the column buffer");
  for (int64_t n = 0; n < s->n; n++) {
    const float *xn = x + n * s->c * s->h * s->w, *dyn = dy + n * s->o * hw;
    if (db)
      for (int64_t o = 0; o < s->o; o++) {
        float acc = 0;
        for (int64_t i = 0; i < hw; i++) acc += dyn[o * hw + i];
        db[o] += acc;
      }
    if (dw) { /* dW += dY @ col^T */
      if (col) im2col(s, xn, col);
      md_sgemm(false, true, s->o, ckk, hw, 1.0f, dyn, hw, col ? col : xn, hw, 1.0f, dw, ckk);
    }
    if (dx) { /* dcol = W^T @ dY, then scattered back */
      float *dxn = dx + n * s->c * s->h * s->w;
      if (pw) {
        md_sgemm(true, false, ckk, hw, s->o, 1.0f, w, ckk, dyn, hw, 1.0f, dxn, hw);
      } else {
        md_sgemm(true, false, ckk, hw, s->o, 1.0f, w, ckk, dyn, hw, 0.0f, col, hw);
        col2im(s, col, dxn);
      }
    }
  }
  free(col);
  return MD_OK;
}
