/* PNG through libpng's simplified API: it converts any input (palette,
 * 16-bit, alpha) to the format asked for and reports errors in
 * image.message instead of longjmp-ing through our frames. */
#include <math.h>
#include <png.h>
#include <stdlib.h>
#include <string.h>

#include "image_io.h"

int md_png_read(md_tensor **out, const char *path, int channels) {
  if (channels != 1 && channels != 3) return md_error("png: channels must be 1 or 3, got %d", channels);
  png_image img;
  memset(&img, 0, sizeof img);
  img.version = PNG_IMAGE_VERSION;
  if (!png_image_begin_read_from_file(&img, path)) return md_error("png: cannot read %s: %s", path, img.message);
  img.format = channels == 1 ? PNG_FORMAT_GRAY : PNG_FORMAT_RGB;
  int64_t h = img.height, w = img.width;
  if (h <= 0 || w <= 0 || h * w > (INT64_C(1) << 28)) {
    png_image_free(&img);
    return md_error("png: %s has an unsupported size %lld x %lld", path, (long long)w, (long long)h);
  }
  unsigned char *buf = malloc(PNG_IMAGE_SIZE(img));
  if (!buf) {
    png_image_free(&img);
    return md_error("png: out of memory reading %s", path);
  }
  if (!png_image_finish_read(&img, NULL, buf, 0, NULL)) {
    free(buf);
    return md_error("png: %s is corrupt: %s", path, img.message);
  }
  int64_t shape[3] = {channels, h, w};
  md_tensor *t = md_tensor_new(3, shape);
  if (!t) {
    free(buf);
    return MD_ERR;
  }
  float *d = md_data(t);
  for (int64_t c = 0; c < channels; c++) /* interleaved HWC bytes -> planar CHW in [-1, 1] */
    for (int64_t i = 0; i < h * w; i++) d[c * h * w + i] = buf[i * channels + c] / 127.5f - 1.0f;
  free(buf);
  *out = t;
  return MD_OK;
}

int md_png_write(const char *path, const md_tensor *t) {
  char sb[MD_SHAPE_STR_LEN];
  if (t->ndim != 3 || (t->shape[0] != 1 && t->shape[0] != 3))
    return md_error("png: expected an image of shape C x H x W with C = 1 or 3, got %s", md_shape_str(t, sb, sizeof sb));
  int64_t c = t->shape[0], h = t->shape[1], w = t->shape[2];
  if (h < 1 || w < 1) return md_error("png: empty image %s", md_shape_str(t, sb, sizeof sb));
  unsigned char *buf = malloc((size_t)(c * h * w));
  if (!buf) return md_error("png: out of memory writing %s", path);
  const float *d = md_data(t);
  for (int64_t ch = 0; ch < c; ch++)
    for (int64_t i = 0; i < h * w; i++) {
      float v = (d[ch * h * w + i] + 1.0f) * 127.5f;
      v = isnan(v) ? 0.0f : fminf(fmaxf(v, 0.0f), 255.0f);
      buf[i * c + ch] = (unsigned char)lrintf(v);
    }
  png_image img;
  memset(&img, 0, sizeof img);
  img.version = PNG_IMAGE_VERSION;
  img.width = (png_uint_32)w;
  img.height = (png_uint_32)h;
  img.format = c == 1 ? PNG_FORMAT_GRAY : PNG_FORMAT_RGB;
  int ok = png_image_write_to_file(&img, path, 0, buf, 0, NULL);
  free(buf);
  if (!ok) return md_error("png: cannot write %s: %s", path, img.message);
  return MD_OK;
}

int md_make_grid(md_tensor **out, const md_tensor *b, int64_t nrow, int64_t pad, float pad_value) {
  char sb[MD_SHAPE_STR_LEN];
  if (b->ndim != 4) return md_error("make_grid: expected a batch N x C x H x W, got %s", md_shape_str(b, sb, sizeof sb));
  if (nrow < 1 || pad < 0) return md_error("make_grid: nrow must be positive and padding non-negative");
  int64_t n = b->shape[0], c = b->shape[1], h = b->shape[2], w = b->shape[3];
  if (n < 1) return md_error("make_grid: empty batch");
  int64_t cols = n < nrow ? n : nrow, rows = (n + cols - 1) / cols;
  int64_t gh = rows * (h + pad) + pad, gw = cols * (w + pad) + pad;
  int64_t shape[3] = {c, gh, gw};
  md_tensor *g = md_tensor_full(3, shape, pad_value);
  if (!g) return MD_ERR;
  const float *src = md_data(b);
  float *dst = md_data(g);
  for (int64_t i = 0; i < n; i++) {
    int64_t y0 = pad + (i / cols) * (h + pad), x0 = pad + (i % cols) * (w + pad);
    for (int64_t ch = 0; ch < c; ch++)
      for (int64_t y = 0; y < h; y++)
        memcpy(dst + (ch * gh + y0 + y) * gw + x0, src + ((i * c + ch) * h + y) * w, (size_t)w * sizeof(float));
  }
  *out = g;
  return MD_OK;
}
