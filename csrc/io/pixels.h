/* Decoded 8-bit images as interleaved bytes (H x W x C, what libpng and
 * libjpeg-turbo deliver), and the one resampler that fits them to a size.
 * The PNG and JPEG readers decode into md_pixels; image.c turns them into
 * tensors or writes them into a byte store. */
#ifndef MD_PIXELS_H
#define MD_PIXELS_H

#include "../tensor.h"

/* Limits every decoder checks before allocating: big enough for any real
 * image, small enough that h * w * 3 stays far from overflow. */
#define MD_IMAGE_MAX_SIDE 16384
#define MD_IMAGE_MAX_PIXELS (1 << 26)

typedef struct {
  unsigned char *data; /* h * w * c bytes, malloc'd */
  int64_t h, w;
  int c; /* 1 (gray) or 3 (RGB) */
} md_pixels;

/* 0..255 -> [-1, 1], the one mapping every reader uses (md_png_to_byte in
 * png.h is its inverse). */
static inline float md_png_from_byte(unsigned char b) { return b / 127.5f - 1.0f; }

void md_pixels_free(md_pixels *p); /* frees data, keeps the struct */

/* -> C x H x W floats in [-1, 1] (byte b -> b / 127.5 - 1). */
md_tensor *md_pixels_to_tensor(const md_pixels *p);

/* How an image becomes out_h x out_w:
 *   MD_FIT_EXACT   it must already have that size (a plain copy)
 *   MD_FIT_RESIZE  stretched to it (the aspect ratio may change)
 *   MD_FIT_COVER   scaled so that it covers it (the shorter side fits), then
 *                  centre-cropped: torchvision's Resize + CenterCrop */
typedef enum { MD_FIT_EXACT, MD_FIT_RESIZE, MD_FIT_COVER } md_fit;

/* Writes p as planar C x out_h x out_w bytes into dst (C = p->c). Resampling
 * is a triangle filter whose radius grows with the shrink factor (bilinear
 * when enlarging, antialiased when shrinking, as PIL's BILINEAR does).
 * Fails only on a size mismatch under MD_FIT_EXACT or out of memory. */
int md_pixels_fit(unsigned char *dst, int64_t out_h, int64_t out_w, const md_pixels *p, md_fit fit);

#endif
