/* Nearest-neighbour upsampling and average pooling over NCHW planes. */
#include "pool.h"

#include <string.h>

#include "../autograd.h"
#include "blocked.h"

/* ---- kernels: one (image, channel) plane per iteration ------------------------------------ */

/* Planes of h x w pixels of vec floats: vec = 1 in NCHW (a plane per
 * (image, channel)), 16 in the blocked layout (a plane per (image, channel
 * block)). The public kernels pass vec as a constant. */
static inline void upsample_planes(const float *x, float *y, int64_t planes, int64_t h, int64_t w, int64_t s,
                                   const int64_t vec, bool backward) {
#pragma omp parallel for schedule(static)
  for (int64_t p = 0; p < planes; p++)
    for (int64_t oy = 0; oy < h * s; oy++) {
      const int64_t in_row = (p * h + oy / s) * w * vec, out_row = (p * h * s + oy) * w * s * vec;
      for (int64_t ox = 0; ox < w * s; ox++)
        for (int64_t l = 0; l < vec; l++) {
          if (backward) y[in_row + (ox / s) * vec + l] += x[out_row + ox * vec + l];
          else y[out_row + ox * vec + l] = x[in_row + (ox / s) * vec + l];
        }
    }
}

void md_upsample_nearest_forward(const float *x, float *y, int64_t planes, int64_t h, int64_t w, int64_t s,
                                 bool blocked) {
  if (blocked) upsample_planes(x, y, planes / MD_BLOCK, h, w, s, MD_BLOCK, false);
  else upsample_planes(x, y, planes, h, w, s, 1, false);
}

/* dx += the sum of dy over each input pixel's s x s copies */
void md_upsample_nearest_backward(const float *dy, float *dx, int64_t planes, int64_t h, int64_t w, int64_t s,
                                  bool blocked) {
  if (blocked) upsample_planes(dy, dx, planes / MD_BLOCK, h, w, s, MD_BLOCK, true);
  else upsample_planes(dy, dx, planes, h, w, s, 1, true);
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
  if (din[0] && n->fresh[0]) memset(din[0], 0, (size_t)x->numel * sizeof(float)); /* a quarter of dout's size */
  if (din[0])
    md_upsample_nearest_backward(dout, din[0], x->shape[0] * x->shape[1], x->shape[2], x->shape[3], n->iarg[0],
                                 md_is_blocked(x));
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
  md_tensor *y = md_tensor_new_layout(4, shape, x->storage->layout);
  if (!y) return MD_ERR;
  md_upsample_nearest_forward(md_data(x), md_data(y), x->shape[0] * x->shape[1], h, w, s, md_is_blocked(x));
  md_node *n;
  if (md_record(&n, y, "upsample_nearest", upsample_backward, 1, &x) != MD_OK) {
    md_tensor_release(y);
    return MD_ERR;
  }
  if (n) n->iarg[0] = s, n->assigns = true;
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

static int avg_pool2d_plain(md_tensor **out, md_tensor *x, int64_t k, int64_t st) {
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

int md_avg_pool2d(md_tensor **out, md_tensor *x, int64_t k, int64_t st) {
  md_tensor *x_ = x;
  md_plain_scope plain;
  if (md_plain_inputs(&plain, 1, (md_tensor **const[]){&x_}) != MD_OK) return MD_ERR;
  int rc = avg_pool2d_plain(out, x_, k, st);
  md_plain_release(&plain);
  return rc;
}
