/* Byte images: conversion to tensors and the resampler (see pixels.h). */
#include "pixels.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void md_pixels_free(md_pixels *p) {
  free(p->data);
  p->data = NULL;
}

md_tensor *md_pixels_to_tensor(const md_pixels *p) {
  int64_t shape[3] = {p->c, p->h, p->w}, hw = p->h * p->w;
  md_tensor *t = md_tensor_new(3, shape);
  if (!t) return NULL;
  float *d = md_data(t);
  for (int64_t c = 0; c < p->c; c++) /* interleaved HWC bytes -> planar CHW */
    for (int64_t i = 0; i < hw; i++) d[c * hw + i] = md_png_from_byte(p->data[i * p->c + c]);
  return t;
}

/* The filter of one axis: output o reads source pixels start[o] ..
 * start[o] + count[o] - 1 with weights w[o * taps ..]. */
typedef struct {
  int64_t *start;
  int *count;
  float *w;
  int taps;
} axis;

static void axis_free(axis *a) {
  free(a->start);
  free(a->count);
  free(a->w);
}

/* n_out outputs over the source window [x0, x0 + len) of an axis of n_src
 * pixels (pixel j covers [j, j + 1)). A triangle of radius max(1, step):
 * bilinear when enlarging, an average over every covered pixel when
 * shrinking, so a downscale does not alias. */
static int axis_make(axis *a, int64_t n_src, double x0, double len, int64_t n_out) {
  double step = len / (double)n_out, r = step > 1 ? step : 1;
  a->taps = 2 * (int)ceil(r) + 2;
  a->start = malloc(sizeof *a->start * (size_t)n_out);
  a->count = malloc(sizeof *a->count * (size_t)n_out);
  a->w = malloc(sizeof *a->w * (size_t)n_out * (size_t)a->taps);
  if (!a->start || !a->count || !a->w) {
    axis_free(a);
    return md_error("resize: out of memory");
  }
  for (int64_t o = 0; o < n_out; o++) {
    double centre = x0 + ((double)o + 0.5) * step;
    int64_t lo = (int64_t)ceil(centre - r - 0.5), hi = (int64_t)floor(centre + r - 0.5);
    if (lo < 0) lo = 0;
    if (hi > n_src - 1) hi = n_src - 1;
    if (hi - lo + 1 > a->taps) hi = lo + a->taps - 1;
    float *w = a->w + o * a->taps;
    double sum = 0;
    for (int64_t j = lo; j <= hi; j++) {
      double v = 1 - fabs((double)j + 0.5 - centre) / r;
      w[j - lo] = (float)(v > 0 ? v : 0);
      sum += w[j - lo];
    }
    if (sum <= 0) { /* unreachable for windows inside the image; nearest pixel then */
      lo = (int64_t)centre < n_src ? (int64_t)centre : n_src - 1;
      hi = lo;
      w[0] = 1;
      sum = 1;
    }
    for (int64_t j = lo; j <= hi; j++) w[j - lo] = (float)(w[j - lo] / sum);
    a->start[o] = lo;
    a->count[o] = (int)(hi - lo + 1);
  }
  return MD_OK;
}

static unsigned char to_byte(float v) { return (unsigned char)lrintf(fminf(fmaxf(v, 0.0f), 255.0f)); }

int md_pixels_fit(unsigned char *dst, int64_t out_h, int64_t out_w, const md_pixels *p, md_fit fit) {
  int64_t h = p->h, w = p->w, c = p->c;
  if (out_h < 1 || out_w < 1 || out_h > MD_IMAGE_MAX_SIDE || out_w > MD_IMAGE_MAX_SIDE)
    return md_error("resize: sides must be 1..%d, got %lld x %lld", MD_IMAGE_MAX_SIDE, (long long)out_h,
                    (long long)out_w);
  if (fit == MD_FIT_EXACT || (fit == MD_FIT_RESIZE && h == out_h && w == out_w)) {
    if (h != out_h || w != out_w)
      return md_error("is %lld x %lld, expected %lld x %lld", (long long)h, (long long)w, (long long)out_h,
                      (long long)out_w);
    for (int64_t ch = 0; ch < c; ch++)
      for (int64_t i = 0; i < h * w; i++) dst[ch * h * w + i] = p->data[i * c + ch];
    return MD_OK;
  }
  double y0 = 0, x0 = 0, len_y = (double)h, len_x = (double)w;
  if (fit == MD_FIT_COVER) {
    double s = fmax((double)out_h / (double)h, (double)out_w / (double)w);
    len_y = (double)out_h / s, len_x = (double)out_w / s;
    y0 = ((double)h - len_y) / 2, x0 = ((double)w - len_x) / 2;
  }
  axis ay = {0}, ax = {0};
  if (axis_make(&ay, h, y0, len_y, out_h) != MD_OK) return MD_ERR;
  if (axis_make(&ax, w, x0, len_x, out_w) != MD_OK) {
    axis_free(&ay);
    return MD_ERR;
  }
  /* horizontal pass over the source rows the vertical pass reads, into floats */
  int64_t ylo = ay.start[0], yhi = ay.start[out_h - 1] + ay.count[out_h - 1];
  float *tmp = malloc(sizeof *tmp * (size_t)((yhi - ylo) * out_w * c));
  if (!tmp) {
    axis_free(&ay);
    axis_free(&ax);
    return md_error("resize: out of memory");
  }
  for (int64_t y = ylo; y < yhi; y++) {
    const unsigned char *row = p->data + y * w * c;
    float *t = tmp + (y - ylo) * out_w * c;
    for (int64_t o = 0; o < out_w; o++) {
      const float *wt = ax.w + o * ax.taps;
      const unsigned char *src = row + ax.start[o] * c;
      for (int64_t ch = 0; ch < c; ch++) {
        float sum = 0;
        for (int k = 0; k < ax.count[o]; k++) sum += wt[k] * src[k * c + ch];
        t[o * c + ch] = sum;
      }
    }
  }
  for (int64_t o = 0; o < out_h; o++) {
    const float *wt = ay.w + o * ay.taps;
    const float *src = tmp + (ay.start[o] - ylo) * out_w * c;
    for (int64_t x = 0; x < out_w; x++)
      for (int64_t ch = 0; ch < c; ch++) {
        float sum = 0;
        for (int k = 0; k < ay.count[o]; k++) sum += wt[k] * src[(k * out_w + x) * c + ch];
        dst[(ch * out_h + o) * out_w + x] = to_byte(sum);
      }
  }
  free(tmp);
  axis_free(&ay);
  axis_free(&ax);
  return MD_OK;
}
