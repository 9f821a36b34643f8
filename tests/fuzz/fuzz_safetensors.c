/* libFuzzer target: md_safetensors_read on arbitrary bytes. */
#include "fuzz_loader.h"
#include "io/safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const char *path = fuzz_file(data, size, ".safetensors");
  md_safetensors *st = NULL;
  if (path && md_safetensors_read(&st, path) == MD_OK) md_safetensors_free(st);
  return 0;
}
