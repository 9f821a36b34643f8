/* JPEG images through libjpeg-turbo's TurboJPEG API (Debian's
 * libturbojpeg0-dev). Built only when the Makefile finds turbojpeg.h
 * (MD_HAVE_JPEG); without it every function returns an error saying what to
 * install. A malformed or truncated file is an error naming the file. */
#ifndef MD_JPEG_H
#define MD_JPEG_H

#include <stdbool.h>

#include "pixels.h"

/* Whether JPEG support was built in. */
bool md_jpeg_available(void);

/* -> 8-bit bytes with channels 1 or 3 (0 keeps the file's: 1 for a gray
 * JPEG, 3 otherwise). header_only: fills h, w and the file's channels, no
 * data. The declared size is checked against limits and against what the
 * file's bytes can hold before anything is allocated; any libjpeg-turbo
 * warning (corrupt data, premature end) counts as an error. */
int md_jpeg_decode(md_pixels *out, const char *path, int channels, bool header_only);
/* img: C x H x W with C = 1 or 3, [-1, 1]; quality 1..100, 4:4:4 sampling. */
int md_jpeg_write(const char *path, const md_tensor *img, int quality);

#endif
