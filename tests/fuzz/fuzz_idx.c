/* libFuzzer target: md_idx_read on arbitrary bytes, raw and (when the input
 * starts with gzip's magic) compressed. */
#include "fuzz_loader.h"
#include "io/idx.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const char *path = fuzz_file(data, size, ".idx");
  md_tensor *t = NULL;
  if (path && md_idx_read(&t, path) == MD_OK) md_tensor_release(t);
  return 0;
}
