/* IDX reader. gzread reads plain files as they are, so both the .gz files
 * Debian ships and unpacked copies work. */
#include "idx.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>

/* deflate never packs more than 1032 bytes into one: a bound on what a
 * compressed file of a given size can hold */
#define MAX_DEFLATE_RATIO 1032

/* Reads up to n bytes; *got says how many arrived. A corrupt gzip stream
 * sets *why to zlib's message. */
static void read_upto(gzFile f, void *buf, int64_t n, int64_t *got, const char **why) {
  int64_t done = 0;
  *why = NULL;
  while (done < n) {
    unsigned chunk = (unsigned)((n - done) > (1 << 30) ? (1 << 30) : (n - done));
    int r = gzread(f, (char *)buf + done, chunk);
    if (r <= 0) {
      int err;
      const char *msg = gzerror(f, &err);
      if (r < 0 || err != Z_OK) *why = msg;
      break;
    }
    done += r;
  }
  *got = done;
}

int md_idx_read(md_tensor **out, const char *path) {
  gzFile f = gzopen(path, "rb");
  if (!f) return md_error("idx: cannot open %s: %s", path, errno ? strerror(errno) : "out of memory");
  unsigned char head[4 + 4 * 4], *buf = NULL;
  int64_t got;
  const char *why;
  int rc = MD_OK;
  read_upto(f, head, 4, &got, &why);
  if (got != 4) {
    rc = md_error("idx: %s is truncated: expected a 4-byte magic, got %lld bytes%s%s", path, (long long)got,
                  why ? "; zlib: " : "", why ? why : "");
    goto done;
  }
  if (head[0] != 0 || head[1] != 0 || head[2] != 0x08 || head[3] < 1 || head[3] > 4) {
    rc = md_error("idx: %s is not an IDX file of unsigned bytes with 1 to 4 dimensions (magic %02x %02x %02x %02x)",
                  path, head[0], head[1], head[2], head[3]);
    goto done;
  }
  int nd = head[3];
  read_upto(f, head + 4, 4 * nd, &got, &why);
  if (got != 4 * nd) {
    rc = md_error("idx: %s is truncated: expected %d bytes of sizes, got %lld", path, 4 * nd, (long long)got);
    goto done;
  }
  int64_t shape[4], total = 1;
  for (int i = 0; i < nd; i++) {
    const unsigned char *b = head + 4 + 4 * i;
    shape[i] = ((int64_t)b[0] << 24) | ((int64_t)b[1] << 16) | ((int64_t)b[2] << 8) | b[3];
    /* at most 4 GiB of data: a forged header must not ask for more */
    if (shape[i] < 1 || total > (INT64_C(1) << 32) / shape[i]) {
      rc = md_error("idx: %s has an implausible size %lld in dimension %d", path, (long long)shape[i], i + 1);
      goto done;
    }
    total *= shape[i];
  }
  const char *what = nd == 1 ? "labels" : "images";
  /* the header must not ask for more than the file can hold, before any allocation */
  struct stat st;
  if (stat(path, &st) == 0) {
    int64_t after_header = (int64_t)st.st_size - 4 - 4 * nd;
    int64_t room = gzdirect(f) ? after_header : (int64_t)st.st_size * MAX_DEFLATE_RATIO;
    if (total > room && gzdirect(f)) {
      rc = md_error("idx: %s is truncated: expected %lld bytes of %s, got %lld", path, (long long)total, what,
                    (long long)(room > 0 ? room : 0));
      goto done;
    }
    if (total > room) {
      rc = md_error("idx: %s is truncated: expected %lld bytes of %s, more than a %lld-byte compressed file can hold",
                    path, (long long)total, what, (long long)st.st_size);
      goto done;
    }
  }
  buf = malloc((size_t)total);
  if (!buf) {
    rc = md_error("idx: out of memory for %lld bytes of %s from %s", (long long)total, what, path);
    goto done;
  }
  read_upto(f, buf, total, &got, &why);
  if (got != total) {
    rc = md_error("idx: %s is truncated: expected %lld bytes of %s, got %lld%s%s", path, (long long)total, what,
                  (long long)got, why ? "; zlib: " : "", why ? why : "");
    goto done;
  }
  md_tensor *t = md_tensor_new(nd, shape);
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
