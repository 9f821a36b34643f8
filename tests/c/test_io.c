/* Mirrors csrc/io/{png,jpeg,pixels,image,idx,safetensors}.c: round trips,
 * and pixel mapping and grids against naive_to_byte / naive_grid_at; the
 * resampler and the byte store against values worked by hand; malformed,
 * truncated or corrupt files give errors (never crashes). */
#include <png.h>
#include <stdio.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zlib.h>

#include "io/idx.h"
#include "io/image.h"
#include "io/jpeg.h"
#include "io/png.h"
#include "io/safetensors.h"
#include "testutil.h"

static char dir[64];

static void make_dir(void) {
  strcpy(dir, "/tmp/md_test_io_XXXXXX");
  ck_assert_ptr_nonnull(mkdtemp(dir));
}

static const char *path_in(const char *name) {
  static char buf[2][128];
  static int which;
  which ^= 1;
  snprintf(buf[which], sizeof buf[which], "%s/%s", dir, name);
  return buf[which];
}

static void write_bytes(const char *path, const void *data, size_t n) {
  FILE *f = fopen(path, "wb");
  ck_assert_ptr_nonnull(f);
  ck_assert_uint_eq(fwrite(data, 1, n, f), n);
  fclose(f);
}

static size_t read_bytes(const char *path, unsigned char *buf, size_t cap) {
  FILE *f = fopen(path, "rb");
  ck_assert_ptr_nonnull(f);
  size_t n = fread(buf, 1, cap, f);
  fclose(f);
  return n;
}

/* A PNG in any libpng format, written with the classic API (trusted test input). */
static void write_raw_png(const char *path, int w, int h, int depth, int type, const unsigned char *pixels,
                          const png_color *palette, int npal) {
  FILE *f = fopen(path, "wb");
  ck_assert_ptr_nonnull(f);
  png_structp p = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
  png_infop info = png_create_info_struct(p);
  png_init_io(p, f);
  png_set_IHDR(p, info, (png_uint_32)w, (png_uint_32)h, depth, type, PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT,
               PNG_FILTER_TYPE_DEFAULT);
  if (palette) png_set_PLTE(p, info, palette, npal);
  png_write_info(p, info);
  size_t rowbytes = png_get_rowbytes(p, info);
  for (int y = 0; y < h; y++) png_write_row(p, pixels + y * rowbytes);
  png_write_end(p, NULL);
  png_destroy_write_struct(&p, &info);
  fclose(f);
}

/* ---- PNG ---- */

START_TEST(byte_mapping_matches_reference) {
  for (int i = -300; i <= 300; i++) {
    float v = i / 200.0f + 0.0013f; /* off the .5 ties */
    ck_assert_int_eq(md_png_to_byte(v), naive_to_byte(v));
  }
  ck_assert_int_eq(md_png_to_byte(NAN), 0);
  ck_assert_int_eq(md_png_to_byte(INFINITY), 255);
  for (int b = 0; b < 256; b++) ck_assert_int_eq(md_png_to_byte(md_png_from_byte((unsigned char)b)), b);
}
END_TEST

START_TEST(png_round_trip_gray_and_rgb) {
  make_dir();
  for (int c = 1; c <= 3; c += 2) {
    int64_t shape[3] = {c, 5, 7};
    md_tensor *img = md_tensor_new(3, shape), *back = NULL;
    /* values on the 8-bit grid survive exactly */
    for (int64_t i = 0; i < img->numel; i++) md_data(img)[i] = md_png_from_byte((unsigned char)((i * 37) % 256));
    const char *p = path_in(c == 1 ? "g.png" : "rgb.png");
    ck_assert_int_eq(md_png_write(p, img), MD_OK);
    ck_assert_int_eq(md_png_read(&back, p, c), MD_OK);
    ck_assert(md_same_shape(back, img));
    ck_assert_close(md_data(back), md_data(img), img->numel, 1e-6, 0);
    md_tensor_release(back);
    /* gray <-> RGB: gray replicates, equal channels give the same gray */
    ck_assert_int_eq(md_png_read(&back, p, 4 - c), MD_OK);
    ck_assert_int_eq(back->shape[0], 4 - c);
    if (c == 1)
      for (int ch = 0; ch < 3; ch++) ck_assert_close(md_data(back) + ch * 35, md_data(img), 35, 1e-6, 0);
    md_tensor_release(img);
    md_tensor_release(back);
  }
}
END_TEST

START_TEST(png_reads_palette_16bit_alpha_and_low_depth) {
  make_dir();
  md_tensor *t = NULL;
  /* palette, 2 x 1: red and green */
  png_color pal[2] = {{255, 0, 0}, {0, 255, 0}};
  unsigned char idx[2] = {0, 1};
  write_raw_png(path_in("pal.png"), 2, 1, 8, PNG_COLOR_TYPE_PALETTE, idx, pal, 2);
  ck_assert_int_eq(md_png_read(&t, path_in("pal.png"), 3), MD_OK);
  float want_pal[6] = {1, -1, -1, 1, -1, -1};
  ck_assert_close(md_data(t), want_pal, 6, 1e-6, 0);
  md_tensor_release(t);
  ck_assert_int_eq(md_png_read(&t, path_in("pal.png"), 1), MD_OK);
  ck_assert_int_eq(t->shape[0], 1);
  ck_assert(md_data(t)[1] > md_data(t)[0]); /* green is brighter than red */
  md_tensor_release(t);
  /* 16-bit gray, big-endian samples: 0xFFFF, 0x0000, 0x8080 */
  unsigned char g16[6] = {0xFF, 0xFF, 0, 0, 0x80, 0x80};
  write_raw_png(path_in("g16.png"), 3, 1, 16, PNG_COLOR_TYPE_GRAY, g16, NULL, 0);
  ck_assert_int_eq(md_png_read(&t, path_in("g16.png"), 1), MD_OK);
  float want16[3] = {1, -1, md_png_from_byte(0x80)};
  ck_assert_close(md_data(t), want16, 3, 1e-6, 0);
  md_tensor_release(t);
  /* RGBA: alpha dropped */
  unsigned char rgba[8] = {10, 20, 30, 0, 40, 50, 60, 255};
  write_raw_png(path_in("rgba.png"), 2, 1, 8, PNG_COLOR_TYPE_RGBA, rgba, NULL, 0);
  ck_assert_int_eq(md_png_read(&t, path_in("rgba.png"), 3), MD_OK);
  float want_rgba[6];
  for (int ch = 0; ch < 3; ch++)
    for (int x = 0; x < 2; x++) want_rgba[ch * 2 + x] = md_png_from_byte(rgba[x * 4 + ch]);
  ck_assert_close(md_data(t), want_rgba, 6, 1e-6, 0);
  md_tensor_release(t);
  /* gray + alpha */
  unsigned char ga[4] = {7, 0, 200, 9};
  write_raw_png(path_in("ga.png"), 2, 1, 8, PNG_COLOR_TYPE_GRAY_ALPHA, ga, NULL, 0);
  ck_assert_int_eq(md_png_read(&t, path_in("ga.png"), 1), MD_OK);
  float want_ga[2] = {md_png_from_byte(7), md_png_from_byte(200)};
  ck_assert_close(md_data(t), want_ga, 2, 1e-6, 0);
  md_tensor_release(t);
  /* 1-bit gray, 8 x 1: 10110000 */
  unsigned char bits[1] = {0xB0};
  write_raw_png(path_in("g1.png"), 8, 1, 1, PNG_COLOR_TYPE_GRAY, bits, NULL, 0);
  ck_assert_int_eq(md_png_read(&t, path_in("g1.png"), 1), MD_OK);
  float want_bits[8] = {1, -1, 1, 1, -1, -1, -1, -1};
  ck_assert_close(md_data(t), want_bits, 8, 1e-6, 0);
  md_tensor_release(t);
}
END_TEST

START_TEST(malformed_png_is_an_error) {
  make_dir();
  int64_t shape[3] = {3, 9, 11};
  md_tensor *img = md_tensor_new(3, shape), *back = NULL;
  fill_uniform(md_data(img), img->numel, 7);
  ck_assert_int_eq(md_png_write(path_in("ok.png"), img), MD_OK);
  unsigned char buf[8192], copy[8192];
  size_t n = read_bytes(path_in("ok.png"), buf, sizeof buf);
  ck_assert(n > 100 && n < sizeof buf);
  for (size_t cut = 0; cut < n; cut += 7) { /* every truncation fails cleanly */
    write_bytes(path_in("cut.png"), buf, cut);
    ck_assert_int_eq(md_png_read(&back, path_in("cut.png"), 3), MD_ERR);
    ck_assert_ptr_nonnull(strstr(md_errmsg(), "cut.png"));
    ck_assert_ptr_nonnull(strstr(md_errmsg(), cut < 8 ? "not a PNG file" : "truncated"));
  }
  for (size_t i = 8; i < n; i++) { /* flipped bytes: an error or an image, never a crash */
    memcpy(copy, buf, n);
    copy[i] ^= 0x5A;
    write_bytes(path_in("flip.png"), copy, n);
    back = NULL;
    if (md_png_read(&back, path_in("flip.png"), 1) == MD_OK) md_tensor_release(back);
  }
  write_bytes(path_in("junk.png"), "not a png at all", 16);
  ck_assert_int_eq(md_png_read(&back, path_in("junk.png"), 1), MD_ERR);
  ck_assert_ptr_nonnull(strstr(md_errmsg(), "junk.png"));
  ck_assert_int_eq(md_png_read(&back, path_in("missing.png"), 1), MD_ERR);
  ck_assert_int_eq(md_png_read(&back, path_in("ok.png"), 2), MD_ERR);
  int64_t bad[3] = {2, 4, 4};
  md_tensor *two = md_tensor_zeros(3, bad);
  ck_assert_int_eq(md_png_write(path_in("x.png"), two), MD_ERR);
  ck_assert_int_eq(md_png_write("/nonexistent-dir/x.png", img), MD_ERR);
  md_tensor_release(img);
  md_tensor_release(two);
}
END_TEST

START_TEST(grid_matches_reference) {
  int64_t n_cases[][3] = {{3, 2, 1}, {5, 8, 2}, {1, 4, 0}, {7, 3, 3}};
  for (int k = 0; k < 4; k++) {
    int64_t n = n_cases[k][0], nrow = n_cases[k][1], pad = n_cases[k][2];
    int64_t shape[4] = {n, 3, 4, 5};
    md_tensor *b = md_tensor_new(4, shape), *g = NULL;
    fill_uniform(md_data(b), b->numel, (uint32_t)k);
    ck_assert_int_eq(md_make_grid(&g, b, nrow, pad, 0.25f), MD_OK);
    int64_t cols = n < nrow ? n : nrow, rows = (n + cols - 1) / cols;
    ck_assert_int_eq(g->shape[0], 3);
    ck_assert_int_eq(g->shape[1], rows * (4 + pad) + pad);
    ck_assert_int_eq(g->shape[2], cols * (5 + pad) + pad);
    const float *d = md_data(g);
    for (int64_t ch = 0; ch < 3; ch++)
      for (int64_t y = 0; y < g->shape[1]; y++)
        for (int64_t x = 0; x < g->shape[2]; x++)
          ck_assert_float_eq(d[(ch * g->shape[1] + y) * g->shape[2] + x],
                             naive_grid_at(md_data(b), n, 3, 4, 5, nrow, pad, 0.25f, ch, y, x));
    md_tensor_release(b);
    md_tensor_release(g);
  }
  int64_t s3[3] = {1, 2, 2};
  md_tensor *t3 = md_tensor_zeros(3, s3), *g = NULL;
  ck_assert_int_eq(md_make_grid(&g, t3, 8, 2, 0), MD_ERR);
  int64_t s4[4] = {1, 1, 2, 2};
  md_tensor *t4 = md_tensor_zeros(4, s4);
  ck_assert_int_eq(md_make_grid(&g, t4, 0, 2, 0), MD_ERR);
  ck_assert_int_eq(md_make_grid(&g, t4, 1, -1, 0), MD_ERR);
  md_tensor_release(t3);
  md_tensor_release(t4);
}
END_TEST

/* ---- IDX ---- */

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
  ck_assert_int_eq(t->shape[0], 2);
  ck_assert_int_eq(t->shape[2], 4);
  for (int i = 0; i < 24; i++) ck_assert_float_eq(md_data(t)[i], (float)i);
  md_tensor_release(t);
  unsigned char lab[8 + 3] = {0, 0, 8, 1, 0, 0, 0, 3, 9, 0, 4};
  write_bytes(path_in("labels.idx"), lab, sizeof lab); /* not gzipped: read as is */
  ck_assert_int_eq(md_idx_read(&t, path_in("labels.idx")), MD_OK);
  ck_assert_int_eq(t->ndim, 1);
  ck_assert_float_eq(md_data(t)[0], 9.0f);
  ck_assert_float_eq(md_data(t)[2], 4.0f);
  md_tensor_release(t);
  write_idx_gz(path_in("short.gz"), hdr, 16, 20);
  ck_assert_int_eq(md_idx_read(&t, path_in("short.gz")), MD_ERR);
  ck_assert_ptr_nonnull(strstr(md_errmsg(), "truncated: expected 24 bytes of images, got 20"));
  write_bytes(path_in("lab_short.idx"), lab, sizeof lab - 1);
  ck_assert_int_eq(md_idx_read(&t, path_in("lab_short.idx")), MD_ERR);
  ck_assert_ptr_nonnull(strstr(md_errmsg(), "expected 3 bytes of labels, got 2"));
  unsigned char bad[4] = {1, 2, 3, 4};
  write_idx_gz(path_in("bad.gz"), bad, 4, 0);
  ck_assert_int_eq(md_idx_read(&t, path_in("bad.gz")), MD_ERR);
  ck_assert_ptr_nonnull(strstr(md_errmsg(), "magic"));
  unsigned char zero[12] = {0, 0, 8, 2, 0, 0, 0, 0, 0, 0, 0, 5};
  write_idx_gz(path_in("zero.gz"), zero, 12, 0);
  ck_assert_int_eq(md_idx_read(&t, path_in("zero.gz")), MD_ERR);
  unsigned char huge[16] = {0, 0, 8, 3, 0x7f, 0xff, 0xff, 0xff, 0x7f, 0xff, 0xff, 0xff, 0, 0, 0, 1};
  write_idx_gz(path_in("huge.gz"), huge, 16, 0);
  ck_assert_int_eq(md_idx_read(&t, path_in("huge.gz")), MD_ERR);
  ck_assert_ptr_nonnull(strstr(md_errmsg(), "implausible"));
  write_idx_gz(path_in("hdr.gz"), hdr, 9, 0);
  ck_assert_int_eq(md_idx_read(&t, path_in("hdr.gz")), MD_ERR);
  ck_assert_int_eq(md_idx_read(&t, path_in("none.gz")), MD_ERR);
  /* a gzip stream cut in the middle */
  unsigned char gz[4096];
  write_idx_gz(path_in("big.gz"), hdr, 16, 24);
  size_t n = read_bytes(path_in("big.gz"), gz, sizeof gz);
  for (size_t cut = 1; cut < n; cut++) {
    write_bytes(path_in("cutgz.gz"), gz, cut);
    t = NULL;
    int rc = md_idx_read(&t, path_in("cutgz.gz"));
    if (rc == MD_OK) md_tensor_release(t); /* a cut in the gzip trailer may still give all the data */
    else ck_assert_ptr_nonnull(strstr(md_errmsg(), "cutgz.gz"));
  }
}
END_TEST

/* ---- safetensors ---- */

static void write_st(const char *path, const char *header, size_t data_bytes) {
  size_t n = strlen(header);
  unsigned char *buf = calloc(1, 8 + n + data_bytes);
  for (int i = 0; i < 8; i++) buf[i] = (unsigned char)((uint64_t)n >> (8 * i));
  memcpy(buf + 8, header, n);
  write_bytes(path, buf, 8 + n + data_bytes);
  free(buf);
}

START_TEST(safetensors_round_trip) {
  make_dir();
  int64_t sa[2] = {2, 3}, sb[4] = {1, 2, 1, 2}, se[2] = {0, 4};
  md_tensor *a = md_tensor_new(2, sa), *b = md_tensor_new(4, sb), *s = md_tensor_scalar(-2.5f),
            *e = md_tensor_zeros(2, se);
  fill_uniform(md_data(a), a->numel, 1);
  fill_uniform(md_data(b), b->numel, 2);
  const char *names[4] = {"z.weight", "a\"q\\uote\n", "scalar", "empty"};
  md_tensor *ts[4] = {a, b, s, e};
  const char *mk[2] = {"config", "note"}, *mv[2] = {"{\"widths\":[3,4]}", "caf\xc3\xa9 \x01"};
  const char *p = path_in("m.safetensors");
  ck_assert_int_eq(md_safetensors_write(p, 4, names, ts, 2, mk, mv), MD_OK);
  ck_assert_int_ne(access(path_in("m.safetensors.tmp"), F_OK), 0); /* renamed away */
  unsigned char raw[4096];
  size_t n = read_bytes(p, raw, sizeof raw);
  uint64_t hl = 0;
  for (int i = 7; i >= 0; i--) hl = hl << 8 | raw[i];
  ck_assert_uint_eq((8 + hl) % 8, 0);
  ck_assert_uint_eq(n, 8 + hl + 4 * (6 + 4 + 1 + 0));
  md_safetensors *st = NULL;
  ck_assert_int_eq(md_safetensors_read(&st, p), MD_OK);
  ck_assert_int_eq(st->n, 4);
  const char *sorted[4] = {"a\"q\\uote\n", "empty", "scalar", "z.weight"};
  md_tensor *want[4] = {b, e, s, a};
  for (int i = 0; i < 4; i++) {
    ck_assert_str_eq(st->names[i], sorted[i]);
    ck_assert(md_same_shape(st->tensors[i], want[i]));
    if (want[i]->numel) ck_assert_close(md_data(st->tensors[i]), md_data(want[i]), want[i]->numel, 0, 0);
  }
  ck_assert_int_eq(st->nmeta, 2);
  ck_assert_str_eq(st->meta_keys[0], "config");
  ck_assert_str_eq(st->meta_values[0], mv[0]);
  ck_assert_str_eq(st->meta_values[1], mv[1]);
  md_safetensors_free(st);
  /* no metadata, no tensors */
  ck_assert_int_eq(md_safetensors_write(p, 0, NULL, NULL, 0, NULL, NULL), MD_OK);
  ck_assert_int_eq(md_safetensors_read(&st, p), MD_OK);
  ck_assert_int_eq(st->n + st->nmeta, 0);
  md_safetensors_free(st);
  /* bad requests */
  const char *dup[2] = {"x", "x"}, *meta_name[1] = {"__metadata__"}, *empty[1] = {""};
  md_tensor *two[2] = {a, b};
  ck_assert_int_eq(md_safetensors_write(p, 2, dup, two, 0, NULL, NULL), MD_ERR);
  ck_assert_ptr_nonnull(strstr(md_errmsg(), "twice"));
  ck_assert_int_eq(md_safetensors_write(p, 1, meta_name, two, 0, NULL, NULL), MD_ERR);
  ck_assert_int_eq(md_safetensors_write(p, 1, empty, two, 0, NULL, NULL), MD_ERR);
  ck_assert_int_eq(md_safetensors_write("/nonexistent-dir/m.safetensors", 1, names, ts, 0, NULL, NULL), MD_ERR);
  md_tensor_release(a);
  md_tensor_release(b);
  md_tensor_release(s);
  md_tensor_release(e);
}
END_TEST

START_TEST(safetensors_headers_are_parsed_strictly) {
  make_dir();
  const char *p = path_in("h.safetensors");
  md_safetensors *st = NULL;
  /* valid: escapes, unicode, spaces, numbers with exponents in metadata-free extra keys */
  write_st(p,
           " { \"a\\u00e9\\ud83d\\ude00\" : {\"dtype\":\"F32\", \"shape\":[2], \"data_offsets\":[0,8], "
           "\"extra\": [1.5e3, -0, true, false, null, {}]}, \"__metadata__\": {\"k\\t\": \"v\\/\"} }  ",
           8);
  ck_assert_int_eq(md_safetensors_read(&st, p), MD_OK);
  ck_assert_str_eq(st->names[0], "a\xc3\xa9\xf0\x9f\x98\x80");
  ck_assert_str_eq(st->meta_keys[0], "k\t");
  ck_assert_str_eq(st->meta_values[0], "v/");
  md_safetensors_free(st);
  struct {
    const char *header;
    size_t data;
    const char *msg;
  } bad[] = {
      {"{oops", 0, "header is not JSON"},
      {"[1, 2]", 0, "not a JSON object"},
      {"{\"a\": 1,}", 0, "header is not JSON"},
      {"{\"a\": 01}", 0, "header is not JSON"},
      {"{\"a\": \"x\\q\"}", 0, "unknown escape"},
      {"{\"a\": \"\\ud800\"}", 0, "surrogate"},
      {"{\"a\": \"\\u0000\"}", 0, "\\u0000"},
      {"{\"a\": tru}", 0, "header is not JSON"},
      {"{\"a\": \"x\" } x", 0, "trailing characters"},
      {"{\"a\": \"unterminated}", 0, "unterminated"},
      {"{\"a\": [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}", 0, "nesting"},
      {"{\"a\": 5}", 0, "not an object"},
      {"{\"a\": {\"dtype\":\"F16\",\"shape\":[1],\"data_offsets\":[0,2]}}", 2, "dtype F16"},
      {"{\"a\": {\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", 4, "shape"},
      {"{\"a\": {\"dtype\":\"F32\",\"shape\":[1.5],\"data_offsets\":[0,4]}}", 4, "shape"},
      {"{\"a\": {\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1],\"data_offsets\":[0,4]}}", 4, "dimensions"},
      {"{\"a\": {\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,4]}}", 4, "data_offsets [0, 4]"},
      {"{\"a\": {\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0]}}", 4, "data_offsets"},
      {"{\"a\": {\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 2, "truncated"},
      {"{\"a\": {\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 6, "after the last tensor"},
      {"{\"a\": {\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8, "hole"},
      {"{\"a\": {\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
       "\"b\": {\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}",
       4, "overlap"},
      {"{\"a\": {\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
       "\"a\": {\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
       8, "twice"},
      {"{\"a\": {\"dtype\":\"F32\",\"shape\":[1099511627776, 1099511627776],\"data_offsets\":[0,4]}}", 4,
       "implausible"},
      {"{\"a\": {\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,99999999999999999999]}}", 4, "data_offsets"},
      {"{\"__metadata__\": {\"k\": 3}}", 0, "not a string"},
      {"{\"__metadata__\": [\"k\"]}", 0, "not an object"},
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    write_st(p, bad[i].header, bad[i].data);
    st = NULL;
    int rc = md_safetensors_read(&st, p);
    if (rc != MD_ERR || !strstr(md_errmsg(), bad[i].msg))
      ck_abort_msg("header %zu: %s -> rc %d, message: %s (wanted %s)", i, bad[i].header, rc, md_errmsg(),
                   bad[i].msg);
    ck_assert_ptr_null(st);
  }
  /* the length field itself */
  write_bytes(p, "abc", 3);
  ck_assert_int_eq(md_safetensors_read(&st, p), MD_ERR);
  ck_assert_ptr_nonnull(strstr(md_errmsg(), "shorter than the 8-byte header length"));
  unsigned char huge[16] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, '{', '}'};
  write_bytes(p, huge, sizeof huge);
  ck_assert_int_eq(md_safetensors_read(&st, p), MD_ERR);
  ck_assert_ptr_nonnull(strstr(md_errmsg(), "truncated?"));
  ck_assert_int_eq(md_safetensors_read(&st, path_in("absent.safetensors")), MD_ERR);
  ck_assert_ptr_nonnull(strstr(md_errmsg(), "cannot open"));
  ck_assert_int_eq(md_safetensors_read(&st, dir), MD_ERR); /* a directory */
}
END_TEST

START_TEST(safetensors_truncated_or_flipped_never_crashes) {
  make_dir();
  int64_t sa[2] = {3, 5};
  md_tensor *a = md_tensor_new(2, sa);
  fill_uniform(md_data(a), a->numel, 3);
  const char *names[2] = {"w", "b"}, *mk[1] = {"step"}, *mv[1] = {"12"};
  md_tensor *ts[2] = {a, a};
  const char *p = path_in("t.safetensors");
  ck_assert_int_eq(md_safetensors_write(p, 2, names, ts, 1, mk, mv), MD_OK);
  unsigned char raw[4096], copy[4096];
  size_t n = read_bytes(p, raw, sizeof raw);
  md_safetensors *st = NULL;
  for (size_t cut = 0; cut < n; cut++) {
    write_bytes(path_in("cut.safetensors"), raw, cut);
    ck_assert_int_eq(md_safetensors_read(&st, path_in("cut.safetensors")), MD_ERR);
  }
  for (size_t i = 0; i < n - 4 * 30; i++) { /* every header byte flipped */
    memcpy(copy, raw, n);
    copy[i] ^= 0x21;
    write_bytes(path_in("flip.safetensors"), copy, n);
    st = NULL;
    if (md_safetensors_read(&st, path_in("flip.safetensors")) == MD_OK) md_safetensors_free(st);
  }
  md_tensor_release(a);
}
END_TEST

/* Each write goes through its own "<path>.tmp.<pid>.<n>"; a save removes the
 * temporaries of that path left by dead processes, and only those. */
START_TEST(safetensors_temporaries_are_unique_and_stale_ones_removed) {
  make_dir();
  pid_t child = fork();
  if (child == 0) _exit(0);
  ck_assert_int_gt(child, 0);
  waitpid(child, NULL, 0); /* child is now a pid with no process */
  char dead[160], live[160], other[160];
  snprintf(dead, sizeof dead, "%s.tmp.%lld.3", path_in("s.safetensors"), (long long)child);
  snprintf(live, sizeof live, "%s.tmp.%lld.0", path_in("s.safetensors"), (long long)getppid());
  snprintf(other, sizeof other, "%s.tmp.%lld.0", path_in("t.safetensors"), (long long)child);
  write_bytes(dead, "x", 1);
  write_bytes(live, "x", 1);
  write_bytes(other, "x", 1);
  md_tensor *a = md_tensor_scalar(1.5f);
  const char *names[1] = {"a"};
  ck_assert_int_eq(md_safetensors_write(path_in("s.safetensors"), 1, names, &a, 0, NULL, NULL), MD_OK);
  ck_assert_int_ne(access(dead, F_OK), 0);  /* its writer is gone */
  ck_assert_int_eq(access(live, F_OK), 0);  /* its writer may still be at work */
  ck_assert_int_eq(access(other, F_OK), 0); /* another path's */
  char mine[160];
  snprintf(mine, sizeof mine, "%s.tmp.%lld.0", path_in("s.safetensors"), (long long)getpid());
  ck_assert_int_ne(access(mine, F_OK), 0); /* renamed away */
  md_tensor_release(a);
}
END_TEST

START_TEST(resampler_keeps_constants_interpolates_and_antialiases) {
  unsigned char rgb[7 * 13 * 3], out[3 * 20 * 30];
  for (int i = 0; i < 7 * 13; i++) rgb[i * 3] = 10, rgb[i * 3 + 1] = 200, rgb[i * 3 + 2] = 77;
  md_pixels p = {rgb, 7, 13, 3};
  const int64_t sizes[4][2] = {{5, 4}, {3, 3}, {20, 30}, {7, 13}};
  for (int fit = MD_FIT_RESIZE; fit <= MD_FIT_COVER; fit++)
    for (int k = 0; k < 4; k++) {
      int64_t h = sizes[k][0], w = sizes[k][1];
      ck_assert_int_eq(md_pixels_fit(out, h, w, &p, (md_fit)fit), MD_OK);
      for (int64_t i = 0; i < h * w; i++) {
        ck_assert_int_eq(out[i], 10);
        ck_assert_int_eq(out[h * w + i], 200);
        ck_assert_int_eq(out[2 * h * w + i], 77);
      }
    }
  /* enlarging 1 x 2 -> 1 x 4 is bilinear: pixel centres 0.5, 1.5 sampled at 0.25, 0.75, 1.25, 1.75 */
  unsigned char two[2] = {0, 255}, four[4];
  md_pixels q = {two, 1, 2, 1};
  ck_assert_int_eq(md_pixels_fit(four, 1, 4, &q, MD_FIT_RESIZE), MD_OK);
  const unsigned char want[4] = {0, 64, 191, 255};
  for (int i = 0; i < 4; i++) ck_assert_int_eq(four[i], want[i]);
  /* a one-pixel checkerboard shrunk 4x is gray: every source pixel is averaged in */
  unsigned char board[16 * 16], small[16];
  for (int i = 0; i < 256; i++) board[i] = ((i / 16 + i % 16) % 2) ? 255 : 0;
  md_pixels b = {board, 16, 16, 1};
  ck_assert_int_eq(md_pixels_fit(small, 4, 4, &b, MD_FIT_RESIZE), MD_OK);
  for (int i = 0; i < 16; i++) ck_assert(abs(small[i] - 128) <= 8);
  /* cover keeps the middle of a wide image: columns 0..3 = 0, 4..7 = 100, 8..11 = 200 */
  unsigned char wide[4 * 12], mid[4];
  for (int i = 0; i < 48; i++) wide[i] = (unsigned char)(100 * ((i % 12) / 4));
  md_pixels wd = {wide, 4, 12, 1};
  ck_assert_int_eq(md_pixels_fit(mid, 2, 2, &wd, MD_FIT_COVER), MD_OK);
  for (int i = 0; i < 4; i++) ck_assert(abs(mid[i] - 100) <= 15);
  ck_assert_int_eq(md_pixels_fit(out, 7, 12, &p, MD_FIT_EXACT), MD_ERR);
  ck_assert_ptr_nonnull(strstr(md_errmsg(), "is 7 x 13, expected 7 x 12"));
}
END_TEST

START_TEST(byte_store_gathers_windows_and_mirrors) {
  md_byte_store *s = md_byte_store_new(2, 1, 3, 4);
  ck_assert_ptr_nonnull(s);
  for (int i = 0; i < 24; i++) s->data[i] = (unsigned char)i; /* image n, row y, column x = 12n + 4y + x */
  int64_t idx[2] = {1, 0};
  /* row 0: mirrored, window at the bottom right; row 1: as is, window at the top left */
  float aug[8] = {0.1f, 0.99f, 0.99f, 0, 0.9f, 0.0f, 0.0f, 0};
  md_tensor *t = NULL;
  ck_assert_int_eq(md_byte_store_gather(&t, s, idx, 2, 2, 3, aug, true), MD_OK);
  const float *d = md_data(t);
  for (int y = 0; y < 2; y++)
    for (int x = 0; x < 3; x++) {
      ck_assert_float_eq(d[y * 3 + x], md_png_from_byte((unsigned char)(12 + 4 * (1 + y) + (1 + 2 - x))));
      ck_assert_float_eq(d[6 + y * 3 + x], md_png_from_byte((unsigned char)(4 * y + x)));
    }
  md_tensor_release(t);
  /* no aug: the centre window, unflipped */
  ck_assert_int_eq(md_byte_store_gather(&t, s, idx, 1, 1, 2, NULL, true), MD_OK);
  ck_assert_float_eq(md_data(t)[0], md_png_from_byte(12 + 4 + 1));
  md_tensor_release(t);
  int64_t bad = 2;
  ck_assert_int_eq(md_byte_store_gather(&t, s, &bad, 1, 3, 4, NULL, false), MD_ERR);
  ck_assert_ptr_nonnull(strstr(md_errmsg(), "index 2 is out of range 0..1"));
  ck_assert_int_eq(md_byte_store_gather(&t, s, idx, 1, 4, 4, NULL, false), MD_ERR);
  ck_assert_ptr_null(md_byte_store_new(0, 1, 3, 4));
  ck_assert_ptr_null(md_byte_store_new(2, 2, 3, 4));
  md_byte_store_free(s);
}
END_TEST

START_TEST(jpeg_round_trip_and_forged_headers) {
  make_dir();
  int64_t shape[3] = {3, 16, 16};
  md_tensor *img = md_tensor_full(3, shape, 0.25f);
  md_pixels px;
  if (!md_jpeg_available()) {
    ck_assert_int_eq(md_jpeg_write(path_in("a.jpg"), img, 90), MD_ERR);
    ck_assert_ptr_nonnull(strstr(md_errmsg(), "libturbojpeg0-dev"));
    md_tensor_release(img);
    return;
  }
  ck_assert_int_eq(md_jpeg_write(path_in("a.jpg"), img, 90), MD_OK);
  ck_assert_int_eq(md_image_decode(&px, path_in("a.jpg"), 0, false), MD_OK);
  ck_assert_int_eq(px.c, 3);
  ck_assert_int_eq(px.h, 16);
  for (int i = 0; i < 16 * 16 * 3; i++) ck_assert(abs(px.data[i] - md_png_to_byte(0.25f)) <= 2);
  md_pixels_free(&px);
  ck_assert_int_eq(md_image_decode(&px, path_in("a.jpg"), 1, false), MD_OK);
  ck_assert_int_eq(px.c, 1);
  md_pixels_free(&px);
  /* the same bytes declaring 16000 x 16000: refused before allocating */
  unsigned char buf[4096];
  size_t n = read_bytes(path_in("a.jpg"), buf, sizeof buf);
  size_t sof = 2;
  while (sof + 9 < n && !(buf[sof] == 0xFF && buf[sof + 1] == 0xC0)) sof++;
  ck_assert(sof + 9 < n);
  buf[sof + 5] = buf[sof + 7] = 16000 >> 8;
  buf[sof + 6] = buf[sof + 8] = 16000 & 255;
  write_bytes(path_in("forged.jpg"), buf, n);
  ck_assert_int_eq(md_image_decode(&px, path_in("forged.jpg"), 0, false), MD_ERR);
  ck_assert_ptr_nonnull(strstr(md_errmsg(), "declares a 16000 x 16000 image"));
  write_bytes(path_in("cut.jpg"), buf, 20);
  ck_assert_int_eq(md_image_decode(&px, path_in("cut.jpg"), 0, false), MD_ERR);
  ck_assert_ptr_nonnull(strstr(md_errmsg(), "cut.jpg is corrupt"));
  md_tensor_release(img);
}
END_TEST

Suite *make_suite(void) {
  Suite *s = suite_create("io");
  TCase *tc = tcase_create("files");
  tcase_set_timeout(tc, 60);
  tcase_add_test(tc, byte_mapping_matches_reference);
  tcase_add_test(tc, png_round_trip_gray_and_rgb);
  tcase_add_test(tc, png_reads_palette_16bit_alpha_and_low_depth);
  tcase_add_test(tc, malformed_png_is_an_error);
  tcase_add_test(tc, grid_matches_reference);
  tcase_add_test(tc, idx_reads_and_rejects_truncation);
  tcase_add_test(tc, safetensors_round_trip);
  tcase_add_test(tc, safetensors_headers_are_parsed_strictly);
  tcase_add_test(tc, safetensors_truncated_or_flipped_never_crashes);
  tcase_add_test(tc, safetensors_temporaries_are_unique_and_stale_ones_removed);
  tcase_add_test(tc, resampler_keeps_constants_interpolates_and_antialiases);
  tcase_add_test(tc, byte_store_gathers_windows_and_mirrors);
  tcase_add_test(tc, jpeg_round_trip_and_forged_headers);
  suite_add_tcase(s, tc);
  return s;
}
