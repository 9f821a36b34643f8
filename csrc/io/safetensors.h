/* safetensors files: an 8-byte little-endian header length n, n bytes of
 * JSON {"name": {"dtype": "F32", "shape": [...], "data_offsets": [b, e]},
 * ..., "__metadata__": {"key": "value"}}, then the raw little-endian data,
 * offsets counted from the end of the header. Tensors are kept in name
 * (byte) order, the order any safetensors writer uses. */
#ifndef MD_SAFETENSORS_H
#define MD_SAFETENSORS_H

#include "../tensor.h"

typedef struct md_safetensors {
  int n;               /* tensors, sorted by name */
  char **names;
  md_tensor **tensors; /* one reference each */
  int nmeta;           /* __metadata__ entries, sorted by key */
  char **meta_keys;
  char **meta_values;
} md_safetensors;

/* Writes "<path>.tmp" and renames it to path, so a crash never leaves a
 * broken file. Names must be distinct, non-empty and not "__metadata__";
 * meta values are strings (callers JSON-encode anything else). */
int md_safetensors_write(const char *path, int n, const char *const *names, md_tensor *const *tensors, int nmeta,
                         const char *const *meta_keys, const char *const *meta_values);

/* Reads F32 tensors and string metadata. A corrupt header, offsets that do
 * not tile the data, or a truncated file is an error that says which. */
int md_safetensors_read(md_safetensors **out, const char *path);
void md_safetensors_free(md_safetensors *st);

#endif
