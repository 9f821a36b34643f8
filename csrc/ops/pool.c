/* Nearest-neighbour upsampling and average pooling over NCHW planes. */
#include "../autograd.h"
#include "nn.h"

/* One (image, channel) plane per iteration; s is the upsampling factor. */
static int upsample_backward(md_node *n, const float *dout, float *const *din) {
  if (!din[0]) return MD_OK;
  const md_tensor *x = n->inputs[0];
  int64_t s = n->iarg[0], h = x->shape[2], w = x->shape[3], planes = x->shape[0] * x->shape[1];
#pragma omp parallel for schedule(static)
  for (int64_t p = 0; p < planes; p++)
    for (int64_t y = 0; y < h * s; y++)
      for (int64_t xx = 0; xx < w * s; xx++)
        din[0][p * h * w + (y / s) * w + xx / s] += dout[(p * h * s + y) * w * s + xx];
  return MD_OK;
}

int md_upsample_nearest(md_tensor **out, md_tensor *x, int64_t s) {
  char sx[MD_SHAPE_STR_LEN];
  if (x->ndim != 4) return md_error("upsample_nearest: input must be N x C x H x W, got %s", md_shape_str(x, sx, sizeof sx));
  if (s < 1) return md_error("upsample_nearest: scale must be a positive integer");
  int64_t h = x->shape[2], w = x->shape[3], planes = x->shape[0] * x->shape[1];
  int64_t shape[4] = {x->shape[0], x->shape[1], h * s, w * s};
  md_tensor *y = md_tensor_new(4, shape);
  if (!y) return MD_ERR;
  const float *px = md_data(x);
  float *py = md_data(y);
#pragma omp parallel for schedule(static)
  for (int64_t p = 0; p < planes; p++)
    for (int64_t yy = 0; yy < h * s; yy++)
      for (int64_t xx = 0; xx < w * s; xx++) py[(p * h * s + yy) * w * s + xx] = px[p * h * w + (yy / s) * w + xx / s];
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
  if (!din[0]) return MD_OK;
  const md_tensor *x = n->inputs[0];
  int64_t k = n->iarg[0], st = n->iarg[1], h = x->shape[2], w = x->shape[3];
  int64_t ho = n->out_shape[2], wo = n->out_shape[3], planes = x->shape[0] * x->shape[1];
  float inv = 1.0f / (float)(k * k);
#pragma omp parallel for schedule(static)
  for (int64_t p = 0; p < planes; p++)
    for (int64_t oy = 0; oy < ho; oy++)
      for (int64_t ox = 0; ox < wo; ox++) {
        float g = dout[(p * ho + oy) * wo + ox] * inv;
        for (int64_t i = 0; i < k; i++)
          for (int64_t j = 0; j < k; j++) din[0][p * h * w + (oy * st + i) * w + ox * st + j] += g;
      }
  return MD_OK;
}

int md_avg_pool2d(md_tensor **out, md_tensor *x, int64_t k, int64_t st) {
  char sx[MD_SHAPE_STR_LEN];
  if (x->ndim != 4) return md_error("avg_pool2d: input must be N x C x H x W, got %s", md_shape_str(x, sx, sizeof sx));
  if (k < 1 || st < 1) return md_error("avg_pool2d: kernel and stride must be positive");
  int64_t h = x->shape[2], w = x->shape[3], planes = x->shape[0] * x->shape[1];
  if (h < k || w < k) return md_error("avg_pool2d: kernel %lld is larger than the input %s", (long long)k, md_shape_str(x, sx, sizeof sx));
  int64_t ho = (h - k) / st + 1, wo = (w - k) / st + 1;
  int64_t shape[4] = {x->shape[0], x->shape[1], ho, wo};
  md_tensor *y = md_tensor_new(4, shape);
  if (!y) return MD_ERR;
  const float *px = md_data(x);
  float *py = md_data(y);
  float inv = 1.0f / (float)(k * k);
#pragma omp parallel for schedule(static)
  for (int64_t p = 0; p < planes; p++)
    for (int64_t oy = 0; oy < ho; oy++)
      for (int64_t ox = 0; ox < wo; ox++) {
        float acc = 0;
        for (int64_t i = 0; i < k; i++)
          for (int64_t j = 0; j < k; j++) acc += px[p * h * w + (oy * st + i) * w + ox * st + j];
        py[(p * ho + oy) * wo + ox] = acc * inv;
      }
  md_node *n;
  if (md_record(&n, y, "avg_pool2d", avg_pool_backward, 1, &x) != MD_OK) {
    md_tensor_release(y);
    return MD_ERR;
  }
  if (n) n->iarg[0] = k, n->iarg[1] = st;
  *out = y;
  return MD_OK;
}
