/* Images and data sets on disk: 8-bit PNG (grayscale or RGB) through
 * libpng's simplified API, and IDX files (MNIST's format), gzipped or not,
 * through zlib. Every malformed or truncated file is an error with a
 * message, never a crash. */
#ifndef MD_IMAGE_IO_H
#define MD_IMAGE_IO_H

#include "../tensor.h"

/* C x H x W in [-1, 1] (channels 1 or 3; any PNG is converted). */
int md_png_read(md_tensor **out, const char *path, int channels);
/* img: C x H x W with C = 1 or 3, values in [-1, 1] (clamped). */
int md_png_write(const char *path, const md_tensor *img);

/* batch N x C x H x W -> C x H' x W': nrow images per row, `padding`
 * pixels between them filled with pad_value. */
int md_make_grid(md_tensor **out, const md_tensor *batch, int64_t nrow, int64_t padding, float pad_value);

/* The raw unsigned bytes of an IDX file as floats 0..255, in the file's
 * shape (1 to 4 dimensions). */
int md_idx_read(md_tensor **out, const char *path);

#endif
