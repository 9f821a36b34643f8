/* libFuzzer target: the strict JSON parser behind safetensors headers and
 * md.core.json_decode. */
#include <string.h>

#include "io/json.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  md_json v;
  char err[128];
  if (md_json_parse((const char *)data, size, &v, err, sizeof err) == 0) md_json_free(&v);
  return 0;
}
