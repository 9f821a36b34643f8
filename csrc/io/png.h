/* 8-bit PNG images (grayscale or RGB) through libpng, as C x H x W float
 * tensors in [-1, 1]. Every libpng error (a malformed or truncated file)
 * becomes MD_ERR with a message naming the file, never a crash. */
#ifndef MD_PNG_H
#define MD_PNG_H

#include <stdbool.h>

#include "pixels.h"

/* -> C x H x W in [-1, 1] with C = channels (1 or 3). Palette, 1/2/4-bit
 * and 16-bit inputs are converted to 8 bits, gray <-> RGB as asked, and an
 * alpha channel is dropped (as PIL's convert("L"/"RGB") does). */
int md_png_read(md_tensor **out, const char *path, int channels);
/* The same into bytes; channels 0 keeps the file's (1 for gray, 3 for colour
 * or palette). header_only: fills h, w and the file's channels, no data. */
int md_png_decode(md_pixels *out, const char *path, int channels, bool header_only);
/* img: C x H x W with C = 1 or 3; [-1, 1] maps to 0..255 (clamped, rounded). */
int md_png_write(const char *path, const md_tensor *img);

/* [-1, 1] -> 0..255, the inverse of md_png_from_byte (pixels.h). */
unsigned char md_png_to_byte(float v);

/* batch N x C x H x W -> C x H' x W': nrow images per row, `padding`
 * pixels around and between them filled with pad_value (torchvision's
 * make_grid layout). */
int md_make_grid(md_tensor **out, const md_tensor *batch, int64_t nrow, int64_t padding, float pad_value);

#endif
