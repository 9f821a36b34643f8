/* JPEG through TurboJPEG: the whole file is read into memory, its header
 * checked, then decoded in one call. Handles are per call, so decoding is
 * thread-safe (image.c decodes a folder in parallel). */
#include "jpeg.h"

#include "png.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef MD_HAVE_JPEG
#include <turbojpeg.h>

/* A baseline or progressive JPEG spends at least a bit per 8 x 8 block, so
 * 512 pixels per byte is already beyond a real file; arithmetic coding can
 * go further, hence the margin and the floor. */
#define MD_JPEG_PIXELS_PER_BYTE 1024.0
#define MD_JPEG_PIXEL_FLOOR (1 << 20)
#define MD_JPEG_MAX_FILE (INT64_C(1) << 30)

bool md_jpeg_available(void) { return true; }

/* The file's bytes, malloc'd. */
static int read_all(const char *path, unsigned char **buf, long *size) {
  FILE *f = fopen(path, "rb");
  if (!f) return md_error("jpeg: cannot open %s: %s", path, strerror(errno));
  long n = fseek(f, 0, SEEK_END) == 0 ? ftell(f) : -1;
  if (n < 0 || n > MD_JPEG_MAX_FILE || fseek(f, 0, SEEK_SET) != 0) {
    fclose(f);
    return md_error("jpeg: cannot read %s (not a regular file, or above 1 GiB)", path);
  }
  *buf = malloc(n > 0 ? (size_t)n : 1);
  if (!*buf) {
    fclose(f);
    return md_error("jpeg: out of memory reading %s", path);
  }
  if (fread(*buf, 1, (size_t)n, f) != (size_t)n) {
    free(*buf);
    fclose(f);
    return md_error("jpeg: read error on %s", path);
  }
  fclose(f);
  *size = n;
  return MD_OK;
}

int md_jpeg_decode(md_pixels *out, const char *path, int channels, bool header_only) {
  if (channels != 0 && channels != 1 && channels != 3)
    return md_error("jpeg: channels must be 1 or 3, got %d", channels);
  out->data = NULL;
  unsigned char *buf = NULL;
  long size = 0;
  if (read_all(path, &buf, &size) != MD_OK) return MD_ERR;
  int rc = MD_OK;
  tjhandle tj = tjInitDecompress();
  int w, h, subsamp, colorspace;
  if (!tj) {
    rc = md_error("jpeg: cannot start the decoder for %s", path);
  } else if (size < 2 || buf[0] != 0xFF || buf[1] != 0xD8) {
    rc = md_error("jpeg: %s is not a JPEG file (bad signature)", path);
  } else if (tjDecompressHeader3(tj, buf, (unsigned long)size, &w, &h, &subsamp, &colorspace) != 0) {
    rc = md_error("jpeg: %s is corrupt: %s", path, tjGetErrorStr2(tj));
  } else if (w < 1 || h < 1) {
    rc = md_error("jpeg: %s is corrupt: it declares a %d x %d image", path, w, h);
  } else if (w > MD_IMAGE_MAX_SIDE || h > MD_IMAGE_MAX_SIDE || (double)w * h > MD_IMAGE_MAX_PIXELS ||
             (double)w * h > MD_JPEG_PIXELS_PER_BYTE * (double)size + MD_JPEG_PIXEL_FLOOR) {
    rc = md_error("jpeg: %s declares a %d x %d image, more than its %ld bytes can hold (or above %d pixels)", path, w,
                  h, size, MD_IMAGE_MAX_PIXELS);
  } else if (colorspace == TJCS_CMYK || colorspace == TJCS_YCCK) {
    rc = md_error("jpeg: %s is a CMYK JPEG; only gray and RGB (YCbCr) JPEGs are read", path);
  } else {
    int native = colorspace == TJCS_GRAY ? 1 : 3;
    out->h = h, out->w = w, out->c = header_only ? native : (channels ? channels : native);
    if (!header_only) {
      out->data = malloc((size_t)w * (size_t)h * (size_t)out->c);
      if (!out->data) {
        rc = md_error("jpeg: out of memory reading %s (%d x %d)", path, w, h);
      } else if (tjDecompress2(tj, buf, (unsigned long)size, out->data, w, 0, h, out->c == 1 ? TJPF_GRAY : TJPF_RGB,
                               TJFLAG_STOPONWARNING | TJFLAG_LIMITSCANS) != 0) {
        rc = md_error("jpeg: %s is corrupt or truncated: %s", path, tjGetErrorStr2(tj));
        md_pixels_free(out);
      }
    }
  }
  if (tj) tjDestroy(tj);
  free(buf);
  return rc;
}

int md_jpeg_write(const char *path, const md_tensor *t, int quality) {
  char sb[MD_SHAPE_STR_LEN];
  if (t->ndim != 3 || (t->shape[0] != 1 && t->shape[0] != 3))
    return md_error("jpeg: expected an image of shape C x H x W with C = 1 or 3, got %s", md_shape_str(t, sb, sizeof sb));
  if (quality < 1 || quality > 100) return md_error("jpeg: quality must be 1..100, got %d", quality);
  int64_t c = t->shape[0], h = t->shape[1], w = t->shape[2];
  if (h < 1 || w < 1 || h > MD_IMAGE_MAX_SIDE || w > MD_IMAGE_MAX_SIDE)
    return md_error("jpeg: image sides must be 1..%d, got %s", MD_IMAGE_MAX_SIDE, md_shape_str(t, sb, sizeof sb));
  unsigned char *pixels = malloc((size_t)(c * h * w));
  if (!pixels) return md_error("jpeg: out of memory writing %s", path);
  const float *d = md_data(t);
  for (int64_t ch = 0; ch < c; ch++)
    for (int64_t i = 0; i < h * w; i++) pixels[i * c + ch] = md_png_to_byte(d[ch * h * w + i]);
  tjhandle tj = tjInitCompress();
  unsigned char *jpeg = NULL;
  unsigned long size = 0;
  int rc = MD_OK;
  if (!tj) {
    rc = md_error("jpeg: cannot start the encoder for %s", path);
  } else if (tjCompress2(tj, pixels, (int)w, 0, (int)h, c == 1 ? TJPF_GRAY : TJPF_RGB, &jpeg, &size,
                         c == 1 ? TJSAMP_GRAY : TJSAMP_444, quality, TJFLAG_ACCURATEDCT) != 0) {
    rc = md_error("jpeg: cannot encode %s: %s", path, tjGetErrorStr2(tj));
  } else {
    FILE *f = fopen(path, "wb");
    if (!f) {
      rc = md_error("jpeg: cannot write %s: %s", path, strerror(errno));
    } else {
      size_t put = fwrite(jpeg, 1, size, f);
      if (fclose(f) != 0 || put != size) rc = md_error("jpeg: cannot write %s: %s", path, strerror(errno));
    }
  }
  tjFree(jpeg);
  if (tj) tjDestroy(tj);
  free(pixels);
  return rc;
}

#else

#define MD_JPEG_MISSING "JPEG support was not built: install libturbojpeg0-dev and rebuild moondust"

bool md_jpeg_available(void) { return false; }

int md_jpeg_decode(md_pixels *out, const char *path, int channels, bool header_only) {
  out->data = NULL;
  return md_error("jpeg: cannot read %s: " MD_JPEG_MISSING, path);
}

int md_jpeg_write(const char *path, const md_tensor *t, int quality) {
  return md_error("jpeg: cannot write %s: " MD_JPEG_MISSING, path);
}

#endif
