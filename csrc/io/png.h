/* 8-bit PNG images (grayscale or RGB) through libpng, as C x H x W float
 * tensors in [-1, 1]. Every libpng error (a malformed or truncated file)
 * becomes MD_ERR with a message naming the file, never a crash. */
#ifndef MD_PNG_H
#define MD_PNG_H

#include "../tensor.h"

/* -> C x H x W in [-1, 1] with C = channels (1 or 3). Palette, 1/2/4-bit
 * and 16-bit inputs are converted to 8 bits, gray <-> RGB as asked, and an
 * alpha channel is dropped (as PIL's convert("L"/"RGB") does). */
int md_png_read(md_tensor **out, const char *path, int channels);
/* img: C x H x W with C = 1 or 3; [-1, 1] maps to 0..255 (clamped, rounded). */
int md_png_write(const char *path, const md_tensor *img);

/* [-1, 1] <-> 0..255, the one mapping both directions use. */
unsigned char md_png_to_byte(float v);
static inline float md_png_from_byte(unsigned char b) { return b / 127.5f - 1.0f; }

/* batch N x C x H x W -> C x H' x W': nrow images per row, `padding`
 * pixels around and between them filled with pad_value (torchvision's
 * make_grid layout). */
int md_make_grid(md_tensor **out, const md_tensor *batch, int64_t nrow, int64_t padding, float pad_value);

#endif
