/* libFuzzer target: md_png_read (grey and RGB) on arbitrary bytes. */
#include "fuzz_loader.h"
#include "io/png.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const char *path = fuzz_file(data, size, ".png");
  for (int channels = 1; path && channels <= 3; channels += 2) {
    md_tensor *t = NULL;
    if (md_png_read(&t, path, channels) == MD_OK) md_tensor_release(t);
  }
  return 0;
}
