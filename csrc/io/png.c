/* PNG through libpng's classic API. libpng reports errors by calling our
 * error function, which records the message and longjmps back to the
 * setjmp in the reader or writer; everything those functions allocate is
 * reachable from `volatile` locals so the error path can free it. */
#include "png.h"

#include "../layout.h"

#include <errno.h>
#include <math.h>
#include <png.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

typedef struct {
  jmp_buf jump;
  char msg[256];
} png_failure;

static void on_error(png_structp p, png_const_charp msg) {
  png_failure *f = png_get_error_ptr(p);
  snprintf(f->msg, sizeof f->msg, "%s", msg);
  longjmp(f->jump, 1);
}

/* The core never prints: warnings (bad CRCs in ancillary chunks, ...) are dropped. */
static void on_warning(png_structp p, png_const_charp msg) {
  (void)p;
  (void)msg;
}

/* Like libpng's default reader, but a short read says what happened. */
static void read_file(png_structp p, png_bytep data, size_t n) {
  FILE *f = png_get_io_ptr(p);
  if (fread(data, 1, n, f) != n) png_error(p, ferror(f) ? "read error" : "unexpected end of file (truncated)");
}

unsigned char md_png_to_byte(float v) {
  float b = (v + 1.0f) * 127.5f;
  b = isnan(b) ? 0.0f : fminf(fmaxf(b, 0.0f), 255.0f);
  return (unsigned char)lrintf(b);
}

/* Asks libpng to deliver 8-bit gray (channels 1) or RGB (channels 3) rows. */
static void set_transforms(png_structp p, png_infop info, int channels) {
  int type = png_get_color_type(p, info), depth = png_get_bit_depth(p, info);
  if (type == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(p);
  if (type == PNG_COLOR_TYPE_GRAY && depth < 8) png_set_expand_gray_1_2_4_to_8(p);
  if (depth == 16) png_set_scale_16(p);
  if (type & PNG_COLOR_MASK_ALPHA) png_set_strip_alpha(p);
  int color = type == PNG_COLOR_TYPE_PALETTE || (type & PNG_COLOR_MASK_COLOR);
  if (channels == 1 && color) png_set_rgb_to_gray_fixed(p, 1, -1, -1); /* 1: convert silently */
  if (channels == 3 && !color) png_set_gray_to_rgb(p);
  png_read_update_info(p, info);
}

int md_png_decode(md_pixels *out, const char *path, int channels, bool header_only) {
  if (channels != 0 && channels != 1 && channels != 3)
    return md_error("png: channels must be 1 or 3, got %d", channels);
  out->data = NULL;
  FILE *file = fopen(path, "rb");
  if (!file) return md_error("png: cannot open %s: %s", path, strerror(errno));
  unsigned char sig[8];
  if (fread(sig, 1, 8, file) != 8 || png_sig_cmp(sig, 0, 8)) {
    fclose(file);
    return md_error("png: %s is not a PNG file (bad signature)", path);
  }
  png_failure fail;
  png_structp p = png_create_read_struct(PNG_LIBPNG_VER_STRING, &fail, on_error, on_warning);
  png_infop info = p ? png_create_info_struct(p) : NULL;
  if (!info) {
    png_destroy_read_struct(&p, NULL, NULL);
    fclose(file);
    return md_error("png: out of memory reading %s", path);
  }
  unsigned char *volatile pixels = NULL;
  png_bytep *volatile rows = NULL;
  int rc = MD_OK;
  if (setjmp(fail.jump)) {
    rc = md_error("png: %s is corrupt or truncated: %s", path, fail.msg);
    goto done;
  }
  png_set_read_fn(p, file, read_file);
  png_set_sig_bytes(p, 8);
  png_set_user_limits(p, MD_IMAGE_MAX_SIDE, MD_IMAGE_MAX_SIDE);
  png_read_info(p, info);
  /* Before allocating: a sane cap on pixels, and no more image than the
   * file's deflate stream can hold (at most 1032 bytes per byte). */
  struct stat st;
  double declared = (double)png_get_image_height(p, info) *
                    ((double)png_get_image_width(p, info) * png_get_channels(p, info) * png_get_bit_depth(p, info) / 8 + 1);
  if ((double)png_get_image_height(p, info) * png_get_image_width(p, info) > MD_IMAGE_MAX_PIXELS ||
      (fstat(fileno(file), &st) == 0 && declared > 1032.0 * (double)st.st_size + 65536)) {
    rc = md_error("png: %s declares a %u x %u image, more than its %lld bytes can hold (or above %d pixels)", path,
                  (unsigned)png_get_image_width(p, info), (unsigned)png_get_image_height(p, info),
                  (long long)st.st_size, MD_IMAGE_MAX_PIXELS);
    goto done;
  }
  int type = png_get_color_type(p, info);
  int native = type == PNG_COLOR_TYPE_PALETTE || (type & PNG_COLOR_MASK_COLOR) ? 3 : 1;
  int want = channels ? channels : native;
  out->h = png_get_image_height(p, info), out->w = png_get_image_width(p, info), out->c = header_only ? native : want;
  if (header_only) goto done;
  set_transforms(p, info, want);
  int64_t h = out->h, w = out->w;
  size_t rowbytes = png_get_rowbytes(p, info);
  if (png_get_bit_depth(p, info) != 8 || png_get_channels(p, info) != want || rowbytes != (size_t)(w * want)) {
    rc = md_error("png: %s: cannot convert to 8-bit with %d channel(s)", path, want);
    goto done;
  }
  pixels = malloc((size_t)h * rowbytes);
  rows = malloc((size_t)h * sizeof *rows);
  if (!pixels || !rows) {
    rc = md_error("png: out of memory reading %s (%lld x %lld)", path, (long long)w, (long long)h);
    goto done;
  }
  for (int64_t y = 0; y < h; y++) rows[y] = pixels + y * rowbytes;
  png_read_image(p, rows);
  png_read_end(p, NULL);
  out->data = pixels;
  pixels = NULL; /* the caller's now */
done:
  png_destroy_read_struct(&p, &info, NULL);
  free(pixels);
  free(rows);
  fclose(file);
  return rc;
}

int md_png_read(md_tensor **out, const char *path, int channels) {
  if (channels != 1 && channels != 3) return md_error("png: channels must be 1 or 3, got %d", channels);
  md_pixels px;
  if (md_png_decode(&px, path, channels, false) != MD_OK) return MD_ERR;
  *out = md_pixels_to_tensor(&px);
  md_pixels_free(&px);
  return *out ? MD_OK : MD_ERR;
}

int md_png_write(const char *path, const md_tensor *t) {
  char sb[MD_SHAPE_STR_LEN];
  if (t->ndim != 3 || (t->shape[0] != 1 && t->shape[0] != 3))
    return md_error("png: expected an image of shape C x H x W with C = 1 or 3, got %s", md_shape_str(t, sb, sizeof sb));
  int64_t c = t->shape[0], h = t->shape[1], w = t->shape[2];
  if (h < 1 || w < 1 || h > MD_IMAGE_MAX_SIDE || w > MD_IMAGE_MAX_SIDE)
    return md_error("png: image sides must be 1..%d, got %s", MD_IMAGE_MAX_SIDE, md_shape_str(t, sb, sizeof sb));
  unsigned char *pixels = malloc((size_t)(c * h * w));
  png_bytep *rows = malloc((size_t)h * sizeof *rows);
  if (!pixels || !rows) {
    free(pixels);
    free(rows);
    return md_error("png: out of memory writing %s", path);
  }
  const float *d = md_data(t);
  for (int64_t ch = 0; ch < c; ch++)
    for (int64_t i = 0; i < h * w; i++) pixels[i * c + ch] = md_png_to_byte(d[ch * h * w + i]);
  for (int64_t y = 0; y < h; y++) rows[y] = pixels + y * c * w;
  FILE *file = fopen(path, "wb");
  if (!file) {
    free(pixels);
    free(rows);
    return md_error("png: cannot write %s: %s", path, strerror(errno));
  }
  png_failure fail;
  png_structp p = png_create_write_struct(PNG_LIBPNG_VER_STRING, &fail, on_error, on_warning);
  png_infop info = p ? png_create_info_struct(p) : NULL;
  int rc = MD_OK;
  if (!info) {
    rc = md_error("png: out of memory writing %s", path);
  } else if (setjmp(fail.jump)) {
    rc = md_error("png: cannot write %s: %s", path, fail.msg);
  } else {
    png_init_io(p, file);
    png_set_IHDR(p, info, (png_uint_32)w, (png_uint_32)h, 8, c == 1 ? PNG_COLOR_TYPE_GRAY : PNG_COLOR_TYPE_RGB,
                 PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(p, info);
    png_write_image(p, rows);
    png_write_end(p, NULL);
  }
  png_destroy_write_struct(&p, &info);
  if (fclose(file) != 0 && rc == MD_OK) rc = md_error("png: cannot write %s: %s", path, strerror(errno));
  free(pixels);
  free(rows);
  return rc;
}

int md_make_grid(md_tensor **out, const md_tensor *b, int64_t nrow, int64_t pad, float pad_value) {
  char sb[MD_SHAPE_STR_LEN];
  if (b->ndim != 4) return md_error("make_grid: expected a batch N x C x H x W, got %s", md_shape_str(b, sb, sizeof sb));
  if (nrow < 1 || pad < 0 || pad > 4096)
    return md_error("make_grid: nrow must be positive and padding 0..4096, got nrow %lld, padding %lld",
                    (long long)nrow, (long long)pad);
  int64_t n = b->shape[0], c = b->shape[1], h = b->shape[2], w = b->shape[3];
  if (n < 1) return md_error("make_grid: empty batch %s", md_shape_str(b, sb, sizeof sb));
  int64_t cols = n < nrow ? n : nrow, rows = (n + cols - 1) / cols;
  int64_t shape[3] = {c, rows * (h + pad) + pad, cols * (w + pad) + pad};
  md_tensor *g = md_tensor_full(3, shape, pad_value), *plain = NULL;
  if (!g || md_plain_values(&plain, b) != MD_OK) {
    md_tensor_release(g);
    return MD_ERR;
  }
  int64_t gh = shape[1], gw = shape[2];
  const float *src = md_data(plain);
  float *dst = md_data(g);
  for (int64_t i = 0; i < n; i++) {
    int64_t y0 = pad + (i / cols) * (h + pad), x0 = pad + (i % cols) * (w + pad);
    for (int64_t ch = 0; ch < c; ch++)
      for (int64_t y = 0; y < h; y++)
        memcpy(dst + (ch * gh + y0 + y) * gw + x0, src + ((i * c + ch) * h + y) * w, (size_t)w * sizeof(float));
  }
  md_tensor_release(plain);
  *out = g;
  return MD_OK;
}
