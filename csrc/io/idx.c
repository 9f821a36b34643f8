/* IDX files: a 4-byte magic (0, 0, type, ndim), ndim big-endian 32-bit
 * sizes, then the data. Only unsigned bytes (type 0x08) are used by the
 * data sets moondust reads. gzread reads plain files too. */
#include <stdlib.h>
#include <zlib.h>

#include "image_io.h"

static int read_exact(gzFile f, void *buf, int64_t n, int64_t *got) {
  int64_t done = 0;
  while (done < n) {
    unsigned chunk = (unsigned)((n - done) > (1 << 30) ? (1 << 30) : (n - done));
    int r = gzread(f, (char *)buf + done, chunk);
    if (r <= 0) break;
    done += r;
  }
  *got = done;
  return done == n ? MD_OK : MD_ERR;
}

int md_idx_read(md_tensor **out, const char *path) {
  gzFile f = gzopen(path, "rb");
  if (!f) return md_error("idx: cannot open %s", path);
  unsigned char magic[4];
  int64_t got;
  int rc = MD_OK;
  md_tensor *t = NULL;
  unsigned char *buf = NULL;
  if (read_exact(f, magic, 4, &got) != MD_OK) {
    rc = md_error("idx: %s is truncated: no header", path);
    goto done;
  }
  if (magic[0] != 0 || magic[1] != 0 || magic[2] != 0x08 || magic[3] < 1 || magic[3] > 4) {
    rc = md_error("idx: %s is not an IDX file of unsigned bytes (magic %02x %02x %02x %02x)", path, magic[0],
                  magic[1], magic[2], magic[3]);
    goto done;
  }
  int nd = magic[3];
  int64_t shape[4], total = 1;
  for (int i = 0; i < nd; i++) {
    unsigned char b[4];
    if (read_exact(f, b, 4, &got) != MD_OK) {
      rc = md_error("idx: %s is truncated in its header", path);
      goto done;
    }
    shape[i] = ((int64_t)b[0] << 24) | (b[1] << 16) | (b[2] << 8) | b[3];
    if (shape[i] < 1 || shape[i] > (1 << 24) || total > (INT64_C(1) << 32) / shape[i]) {
      rc = md_error("idx: %s has an implausible size %lld in dimension %d", path, (long long)shape[i], i + 1);
      goto done;
    }
    total *= shape[i];
  }
  buf = malloc((size_t)total);
  if (!buf) {
    rc = md_error("idx: out of memory reading %s", path);
    goto done;
  }
  if (read_exact(f, buf, total, &got) != MD_OK) {
    rc = md_error("idx: %s is truncated: expected %lld bytes of data, got %lld", path, (long long)total,
                  (long long)got);
    goto done;
  }
  t = md_tensor_new(nd, shape);
  if (!t) {
    rc = MD_ERR;
    goto done;
  }
  float *d = md_data(t);
  for (int64_t i = 0; i < total; i++) d[i] = buf[i];
  *out = t;
done:
  free(buf);
  gzclose(f);
  return rc;
}
