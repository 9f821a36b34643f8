/* Images of either format, and the byte store an image-folder data set
 * keeps them in: N x C x H x W uint8 (a quarter of the floats' memory),
 * decoded in parallel, turned into float batches in [-1, 1] by gathering
 * rows. */
#ifndef MD_IMAGE_H
#define MD_IMAGE_H

#include <stdbool.h>

#include "pixels.h"

/* PNG or JPEG, told apart by the file's first bytes (not its name). channels
 * 1 or 3, or 0 for the file's own; header_only as in png.h. */
int md_image_decode(md_pixels *out, const char *path, int channels, bool header_only);
/* -> C x H x W in [-1, 1]; channels 0 keeps the file's. */
int md_image_read(md_tensor **out, const char *path, int channels);

typedef struct {
  unsigned char *data; /* n * c * h * w bytes, image-major, planar */
  int64_t n, c, h, w;
} md_byte_store;

/* Uninitialised; NULL with a message when the sizes are bad or memory is short. */
md_byte_store *md_byte_store_new(int64_t n, int64_t c, int64_t h, int64_t w);
void md_byte_store_free(md_byte_store *s); /* NULL is fine */

/* The headers of n files in parallel: info[i] gets h, w and the file's
 * channels (no data), or errors[i] a malloc'd message. Fails only when a
 * message cannot be allocated. */
int md_image_probe_all(int64_t n, const char *const *paths, md_pixels *info, char **errors);

/* Decodes paths[0..s->n) in parallel into the images of s, converted to s->c
 * channels and fitted to s->h x s->w. A file that fails gets errors[i] (a
 * malloc'd message) and is dropped: the images after it move up, in order,
 * and s->n becomes the number kept. */
int md_byte_store_decode(md_byte_store *s, const char *const *paths, md_fit fit, char **errors);

/* Images idx[0..k) of s (0-based) as k x C x out_h x out_w floats in
 * [-1, 1], each an out_h x out_w window of its image. aug NULL: the centre
 * window, unflipped. Otherwise 4 uniforms in [0, 1) per row: aug[4i + 1] and
 * aug[4i + 2] place row i's window, and when hflip it is mirrored if
 * aug[4i] < 0.5. */
int md_byte_store_gather(md_tensor **out, const md_byte_store *s, const int64_t *idx, int64_t k, int64_t out_h,
                         int64_t out_w, const float *aug, bool hflip);

#endif
