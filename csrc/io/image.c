/* Format dispatch, the byte store, parallel decoding and batch gathering
 * (see image.h). */
#include "image.h"

#include "../backend/threads.h"
#include "jpeg.h"
#include "png.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int md_image_decode(md_pixels *out, const char *path, int channels, bool header_only) {
  out->data = NULL;
  unsigned char sig[8] = {0};
  FILE *f = fopen(path, "rb");
  if (!f) return md_error("image: cannot open %s: %s", path, strerror(errno));
  size_t got = fread(sig, 1, sizeof sig, f);
  fclose(f);
  if (got >= 2 && sig[0] == 0xFF && sig[1] == 0xD8) return md_jpeg_decode(out, path, channels, header_only);
  if (got == 8 && memcmp(sig, "\x89PNG\r\n\x1a\n", 8) == 0) return md_png_decode(out, path, channels, header_only);
  return md_error("image: %s is neither a PNG nor a JPEG file (unknown signature)", path);
}

int md_image_read(md_tensor **out, const char *path, int channels) {
  md_pixels px;
  if (md_image_decode(&px, path, channels, false) != MD_OK) return MD_ERR;
  *out = md_pixels_to_tensor(&px);
  md_pixels_free(&px);
  return *out ? MD_OK : MD_ERR;
}

md_byte_store *md_byte_store_new(int64_t n, int64_t c, int64_t h, int64_t w) {
  if (n < 1 || (c != 1 && c != 3) || h < 1 || w < 1 || h > MD_IMAGE_MAX_SIDE || w > MD_IMAGE_MAX_SIDE ||
      n > (INT64_C(1) << 40) / (c * h * w)) {
    md_error("byte store: bad size %lld x %lld x %lld x %lld (n >= 1, c = 1 or 3, sides 1..%d, at most 1 TiB)",
             (long long)n, (long long)c, (long long)h, (long long)w, MD_IMAGE_MAX_SIDE);
    return NULL;
  }
  md_byte_store *s = malloc(sizeof *s);
  unsigned char *d = malloc((size_t)(n * c * h * w));
  if (!s || !d) {
    free(s);
    free(d);
    md_error("byte store: out of memory for %lld x %lld x %lld x %lld bytes (%.0f MB)", (long long)n, (long long)c,
             (long long)h, (long long)w, (double)(n * c * h * w) / 1e6);
    return NULL;
  }
  *s = (md_byte_store){d, n, c, h, w};
  return s;
}

void md_byte_store_free(md_byte_store *s) {
  if (!s) return;
  free(s->data);
  free(s);
}

/* This thread's last error message, copied (NULL when memory is short). */
static char *copy_error(void) { return strdup(md_errmsg()); }

int md_image_probe_all(int64_t n, const char *const *paths, md_pixels *info, char **errors) {
  int short_of_memory = 0;
#pragma omp parallel for schedule(dynamic, 16) reduction(| : short_of_memory)
  for (int64_t i = 0; i < n; i++) {
    errors[i] = NULL;
    if (md_image_decode(&info[i], paths[i], 0, true) != MD_OK && !(errors[i] = copy_error())) short_of_memory = 1;
  }
  return short_of_memory ? md_error("image: out of memory reading %lld headers", (long long)n) : MD_OK;
}

int md_byte_store_decode(md_byte_store *s, const char *const *paths, md_fit fit, char **errors) {
  int64_t n = s->n, size = s->c * s->h * s->w;
  unsigned char *ok = calloc((size_t)n, 1);
  if (!ok) return md_error("image: out of memory decoding %lld files", (long long)n);
  int short_of_memory = 0;
#pragma omp parallel for schedule(dynamic, 4) reduction(| : short_of_memory)
  for (int64_t i = 0; i < n; i++) {
    md_pixels px;
    errors[i] = NULL;
    if (md_image_decode(&px, paths[i], (int)s->c, false) == MD_OK) {
      if (md_pixels_fit(s->data + i * size, s->h, s->w, &px, fit) == MD_OK) ok[i] = 1;
      else { /* the fit's message lacks the name */
        char why[256];
        snprintf(why, sizeof why, "%s", md_errmsg());
        md_error("image: %s %s", paths[i], why);
      }
      md_pixels_free(&px);
    }
    if (!ok[i] && !(errors[i] = copy_error())) short_of_memory = 1;
  }
  int64_t kept = 0;
  for (int64_t i = 0; i < n; i++) {
    if (!ok[i]) continue;
    if (kept != i) memmove(s->data + kept * size, s->data + i * size, (size_t)size);
    kept++;
  }
  free(ok);
  s->n = kept;
  return short_of_memory ? md_error("image: out of memory decoding %lld files", (long long)n) : MD_OK;
}

/* A window offset from a uniform in [0, 1): 0 .. span, evenly. */
static int64_t offset_of(float u, int64_t span) {
  int64_t v = (int64_t)(u * (float)(span + 1));
  return v < 0 ? 0 : v > span ? span : v;
}

int md_byte_store_gather(md_tensor **out, const md_byte_store *s, const int64_t *idx, int64_t k, int64_t oh,
                         int64_t ow, const float *aug, bool hflip) {
  if (oh < 1 || ow < 1 || oh > s->h || ow > s->w)
    return md_error("byte store: a %lld x %lld window does not fit its %lld x %lld images", (long long)oh,
                    (long long)ow, (long long)s->h, (long long)s->w);
  for (int64_t i = 0; i < k; i++)
    if (idx[i] < 0 || idx[i] >= s->n)
      return md_error("byte store: index %lld is out of range 0..%lld", (long long)idx[i], (long long)s->n - 1);
  int64_t shape[4] = {k, s->c, oh, ow}, c = s->c, h = s->h, w = s->w;
  md_tensor *t = md_tensor_new(4, shape);
  if (!t) return MD_ERR;
  float *d = md_data(t);
#pragma omp parallel for if (k * c * oh * ow > MD_PAR_MIN) schedule(static)
  for (int64_t i = 0; i < k; i++) {
    int64_t y0 = aug ? offset_of(aug[4 * i + 1], h - oh) : (h - oh) / 2;
    int64_t x0 = aug ? offset_of(aug[4 * i + 2], w - ow) : (w - ow) / 2;
    bool flip = aug && hflip && aug[4 * i] < 0.5f;
    const unsigned char *src = s->data + idx[i] * c * h * w;
    for (int64_t ch = 0; ch < c; ch++)
      for (int64_t y = 0; y < oh; y++) {
        const unsigned char *row = src + (ch * h + y0 + y) * w + x0;
        float *dst = d + ((i * c + ch) * oh + y) * ow;
        if (flip) for (int64_t x = 0; x < ow; x++) dst[x] = md_png_from_byte(row[ow - 1 - x]);
        else for (int64_t x = 0; x < ow; x++) dst[x] = md_png_from_byte(row[x]);
      }
  }
  *out = t;
  return MD_OK;
}
