/* JSON (RFC 8259): a strict parser into a small tree, and the buffer the
 * writers build JSON text in. One implementation for the whole project: the
 * safetensors header, checkpoint metadata from Lua (md.core.json_decode /
 * json_encode in the binding), benchmark and run logs. */
#include "json.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_DEPTH 32



void md_jbuf_put(md_jbuf *b, const char *s, size_t n) {
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

void md_jbuf_puts(md_jbuf *b, const char *s) { md_jbuf_put(b, s, strlen(s)); }

void md_jbuf_int(md_jbuf *b, int64_t v) {
  char tmp[32];
  md_jbuf_put(b, tmp, (size_t)snprintf(tmp, sizeof tmp, "%lld", (long long)v));
}

/* A JSON string: quotes, backslashes and control characters escaped;
 * other bytes (UTF-8) as they are. */
void md_jbuf_string(md_jbuf *b, const char *s) {
  md_jbuf_put(b, "\"", 1);
  for (; *s; s++) {
    unsigned char c = (unsigned char)*s;
    if (c == '"' || c == '\\') {
      char e[2] = {'\\', (char)c};
      md_jbuf_put(b, e, 2);
    } else if (c < 0x20) {
      char e[8];
      md_jbuf_put(b, e, (size_t)snprintf(e, sizeof e, "\\u%04x", c));
    } else {
      md_jbuf_put(b, (const char *)&c, 1);
    }
  }
  md_jbuf_put(b, "\"", 1);
}



typedef struct {
  const char *s;
  size_t len, pos;
  char err[128];
} jparser;

void md_json_free(md_json *v) {
  for (int i = 0; i < v->n; i++) {
    md_json_free(&v->items[i]);
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

static void put_utf8(md_jbuf *b, unsigned cp) {
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
  md_jbuf_put(b, u, n);
}

/* At the opening quote; *out gets a NUL-terminated copy. */
static int parse_string(jparser *p, char **out) {
  md_jbuf b = {0};
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
      md_jbuf_put(&b, (const char *)&c, 1);
      continue;
    }
    if (p->pos >= p->len) goto bad_end;
    char e = p->s[p->pos++];
    const char *plain = strchr("\"\\/bfnrt", e);
    if (plain && e) {
      md_jbuf_put(&b, &"\"\\/\b\f\n\r\t"[plain - "\"\\/bfnrt"], 1);
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
  if (!b.p) md_jbuf_put(&b, "", 0);
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

static int parse_number(jparser *p, md_json *v) {
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
  v->type = MD_JSON_NUM;
  v->num = strtod(s + start, NULL); /* the span is a valid JSON number, which strtod reads whole */
  size_t digits = p->pos - start - (s[start] == '-');
  if (integral && digits <= 18) { /* exact; longer integers are no valid size or offset */
    int64_t x = 0;
    for (size_t i = p->pos - digits; i < p->pos; i++) x = x * 10 + (s[i] - '0');
    v->is_int = 1;
    v->ival = s[start] == '-' ? -x : x;
  }
  return 0;
}

static int parse_value(jparser *p, md_json *v, int depth);

/* Arrays and objects: items separated by commas between open and close. */
static int parse_container(jparser *p, md_json *v, int depth) {
  char close = p->s[p->pos] == '{' ? '}' : ']';
  v->type = close == '}' ? MD_JSON_OBJ : MD_JSON_ARR;
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
      md_json *items = realloc(v->items, (size_t)cap * sizeof *items);
      if (items) v->items = items;
      char **keys = v->type == MD_JSON_OBJ ? realloc(v->keys, (size_t)cap * sizeof *keys) : NULL;
      if (keys) v->keys = keys;
      if (!items || (v->type == MD_JSON_OBJ && !keys)) return jfail(p, "out of memory");
    }
    md_json *item = &v->items[v->n];
    memset(item, 0, sizeof *item);
    if (v->type == MD_JSON_OBJ) {
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

static int parse_value(jparser *p, md_json *v, int depth) {
  skip_ws(p);
  if (p->pos >= p->len) return jfail(p, "unexpected end");
  char c = p->s[p->pos];
  if (c == '{' || c == '[') return parse_container(p, v, depth);
  if (c == '"') {
    v->type = MD_JSON_STR;
    return parse_string(p, &v->str);
  }
  if (c == '-' || (c >= '0' && c <= '9')) return parse_number(p, v);
  static const char *const words[] = {"true", "false", "null"};
  for (int i = 0; i < 3; i++) {
    size_t n = strlen(words[i]);
    if (p->len - p->pos >= n && !memcmp(p->s + p->pos, words[i], n)) {
      p->pos += n;
      v->type = i < 2 ? MD_JSON_BOOL : MD_JSON_NULL;
      v->ival = i == 0; /* true */
      return 0;
    }
  }
  return jfail(p, "unexpected character");
}

const md_json *md_json_get(const md_json *obj, const char *key) {
  for (int i = 0; i < obj->n; i++)
    if (!strcmp(obj->keys[i], key)) return &obj->items[i];
  return NULL;
}

int md_json_parse(const char *text, size_t len, md_json *out, char *err, size_t errlen) {
  jparser p = {.s = text, .len = len};
  memset(out, 0, sizeof *out);
  if (parse_value(&p, out, 0) == 0) {
    skip_ws(&p);
    if (p.pos != p.len) jfail(&p, "trailing characters");
  }
  if (!p.err[0]) return 0;
  snprintf(err, errlen, "%s", p.err);
  md_json_free(out);
  memset(out, 0, sizeof *out);
  return -1;
}
