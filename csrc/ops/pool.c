/* Nearest-neighbour upsampling and average pooling over NCHW planes. */
#include "pool.h"

#include "../autograd.h"
#include "nn.h"

/* ---- kernels: one (image, channel) plane per iteration ------------------------------------ */

void md_upsample_nearest_forward(const float *x, float *y, int64_t planes, int64_t h, int64_t w, int64_t s) {
#pragma omp parallel for schedule(static)
  for (int64_t p = 0; p < planes; p++)
    for (int64_t oy = 0; oy < h * s; oy++) {
      const float *xrow = x + (p * h + oy / s) * w;
      float *yrow = y + (p * h * s + oy) * w * s;
      for (int64_t ox = 0; ox < w * s; ox++) yrow[ox] = xrow[ox / s];
    }
}

void md_upsample_nearest_backward(const float *dy, float *dx, int64_t planes, int64_t h, int64_t w, int64_t s) {
#pragma omp parallel for schedule(static)
  for (int64_t p = 0; p < planes; p++)
    for (int64_t oy = 0; oy < h * s; oy++) {
      float *xrow = dx + (p * h + oy / s) * w;
      const float *yrow = dy + (p * h * s + oy) * w * s;
      for (int64_t ox = 0; ox < w * s; ox++) xrow[ox / s] += yrow[ox];
    }
}

void md_avg_pool2d_forward(const float *x, float *y, int64_t planes, int64_t h, int64_t w, int64_t k, int64_t st) {
  int64_t ho = (h - k) / st + 1, wo = (w - k) / st + 1;
  float inv = 1.0f / (float)(k * k);
#pragma omp parallel for schedule(static)
  for (int64_t p = 0; p < planes; p++)
    for (int64_t oy = 0; oy < ho; oy++)
      for (int64_t ox = 0; ox < wo; ox++) {
        float acc = 0;
        for (int64_t i = 0; i < k; i++)
          for (int64_t j = 0; j < k; j++) acc += x[p * h * w + (oy * st + i) * w + ox * st + j];
        y[(p * ho + oy) * wo + ox] = acc * inv;
      }
}

void md_avg_pool2d_backward(const float *dy, float *dx, int64_t planes, int64_t h, int64_t w, int64_t k,
                            int64_t st) {
  int64_t ho = (h - k) / st + 1, wo = (w - k) / st + 1;
  float inv = 1.0f / (float)(k * k);
#pragma omp parallel for schedule(static)
  for (int64_t p = 0; p < planes; p++)
    for (int64_t oy = 0; oy < ho; oy++)
      for (int64_t ox = 0; ox < wo; ox++) {
        float g = dy[(p * ho + oy) * wo + ox] * inv;
        for (int64_t i = 0; i < k; i++)
          for (int64_t j = 0; j < k; j++) dx[p * h * w + (oy * st + i) * w + ox * st + j] += g;
      }
}

/* ---- differentiable ops ------------------------------------------------------------------- */

static int upsample_backward(md_node *n, const float *dout, float *const *din) {
  const md_tensor *x = n->inputs[0];
  if (din[0])
    md_upsample_nearest_backward(dout, din[0], x->shape[0] * x->shape[1], x->shape[2], x->shape[3], n->iarg[0]);
  return MD_OK;
}

int md_upsample_nearest(md_tensor **out, md_tensor *x, int64_t s) {
  char sx[MD_SHAPE_STR_LEN];
  if (x->ndim != 4) return md_error("upsample_nearest: input must be N x C x H x W, got %s", md_shape_str(x, sx, sizeof sx));
  if (s < 1) return md_error("upsample_nearest: scale must be a positive integer, got %lld", (long long)s);
  int64_t h = x->shape[2], w = x->shape[3];
  /* h * s and w * s must not overflow before the size check sees them */
  if ((h > 0 && s > INT32_MAX / h) || (w > 0 && s > INT32_MAX / w))
    return md_error("upsample_nearest: scale %lld makes the output too large for input %s", (long long)s,
                    md_shape_str(x, sx, sizeof sx));
  int64_t shape[4] = {x->shape[0], x->shape[1], h * s, w * s};
  md_tensor *y = md_tensor_new(4, shape);
  if (!y) return MD_ERR;
  md_upsample_nearest_forward(md_data(x), md_data(y), x->shape[0] * x->shape[1], h, w, s);
  md_node *n;
  if (md_record(&n, y, "upsample_nearest", upsample_backward, 1, &x) != MD_OK) {
    md_tensor_release(y);
    return MD_ERR;
  }
  if (n) n->iarg[0] = s;
  *out = y;
  return MD_OK;
}

static int avg_pool_backward(md_node *n, const float *dout, float *const *din) {
  const md_tensor *x = n->inputs[0];
  if (din[0])
    md_avg_pool2d_backward(dout, din[0], x->shape[0] * x->shape[1], x->shape[2], x->shape[3], n->iarg[0],
                           n->iarg[1]);
  return MD_OK;
}

int md_avg_pool2d(md_tensor **out, md_tensor *x, int64_t k, int64_t st) {
  char sx[MD_SHAPE_STR_LEN];
  if (x->ndim != 4) return md_error("avg_pool2d: input must be N x C x H x W, got %s", md_shape_str(x, sx, sizeof sx));
  if (k < 1 || st < 1)
    return md_error("avg_pool2d: kernel and stride must be positive, got kernel %lld, stride %lld", (long long)k,
                    (long long)st);
  int64_t h = x->shape[2], w = x->shape[3];
  if (h < k || w < k) return md_error("avg_pool2d: kernel %lld is larger than the input %s", (long long)k, md_shape_str(x, sx, sizeof sx));
  int64_t shape[4] = {x->shape[0], x->shape[1], (h - k) / st + 1, (w - k) / st + 1};
  md_tensor *y = md_tensor_new(4, shape);
  if (!y) return MD_ERR;
  md_avg_pool2d_forward(md_data(x), md_data(y), x->shape[0] * x->shape[1], h, w, k, st);
  md_node *n;
  if (md_record(&n, y, "avg_pool2d", avg_pool_backward, 1, &x) != MD_OK) {
    md_tensor_release(y);
    return MD_ERR;
  }
  if (n) n->iarg[0] = k, n->iarg[1] = st;
  *out = y;
  return MD_OK;
}
