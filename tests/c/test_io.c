/* PNG and IDX: round trips, and malformed or truncated files give errors. */
#include <stdio.h>
#include <unistd.h>
#include <zlib.h>

#include "io/image_io.h"
#include "testutil.h"

static char dir[64];

static void make_dir(void) {
  strcpy(dir, "/tmp/md_test_io_XXXXXX");
  ck_assert_ptr_nonnull(mkdtemp(dir));
}

static const char *path_in(const char *name) {
  static char buf[128];
  snprintf(buf, sizeof buf, "%s/%s", dir, name);
  return buf;
}

static void write_bytes(const char *path, const void *data, size_t n) {
  FILE *f = fopen(path, "wb");
  ck_assert_ptr_nonnull(f);
  fwrite(data, 1, n, f);
  fclose(f);
}

START_TEST(png_round_trip_gray_and_rgb) {
  make_dir();
  for (int c = 1; c <= 3; c += 2) {
    int64_t shape[3] = {c, 5, 7};
    md_tensor *img = md_tensor_new(3, shape), *back = NULL;
    /* values on the 8-bit grid survive exactly */
    for (int64_t i = 0; i < img->numel; i++) md_data(img)[i] = (float)((i * 37) % 256) / 127.5f - 1.0f;
    const char *p = path_in(c == 1 ? "g.png" : "rgb.png");
    ck_assert_int_eq(md_png_write(p, img), MD_OK);
    ck_assert_int_eq(md_png_read(&back, p, c), MD_OK);
    ck_assert(md_same_shape(back, img));
    ck_assert_close(md_data(back), md_data(img), img->numel, 1e-6, 0);
    md_tensor_release(img);
    md_tensor_release(back);
  }
}
END_TEST

START_TEST(malformed_png_is_an_error) {
  make_dir();
  int64_t shape[3] = {1, 4, 4};
  md_tensor *img = md_tensor_zeros(3, shape), *back = NULL;
  ck_assert_int_eq(md_png_write(path_in("ok.png"), img), MD_OK);
  FILE *f = fopen(path_in("ok.png"), "rb");
  unsigned char buf[4096];
  size_t n = fread(buf, 1, sizeof buf, f);
  fclose(f);
  write_bytes(path_in("cut.png"), buf, n / 2); /* truncated */
  ck_assert_int_eq(md_png_read(&back, path_in("cut.png"), 1), MD_ERR);
  write_bytes(path_in("junk.png"), "not a png at all", 16);
  ck_assert_int_eq(md_png_read(&back, path_in("junk.png"), 1), MD_ERR);
  ck_assert_ptr_nonnull(strstr(md_errmsg(), "junk.png"));
  ck_assert_int_eq(md_png_read(&back, path_in("missing.png"), 1), MD_ERR);
  int64_t bad[3] = {2, 4, 4};
  md_tensor *two = md_tensor_zeros(3, bad);
  ck_assert_int_eq(md_png_write(path_in("x.png"), two), MD_ERR);
  md_tensor_release(img);
  md_tensor_release(two);
}
END_TEST

static void write_idx_gz(const char *path, const unsigned char *hdr, size_t nh, size_t ndata) {
  gzFile g = gzopen(path, "wb");
  gzwrite(g, hdr, (unsigned)nh);
  for (size_t i = 0; i < ndata; i++) {
    unsigned char b = (unsigned char)(i % 251);
    gzwrite(g, &b, 1);
  }
  gzclose(g);
}

START_TEST(idx_reads_and_rejects_truncation) {
  make_dir();
  unsigned char hdr[16] = {0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 4};
  md_tensor *t = NULL;
  write_idx_gz(path_in("ok.gz"), hdr, 16, 24);
  ck_assert_int_eq(md_idx_read(&t, path_in("ok.gz")), MD_OK);
  ck_assert_int_eq(t->ndim, 3);
  ck_assert_int_eq(t->shape[2], 4);
  ck_assert_float_eq(md_data(t)[23], 23.0f);
  md_tensor_release(t);
  write_idx_gz(path_in("short.gz"), hdr, 16, 20);
  ck_assert_int_eq(md_idx_read(&t, path_in("short.gz")), MD_ERR);
  ck_assert_ptr_nonnull(strstr(md_errmsg(), "truncated: expected 24 bytes of data, got 20"));
  unsigned char bad[4] = {1, 2, 3, 4};
  write_idx_gz(path_in("bad.gz"), bad, 4, 0);
  ck_assert_int_eq(md_idx_read(&t, path_in("bad.gz")), MD_ERR);
  write_idx_gz(path_in("hdr.gz"), hdr, 9, 0);
  ck_assert_int_eq(md_idx_read(&t, path_in("hdr.gz")), MD_ERR);
  ck_assert_int_eq(md_idx_read(&t, path_in("none.gz")), MD_ERR);
}
END_TEST

START_TEST(grid_places_images_with_padding) {
  int64_t shape[4] = {3, 1, 2, 2};
  md_tensor *b = md_tensor_full(4, shape, 1.0f), *g = NULL;
  ck_assert_int_eq(md_make_grid(&g, b, 2, 1, -1.0f), MD_OK);
  ck_assert_int_eq(g->shape[1], 2 * 3 + 1);
  ck_assert_int_eq(g->shape[2], 2 * 3 + 1);
  ck_assert_float_eq(md_data(g)[0], -1.0f);
  ck_assert_float_eq(md_data(g)[1 * 7 + 1], 1.0f);
  ck_assert_float_eq(md_data(g)[4 * 7 + 4], 1.0f - 2.0f); /* the missing fourth image is padding */
  md_tensor_release(b);
  md_tensor_release(g);
}
END_TEST

Suite *make_suite(void) {
  Suite *s = suite_create("io");
  TCase *tc = tcase_create("files");
  tcase_add_test(tc, png_round_trip_gray_and_rgb);
  tcase_add_test(tc, malformed_png_is_an_error);
  tcase_add_test(tc, idx_reads_and_rejects_truncation);
  tcase_add_test(tc, grid_places_images_with_padding);
  suite_add_tcase(s, tc);
  return s;
}
