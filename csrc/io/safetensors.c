/* safetensors writer and reader, with a small strict JSON parser for the
 * header: the file may come from anywhere, so every size and offset is
 * checked against the file before any memory is touched. */
#include "safetensors.h"

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
#define MAX_DEPTH 32

/* ---- a growing byte buffer for the header ---- */

typedef struct {
  char *p;
  size_t len, cap;
  int oom;
} sbuf;

static void sb_put(sbuf *b, const char *s, size_t n) {
  if (b->oom) return;
  if (b->len + n + 1 > b->cap) {
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + n + 1) cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p) {
      b->oom = 1;
      return;
    }
    b->p = p;
    b->cap = cap;
  }
  memcpy(b->p + b->len, s, n);
  b->len += n;
  b->p[b->len] = 0;
}

static void sb_puts(sbuf *b, const char *s) { sb_put(b, s, strlen(s)); }

static void sb_int(sbuf *b, int64_t v) {
  char tmp[32];
  sb_put(b, tmp, (size_t)snprintf(tmp, sizeof tmp, "%lld", (long long)v));
}

/* A JSON string: quotes, backslashes and control characters escaped;
 * other bytes (UTF-8) as they are. */
static void sb_json_string(sbuf *b, const char *s) {
  sb_put(b, "\"", 1);
  for (; *s; s++) {
    unsigned char c = (unsigned char)*s;
    if (c == '"' || c == '\\') {
      char e[2] = {'\\', (char)c};
      sb_put(b, e, 2);
    } else if (c < 0x20) {
      char e[8];
      sb_put(b, e, (size_t)snprintf(e, sizeof e, "\\u%04x", c));
    } else {
      sb_put(b, (const char *)&c, 1);
    }
  }
  sb_put(b, "\"", 1);
}

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

static int write_all(const char *path, const char *tmp, const sbuf *h, const pair *ts, int n) {
  FILE *f = fopen(tmp, "wb");
  if (!f) return md_error("safetensors: cannot write %s: %s", tmp, strerror(errno));
  unsigned char len8[8];
  for (int i = 0; i < 8; i++) len8[i] = (unsigned char)((uint64_t)h->len >> (8 * i));
  int ok = fwrite(len8, 1, 8, f) == 8 && fwrite(h->p, 1, h->len, f) == h->len;
  for (int i = 0; ok && i < n; i++) {
    const md_tensor *t = ts[i].val;
    ok = fwrite(md_data(t), sizeof(float), (size_t)t->numel, f) == (size_t)t->numel;
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
  sbuf h = {0};
  char *tmp = NULL;
  sb_puts(&h, "{");
  if (nmeta > 0) {
    sb_puts(&h, "\"__metadata__\":{");
    for (int i = 0; i < nmeta; i++) {
      if (i) sb_puts(&h, ",");
      sb_json_string(&h, ms[i].key);
      sb_puts(&h, ":");
      sb_json_string(&h, ms[i].val);
    }
    sb_puts(&h, "}");
  }
  int64_t offset = 0;
  for (int i = 0; i < n; i++) {
    const md_tensor *t = ts[i].val;
    if (!strcmp(ts[i].key, "__metadata__")) {
      rc = md_error("safetensors: '__metadata__' is reserved and cannot name a tensor");
      goto done;
    }
    if (i || nmeta > 0) sb_puts(&h, ",");
    sb_json_string(&h, ts[i].key);
    sb_puts(&h, ":{\"dtype\":\"F32\",\"shape\":[");
    for (int d = 0; d < t->ndim; d++) {
      if (d) sb_puts(&h, ",");
      sb_int(&h, t->shape[d]);
    }
    sb_puts(&h, "],\"data_offsets\":[");
    sb_int(&h, offset);
    sb_puts(&h, ",");
    offset += t->numel * (int64_t)sizeof(float);
    sb_int(&h, offset);
    sb_puts(&h, "]}");
  }
  sb_puts(&h, "}");
  while (h.len % 8) sb_puts(&h, " "); /* the data starts 8-byte aligned */
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

/* ---- a strict JSON parser (RFC 8259), into a small tree ---- */

typedef enum { J_NULL, J_BOOL, J_NUM, J_STR, J_ARR, J_OBJ } jtype;

typedef struct jval {
  jtype type;
  int is_int;   /* J_NUM written as an integer that fits in int64 */
  int64_t ival;
  char *str;    /* J_STR */
  int n;        /* J_ARR, J_OBJ: items (and keys for objects) */
  struct jval *items;
  char **keys;
} jval;

typedef struct {
  const char *s;
  size_t len, pos;
  char err[128];
} jparser;

static void jfree(jval *v) {
  for (int i = 0; i < v->n; i++) {
    jfree(&v->items[i]);
    if (v->keys) free(v->keys[i]);
  }
  free(v->items);
  free(v->keys);
  free(v->str);
}

static int jfail(jparser *p, const char *what) {
  snprintf(p->err, sizeof p->err, "%s at byte %zu", what, p->pos);
  return -1;
}

static void skip_ws(jparser *p) {
  while (p->pos < p->len && strchr(" \t\n\r", p->s[p->pos]) && p->s[p->pos]) p->pos++;
}

static int hex4(jparser *p, unsigned *out) {
  if (p->len - p->pos < 4) return jfail(p, "short \\u escape");
  unsigned v = 0;
  for (int i = 0; i < 4; i++) {
    char c = p->s[p->pos++];
    int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
    if (d < 0) return jfail(p, "bad hex digit in \\u escape");
    v = v * 16 + (unsigned)d;
  }
  *out = v;
  return 0;
}

static void put_utf8(sbuf *b, unsigned cp) {
  char u[4];
  size_t n;
  if (cp < 0x80) {
    u[0] = (char)cp, n = 1;
  } else if (cp < 0x800) {
    u[0] = (char)(0xC0 | cp >> 6), u[1] = (char)(0x80 | (cp & 0x3F)), n = 2;
  } else if (cp < 0x10000) {
    u[0] = (char)(0xE0 | cp >> 12), u[1] = (char)(0x80 | ((cp >> 6) & 0x3F)), u[2] = (char)(0x80 | (cp & 0x3F)), n = 3;
  } else {
    u[0] = (char)(0xF0 | cp >> 18), u[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    u[2] = (char)(0x80 | ((cp >> 6) & 0x3F)), u[3] = (char)(0x80 | (cp & 0x3F)), n = 4;
  }
  sb_put(b, u, n);
}

/* At the opening quote; *out gets a NUL-terminated copy. */
static int parse_string(jparser *p, char **out) {
  sbuf b = {0};
  p->pos++;
  for (;;) {
    if (p->pos >= p->len) goto bad_end;
    unsigned char c = (unsigned char)p->s[p->pos++];
    if (c == '"') break;
    if (c < 0x20) {
      p->pos--;
      free(b.p);
      return jfail(p, "control character in a string");
    }
    if (c != '\\') {
      sb_put(&b, (const char *)&c, 1);
      continue;
    }
    if (p->pos >= p->len) goto bad_end;
    char e = p->s[p->pos++];
    const char *plain = strchr("\"\\/bfnrt", e);
    if (plain && e) {
      sb_put(&b, &"\"\\/\b\f\n\r\t"[plain - "\"\\/bfnrt"], 1);
      continue;
    }
    if (e != 'u') {
      p->pos--;
      free(b.p);
      return jfail(p, "unknown escape in a string");
    }
    unsigned cp, lo;
    if (hex4(p, &cp)) goto bad;
    if (cp >= 0xDC00 && cp <= 0xDFFF) goto lone;
    if (cp >= 0xD800 && cp <= 0xDBFF) { /* a surrogate pair */
      if (p->len - p->pos < 2 || p->s[p->pos] != '\\' || p->s[p->pos + 1] != 'u') goto lone;
      p->pos += 2;
      if (hex4(p, &lo)) goto bad;
      if (lo < 0xDC00 || lo > 0xDFFF) goto lone;
      cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
    }
    if (cp == 0) {
      free(b.p);
      return jfail(p, "\\u0000 in a string");
    }
    put_utf8(&b, cp);
  }
  if (!b.p) sb_put(&b, "", 0);
  if (b.oom) {
    free(b.p);
    return jfail(p, "out of memory");
  }
  *out = b.p;
  return 0;
bad_end:
  free(b.p);
  return jfail(p, "unterminated string");
lone:
  free(b.p);
  return jfail(p, "unpaired surrogate in a \\u escape");
bad:
  free(b.p);
  return -1;
}

static int parse_number(jparser *p, jval *v) {
  size_t start = p->pos;
  const char *s = p->s;
  int integral = 1;
  if (p->pos < p->len && s[p->pos] == '-') p->pos++;
  if (p->pos >= p->len || s[p->pos] < '0' || s[p->pos] > '9') return jfail(p, "bad number");
  if (s[p->pos] == '0') p->pos++;
  else
    while (p->pos < p->len && s[p->pos] >= '0' && s[p->pos] <= '9') p->pos++;
  if (p->pos < p->len && s[p->pos] == '.') {
    integral = 0;
    p->pos++;
    if (p->pos >= p->len || s[p->pos] < '0' || s[p->pos] > '9') return jfail(p, "bad fraction in a number");
    while (p->pos < p->len && s[p->pos] >= '0' && s[p->pos] <= '9') p->pos++;
  }
  if (p->pos < p->len && (s[p->pos] == 'e' || s[p->pos] == 'E')) {
    integral = 0;
    p->pos++;
    if (p->pos < p->len && (s[p->pos] == '+' || s[p->pos] == '-')) p->pos++;
    if (p->pos >= p->len || s[p->pos] < '0' || s[p->pos] > '9') return jfail(p, "bad exponent in a number");
    while (p->pos < p->len && s[p->pos] >= '0' && s[p->pos] <= '9') p->pos++;
  }
  v->type = J_NUM;
  size_t digits = p->pos - start - (s[start] == '-');
  if (integral && digits <= 18) { /* exact; longer integers are no valid size or offset */
    int64_t x = 0;
    for (size_t i = p->pos - digits; i < p->pos; i++) x = x * 10 + (s[i] - '0');
    v->is_int = 1;
    v->ival = s[start] == '-' ? -x : x;
  }
  return 0;
}

static int parse_value(jparser *p, jval *v, int depth);

/* Arrays and objects: items separated by commas between open and close. */
static int parse_container(jparser *p, jval *v, int depth) {
  char close = p->s[p->pos] == '{' ? '}' : ']';
  v->type = close == '}' ? J_OBJ : J_ARR;
  if (depth > MAX_DEPTH) return jfail(p, "nesting too deep");
  p->pos++;
  skip_ws(p);
  if (p->pos < p->len && p->s[p->pos] == close) {
    p->pos++;
    return 0;
  }
  for (int cap = 0;;) {
    if (v->n == cap) {
      cap = cap ? 2 * cap : 4;
      jval *items = realloc(v->items, (size_t)cap * sizeof *items);
      if (items) v->items = items;
      char **keys = v->type == J_OBJ ? realloc(v->keys, (size_t)cap * sizeof *keys) : NULL;
      if (keys) v->keys = keys;
      if (!items || (v->type == J_OBJ && !keys)) return jfail(p, "out of memory");
    }
    jval *item = &v->items[v->n];
    memset(item, 0, sizeof *item);
    if (v->type == J_OBJ) {
      skip_ws(p);
      if (p->pos >= p->len || p->s[p->pos] != '"') return jfail(p, "expected a string key");
      if (parse_string(p, &v->keys[v->n])) return -1;
      v->n++; /* counted now so the key is freed even if its value fails */
      skip_ws(p);
      if (p->pos >= p->len || p->s[p->pos] != ':') return jfail(p, "expected ':'");
      p->pos++;
    } else {
      v->n++;
    }
    if (parse_value(p, item, depth + 1)) return -1;
    skip_ws(p);
    if (p->pos < p->len && p->s[p->pos] == ',') {
      p->pos++;
      continue;
    }
    if (p->pos < p->len && p->s[p->pos] == close) {
      p->pos++;
      return 0;
    }
    return jfail(p, close == '}' ? "expected ',' or '}'" : "expected ',' or ']'");
  }
}

static int parse_value(jparser *p, jval *v, int depth) {
  skip_ws(p);
  if (p->pos >= p->len) return jfail(p, "unexpected end");
  char c = p->s[p->pos];
  if (c == '{' || c == '[') return parse_container(p, v, depth);
  if (c == '"') {
    v->type = J_STR;
    return parse_string(p, &v->str);
  }
  if (c == '-' || (c >= '0' && c <= '9')) return parse_number(p, v);
  static const char *const words[] = {"true", "false", "null"};
  for (int i = 0; i < 3; i++) {
    size_t n = strlen(words[i]);
    if (p->len - p->pos >= n && !memcmp(p->s + p->pos, words[i], n)) {
      p->pos += n;
      v->type = i < 2 ? J_BOOL : J_NULL;
      return 0;
    }
  }
  return jfail(p, "unexpected character");
}

/* ---- reading ---- */

static const jval *jget(const jval *obj, const char *key) {
  for (int i = 0; i < obj->n; i++)
    if (!strcmp(obj->keys[i], key)) return &obj->items[i];
  return NULL;
}

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
static int check_entry(const char *path, const char *name, const jval *v, entry *e) {
  const char *bad = "not a valid safetensors file";
  if (v->type != J_OBJ) return md_error("safetensors: %s is %s: entry '%s' is not an object", path, bad, name);
  const jval *dtype = jget(v, "dtype"), *shape = jget(v, "shape"), *offs = jget(v, "data_offsets");
  if (!dtype || !shape || !offs || dtype->type != J_STR || shape->type != J_ARR || offs->type != J_ARR)
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
    const jval *s = &shape->items[d];
    if (s->type != J_NUM || !s->is_int || s->ival < 0)
      return md_error("safetensors: %s is %s: entry '%s' has a shape that is not non-negative integers", path, bad,
                      name);
    e->shape[d] = s->ival;
    if (s->ival > 0 && numel > (INT64_C(1) << 40) / s->ival)
      return md_error("safetensors: %s is %s: entry '%s' has an implausible shape", path, bad, name);
    numel *= s->ival;
  }
  if (offs->n != 2 || offs->items[0].type != J_NUM || offs->items[1].type != J_NUM || !offs->items[0].is_int ||
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
static int load_entries(const char *path, FILE *f, int64_t data_start, int64_t data_bytes, const jval *top,
                        md_safetensors *st) {
  const char *bad = "not a valid safetensors file";
  entry *es = malloc((size_t)(top->n > 0 ? top->n : 1) * sizeof *es);
  if (!es) return md_error("safetensors: out of memory reading %s", path);
  int rc = MD_OK, n = 0;
  const jval *meta = NULL;
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
    if (meta->type != J_OBJ) rc = md_error("safetensors: %s is %s: __metadata__ is not an object", path, bad);
    for (int i = 0; rc == MD_OK && i < meta->n; i++)
      if (meta->items[i].type != J_STR)
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
  jval top = {0};
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
  jparser p = {.s = text, .len = (size_t)n};
  if (parse_value(&p, &top, 0) == 0) {
    skip_ws(&p);
    if (p.pos != p.len) jfail(&p, "trailing characters");
  }
  if (p.err[0]) {
    rc = md_error("safetensors: %s is %s: header is not JSON (%s)", path, bad, p.err);
    goto done;
  }
  if (top.type != J_OBJ) {
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
  jfree(&top);
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
