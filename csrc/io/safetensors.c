/* safetensors writer and reader (the header's JSON through json.h): the
 * file may come from anywhere, so every size and offset is
 * checked against the file before any memory is touched. */
#include "safetensors.h"

#include "../layout.h"
#include "json.h"

#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "safetensors.c writes float32 data as it lies in memory: a little-endian host is assumed"
#endif

/* The reference implementation's limit: a bigger header is an attack or garbage. */
#define MAX_HEADER (100 * 1000 * 1000)

/* ---- writing ---- */

typedef struct {
  const char *key;
  const void *val; /* md_tensor * or const char * */
} pair;

static int by_key(const void *a, const void *b) { return strcmp(((const pair *)a)->key, ((const pair *)b)->key); }

/* Sorted copies of (keys, vals); NULL after md_error on a bad or repeated key. */
static pair *sorted_pairs(int n, const char *const *keys, const void *const *vals, const char *what) {
  pair *ps = malloc((size_t)(n > 0 ? n : 1) * sizeof *ps);
  if (!ps) {
    md_error("safetensors: out of memory");
    return NULL;
  }
  for (int i = 0; i < n; i++) {
    if (!keys[i] || !vals[i] || !keys[i][0]) {
      free(ps);
      md_error("safetensors: %s %d has an empty name or no value", what, i + 1);
      return NULL;
    }
    ps[i] = (pair){keys[i], vals[i]};
  }
  qsort(ps, (size_t)n, sizeof *ps, by_key);
  for (int i = 1; i < n; i++)
    if (!strcmp(ps[i].key, ps[i - 1].key)) {
      md_error("safetensors: %s name '%s' appears twice", what, ps[i].key);
      free(ps);
      return NULL;
    }
  return ps;
}

static int write_all(const char *path, const char *tmp, const md_jbuf *h, const pair *ts, int n) {
  FILE *f = fopen(tmp, "wb");
  if (!f) return md_error("safetensors: cannot write %s: %s", tmp, strerror(errno));
  unsigned char len8[8];
  for (int i = 0; i < 8; i++) len8[i] = (unsigned char)((uint64_t)h->len >> (8 * i));
  int ok = fwrite(len8, 1, 8, f) == 8 && fwrite(h->p, 1, h->len, f) == h->len;
  for (int i = 0; ok && i < n; i++) {
    md_tensor *t; /* files hold plain row-major values */
    if (md_plain_values(&t, ts[i].val) != MD_OK) {
      fclose(f);
      remove(tmp);
      return MD_ERR;
    }
    ok = fwrite(md_data(t), sizeof(float), (size_t)t->numel, f) == (size_t)t->numel;
    md_tensor_release(t);
  }
  ok = ok && fflush(f) == 0 && fsync(fileno(f)) == 0; /* on disk before the rename makes it visible */
  int err = errno;
  if (fclose(f) != 0 && ok) {
    ok = 0;
    err = errno;
  }
  if (!ok) {
    remove(tmp);
    return md_error("safetensors: writing %s failed: %s", tmp, strerror(err));
  }
  if (rename(tmp, path) != 0) {
    err = errno;
    remove(tmp);
    return md_error("safetensors: cannot rename %s to %s: %s", tmp, path, strerror(err));
  }
  return MD_OK;
}

/* Temporaries are "<path>.tmp.<pid>.<counter>": unique per write, so two
 * processes saving to one path never share one. A process killed mid-write
 * leaves its temporary behind; the next save to the path removes those whose
 * process is gone. Best effort: a failure here never fails the save. */
static void remove_stale_temporaries(const char *path) {
  const char *slash = strrchr(path, '/');
  const char *base = slash ? slash + 1 : path;
  size_t dir_len = slash ? (size_t)(slash - path) + 1 : 0, base_len = strlen(base);
  char *dir = malloc(dir_len + 2);
  if (!dir) return;
  if (dir_len) memcpy(dir, path, dir_len), dir[dir_len] = 0;
  else strcpy(dir, ".");
  DIR *d = opendir(dir);
  struct dirent *e;
  while (d && (e = readdir(d)) != NULL) {
    long long pid;
    unsigned counter;
    int used = 0;
    if (strncmp(e->d_name, base, base_len) || strncmp(e->d_name + base_len, ".tmp.", 5)) continue;
    if (sscanf(e->d_name + base_len + 5, "%lld.%u%n", &pid, &counter, &used) != 2 ||
        e->d_name[base_len + 5 + used] != 0 || pid <= 0 || pid == (long long)getpid())
      continue;
    if (kill((pid_t)pid, 0) == 0 || errno != ESRCH) continue; /* its writer may still be at work */
    size_t len = dir_len + strlen(e->d_name) + 1;
    char *stale = malloc(len);
    if (stale) {
      snprintf(stale, len, "%.*s%s", (int)dir_len, path, e->d_name);
      remove(stale);
      free(stale);
    }
  }
  if (d) closedir(d);
  free(dir);
}

int md_safetensors_write(const char *path, int n, const char *const *names, md_tensor *const *tensors, int nmeta,
                         const char *const *meta_keys, const char *const *meta_values) {
  if (n < 0 || nmeta < 0) return md_error("safetensors: negative counts (%d tensors, %d metadata)", n, nmeta);
  pair *ts = sorted_pairs(n, names, (const void *const *)tensors, "tensor");
  if (!ts) return MD_ERR;
  pair *ms = sorted_pairs(nmeta, meta_keys, (const void *const *)meta_values, "metadata");
  if (!ms) {
    free(ts);
    return MD_ERR;
  }
  int rc = MD_OK;
  md_jbuf h = {0};
  char *tmp = NULL;
  md_jbuf_puts(&h, "{");
  if (nmeta > 0) {
    md_jbuf_puts(&h, "\"__metadata__\":{");
    for (int i = 0; i < nmeta; i++) {
      if (i) md_jbuf_puts(&h, ",");
      md_jbuf_string(&h, ms[i].key);
      md_jbuf_puts(&h, ":");
      md_jbuf_string(&h, ms[i].val);
    }
    md_jbuf_puts(&h, "}");
  }
  int64_t offset = 0;
  for (int i = 0; i < n; i++) {
    const md_tensor *t = ts[i].val;
    if (!strcmp(ts[i].key, "__metadata__")) {
      rc = md_error("safetensors: '__metadata__' is reserved and cannot name a tensor");
      goto done;
    }
    if (i || nmeta > 0) md_jbuf_puts(&h, ",");
    md_jbuf_string(&h, ts[i].key);
    md_jbuf_puts(&h, ":{\"dtype\":\"F32\",\"shape\":[");
    for (int d = 0; d < t->ndim; d++) {
      if (d) md_jbuf_puts(&h, ",");
      md_jbuf_int(&h, t->shape[d]);
    }
    md_jbuf_puts(&h, "],\"data_offsets\":[");
    md_jbuf_int(&h, offset);
    md_jbuf_puts(&h, ",");
    offset += t->numel * (int64_t)sizeof(float);
    md_jbuf_int(&h, offset);
    md_jbuf_puts(&h, "]}");
  }
  md_jbuf_puts(&h, "}");
  while (h.len % 8) md_jbuf_puts(&h, " "); /* the data starts 8-byte aligned */
  static unsigned write_count; /* with the pid, a temporary name no other write uses */
  size_t tmp_len = strlen(path) + 48;
  tmp = malloc(tmp_len);
  if (h.oom || !tmp) {
    rc = md_error("safetensors: out of memory writing %s", path);
    goto done;
  }
  snprintf(tmp, tmp_len, "%s.tmp.%lld.%u", path, (long long)getpid(), write_count++);
  remove_stale_temporaries(path);
  rc = write_all(path, tmp, &h, ts, n);
done:
  free(tmp);
  free(h.p);
  free(ts);
  free(ms);
  return rc;
}

/* ---- reading ---- */


typedef struct {
  const char *name;
  int ndim;
  int64_t shape[MD_MAX_DIMS], begin, end;
} entry;

static int by_begin(const void *a, const void *b) {
  const entry *x = a, *y = b;
  return x->begin != y->begin ? (x->begin < y->begin ? -1 : 1) : (x->end > y->end) - (x->end < y->end);
}

static int by_name(const void *a, const void *b) { return strcmp(((const entry *)a)->name, ((const entry *)b)->name); }

/* One tensor's description -> e, checked on its own (not yet against the file). */
static int check_entry(const char *path, const char *name, const md_json *v, entry *e) {
  const char *bad = "not a valid safetensors file";
  if (v->type != MD_JSON_OBJ) return md_error("safetensors: %s is %s: entry '%s' is not an object", path, bad, name);
  const md_json *dtype = md_json_get(v, "dtype"), *shape = md_json_get(v, "shape"), *offs = md_json_get(v, "data_offsets");
  if (!dtype || !shape || !offs || dtype->type != MD_JSON_STR || shape->type != MD_JSON_ARR || offs->type != MD_JSON_ARR)
    return md_error("safetensors: %s is %s: entry '%s' needs a dtype string, a shape and data_offsets arrays", path,
                    bad, name);
  if (strcmp(dtype->str, "F32"))
    return md_error("safetensors: %s: entry '%s' has dtype %s; moondust reads F32 only", path, name, dtype->str);
  if (shape->n > MD_MAX_DIMS)
    return md_error("safetensors: %s: entry '%s' has %d dimensions, at most %d are supported", path, name, shape->n,
                    MD_MAX_DIMS);
  e->name = name;
  e->ndim = shape->n;
  int64_t numel = 1;
  for (int d = 0; d < shape->n; d++) {
    const md_json *s = &shape->items[d];
    if (s->type != MD_JSON_NUM || !s->is_int || s->ival < 0)
      return md_error("safetensors: %s is %s: entry '%s' has a shape that is not non-negative integers", path, bad,
                      name);
    e->shape[d] = s->ival;
    if (s->ival > 0 && numel > (INT64_C(1) << 40) / s->ival)
      return md_error("safetensors: %s is %s: entry '%s' has an implausible shape", path, bad, name);
    numel *= s->ival;
  }
  if (offs->n != 2 || offs->items[0].type != MD_JSON_NUM || offs->items[1].type != MD_JSON_NUM || !offs->items[0].is_int ||
      !offs->items[1].is_int)
    return md_error("safetensors: %s is %s: entry '%s' needs data_offsets [begin, end] as integers", path, bad, name);
  e->begin = offs->items[0].ival;
  e->end = offs->items[1].ival;
  if (e->begin < 0 || e->end < e->begin || e->end - e->begin != numel * 4)
    return md_error("safetensors: %s is %s: entry '%s' has data_offsets [%lld, %lld] for %lld floats (%lld bytes)",
                    path, bad, name, (long long)e->begin, (long long)e->end, (long long)numel, (long long)numel * 4);
  return MD_OK;
}

/* The entries must tile the data exactly: no holes, no overlaps, nothing
 * missing (a truncated file) or left over. */
static int check_tiling(const char *path, entry *es, int n, int64_t data_bytes) {
  qsort(es, (size_t)n, sizeof *es, by_begin);
  int64_t at = 0;
  for (int i = 0; i < n; i++) {
    if (es[i].begin != at)
      return md_error("safetensors: %s is not a valid safetensors file: entry '%s' starts at data byte %lld, "
                      "expected %lld (tensors overlap or leave a hole)",
                      path, es[i].name, (long long)es[i].begin, (long long)at);
    at = es[i].end;
  }
  if (at > data_bytes)
    return md_error("safetensors: %s is truncated: the tensors need %lld bytes of data, the file holds %lld", path,
                    (long long)at, (long long)data_bytes);
  if (at < data_bytes)
    return md_error("safetensors: %s is not a valid safetensors file: %lld bytes after the last tensor", path,
                    (long long)(data_bytes - at));
  return MD_OK;
}

static char *dup_str(const char *s) {
  char *d = malloc(strlen(s) + 1);
  return d ? strcpy(d, s) : NULL;
}

/* The checked header -> st: metadata copied, tensors read from f. */
static int load_entries(const char *path, FILE *f, int64_t data_start, int64_t data_bytes, const md_json *top,
                        md_safetensors *st) {
  const char *bad = "not a valid safetensors file";
  entry *es = malloc((size_t)(top->n > 0 ? top->n : 1) * sizeof *es);
  if (!es) return md_error("safetensors: out of memory reading %s", path);
  int rc = MD_OK, n = 0;
  const md_json *meta = NULL;
  for (int i = 0; i < top->n && rc == MD_OK; i++) {
    if (!strcmp(top->keys[i], "__metadata__")) {
      if (meta) rc = md_error("safetensors: %s is %s: two __metadata__ entries", path, bad);
      meta = &top->items[i];
    } else {
      rc = check_entry(path, top->keys[i], &top->items[i], &es[n++]);
    }
  }
  if (rc == MD_OK) rc = check_tiling(path, es, n, data_bytes);
  if (rc == MD_OK) {
    qsort(es, (size_t)n, sizeof *es, by_name);
    for (int i = 1; i < n && rc == MD_OK; i++)
      if (!strcmp(es[i].name, es[i - 1].name))
        rc = md_error("safetensors: %s is %s: tensor '%s' appears twice", path, bad, es[i].name);
  }
  if (rc == MD_OK && meta) {
    if (meta->type != MD_JSON_OBJ) rc = md_error("safetensors: %s is %s: __metadata__ is not an object", path, bad);
    for (int i = 0; rc == MD_OK && i < meta->n; i++)
      if (meta->items[i].type != MD_JSON_STR)
        rc = md_error("safetensors: %s is %s: __metadata__ value '%s' is not a string", path, bad, meta->keys[i]);
  }
  int nmeta = rc == MD_OK && meta ? meta->n : 0;
  if (rc == MD_OK) {
    st->names = calloc((size_t)n + 1, sizeof *st->names);
    st->tensors = calloc((size_t)n + 1, sizeof *st->tensors);
    st->meta_keys = calloc((size_t)nmeta + 1, sizeof *st->meta_keys);
    st->meta_values = calloc((size_t)nmeta + 1, sizeof *st->meta_values);
    if (!st->names || !st->tensors || !st->meta_keys || !st->meta_values)
      rc = md_error("safetensors: out of memory reading %s", path);
    else
      st->n = n, st->nmeta = nmeta; /* slots start NULL: md_safetensors_free copes with a partial read */
  }
  for (int i = 0; rc == MD_OK && i < nmeta; i++) { /* sorted by key, like the tensors */
    int k = 0;
    for (int j = 0; j < nmeta; j++) k += strcmp(meta->keys[j], meta->keys[i]) < 0;
    if (st->meta_keys[k]) {
      rc = md_error("safetensors: %s is %s: __metadata__ key '%s' appears twice", path, bad, meta->keys[i]);
      break;
    }
    st->meta_keys[k] = dup_str(meta->keys[i]);
    st->meta_values[k] = dup_str(meta->items[i].str);
    if (!st->meta_keys[k] || !st->meta_values[k]) rc = md_error("safetensors: out of memory reading %s", path);
  }
  for (int i = 0; rc == MD_OK && i < n; i++) {
    md_tensor *t = md_tensor_new(es[i].ndim, es[i].shape);
    st->names[i] = dup_str(es[i].name);
    st->tensors[i] = t;
    if (!t || !st->names[i]) {
      rc = t ? md_error("safetensors: out of memory reading %s", path) : MD_ERR;
      break;
    }
    if (t->numel && (fseeko(f, data_start + es[i].begin, SEEK_SET) != 0 ||
                     fread(md_data(t), sizeof(float), (size_t)t->numel, f) != (size_t)t->numel))
      rc = md_error("safetensors: %s is truncated: cannot read tensor '%s'", path, es[i].name);
  }
  free(es);
  return rc;
}

int md_safetensors_read(md_safetensors **out, const char *path) {
  const char *bad = "not a valid safetensors file";
  FILE *f = fopen(path, "rb");
  if (!f) return md_error("safetensors: cannot open %s: %s", path, strerror(errno));
  struct stat sst;
  unsigned char len8[8];
  char *text = NULL;
  md_json top = {0};
  md_safetensors *st = NULL;
  int rc = MD_OK;
  if (fstat(fileno(f), &sst) != 0 || !S_ISREG(sst.st_mode)) {
    rc = md_error("safetensors: %s is not a regular file", path);
    goto done;
  }
  int64_t size = sst.st_size;
  if (size < 8 || fread(len8, 1, 8, f) != 8) {
    rc = md_error("safetensors: %s is %s: %lld bytes, shorter than the 8-byte header length", path, bad,
                  (long long)size);
    goto done;
  }
  uint64_t n = 0;
  for (int i = 7; i >= 0; i--) n = n << 8 | len8[i];
  if (n < 2 || n > MAX_HEADER || n > (uint64_t)(size - 8)) {
    rc = md_error("safetensors: %s is %s: header length %llu does not fit in a %lld-byte file (truncated?)", path,
                  bad, (unsigned long long)n, (long long)size);
    goto done;
  }
  text = malloc((size_t)n + 1);
  if (!text) {
    rc = md_error("safetensors: out of memory for the %llu-byte header of %s", (unsigned long long)n, path);
    goto done;
  }
  if (fread(text, 1, (size_t)n, f) != (size_t)n) {
    rc = md_error("safetensors: %s is truncated: cannot read its header", path);
    goto done;
  }
  text[n] = 0;
  char err[128];
  if (md_json_parse(text, (size_t)n, &top, err, sizeof err) != 0) {
    rc = md_error("safetensors: %s is %s: header is not JSON (%s)", path, bad, err);
    goto done;
  }
  if (top.type != MD_JSON_OBJ) {
    rc = md_error("safetensors: %s is %s: header is not a JSON object", path, bad);
    goto done;
  }
  st = calloc(1, sizeof *st);
  if (!st) {
    rc = md_error("safetensors: out of memory reading %s", path);
    goto done;
  }
  rc = load_entries(path, f, 8 + (int64_t)n, size - 8 - (int64_t)n, &top, st);
  if (rc == MD_OK) {
    *out = st;
    st = NULL;
  }
done:
  md_safetensors_free(st);
  md_json_free(&top);
  free(text);
  fclose(f);
  return rc;
}

void md_safetensors_free(md_safetensors *st) {
  if (!st) return;
  for (int i = 0; st->names && i < st->n; i++) {
    free(st->names[i]);
    md_tensor_release(st->tensors[i]);
  }
  for (int i = 0; st->meta_keys && i < st->nmeta; i++) {
    free(st->meta_keys[i]);
    free(st->meta_values[i]);
  }
  free(st->names);
  free(st->tensors);
  free(st->meta_keys);
  free(st->meta_values);
  free(st);
}
