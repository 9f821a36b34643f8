/* libFuzzer target: md_jpeg_decode (the file's channels, gray, RGB, and the
 * header alone) on arbitrary bytes. */
#include "fuzz_loader.h"
#include "io/jpeg.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const char *path = fuzz_file(data, size, ".jpg");
  md_pixels px;
  for (int channels = 0; path && channels <= 3; channels++) {
    if (channels == 2) continue;
    if (md_jpeg_decode(&px, path, channels, false) == MD_OK) md_pixels_free(&px);
  }
  if (path && md_jpeg_decode(&px, path, 0, true) == MD_OK) md_pixels_free(&px);
  return 0;
}
