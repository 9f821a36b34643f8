/* JSON: a strict RFC 8259 parser into a tree of md_json values, and a
 * growing buffer for writing JSON text. Used by the safetensors reader and
 * writer and, through the binding, by Lua (md.core.json_decode/encode). */
#ifndef MD_JSON_H
#define MD_JSON_H

#include <stddef.h>
#include <stdint.h>

typedef enum { MD_JSON_NULL, MD_JSON_BOOL, MD_JSON_NUM, MD_JSON_STR, MD_JSON_ARR, MD_JSON_OBJ } md_json_type;

typedef struct md_json {
  md_json_type type;
  int is_int;   /* MD_JSON_NUM written as an integer that fits in int64 */
  int64_t ival; /* that integer; for MD_JSON_BOOL, 1 for true */
  double num;   /* MD_JSON_NUM, as strtod reads it */
  char *str;    /* MD_JSON_STR */
  int n;        /* MD_JSON_ARR, MD_JSON_OBJ: items (and keys for objects) */
  struct md_json *items;
  char **keys;
} md_json;

/* Parses all of text (len bytes; nesting at most 32 deep). Returns 0, or -1
 * with a message naming the byte where it went wrong in err. */
int md_json_parse(const char *text, size_t len, md_json *out, char *err, size_t errlen);
void md_json_free(md_json *v);
/* The value of key in an object, or NULL. */
const md_json *md_json_get(const md_json *obj, const char *key);

/* A growing, NUL-terminated byte buffer; oom is set (and writes stop) when
 * memory runs out. Start from {0}; free p when done. */
typedef struct {
  char *p;
  size_t len, cap;
  int oom;
} md_jbuf;
void md_jbuf_put(md_jbuf *b, const char *s, size_t n);
void md_jbuf_puts(md_jbuf *b, const char *s);
void md_jbuf_int(md_jbuf *b, int64_t v);
/* s as a JSON string: quotes, backslashes and control characters escaped. */
void md_jbuf_string(md_jbuf *b, const char *s);

#endif
