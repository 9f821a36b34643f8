/* Mirrors csrc/rng.c: the Philox generator against the published known
 * answer and an independent reference implementation (naive_philox),
 * counter semantics (a draw split in two equals one draw), thread-count
 * independence, and the distributions' ranges and moments. */
#include <omp.h>

#include "rng.h"
#include "testutil.h"

/* The 24 bits md_rng_uniform keeps of each word, as an integer. */
static uint32_t bits24(float u) { return (uint32_t)(u * 16777216.0f); }

START_TEST(philox_known_answer) {
  /* Random123's kat_vectors: philox4x32 10 rounds, zero counter and key */
  uint32_t want[4] = {0x6627e8d5u, 0xe169c58du, 0xbc57ac4cu, 0x9b00dbd8u}, got[4];
  uint32_t zk[2] = {0, 0}, zc[4] = {0, 0, 0, 0};
  naive_philox(zk, zc, got);
  for (int j = 0; j < 4; j++) ck_assert_uint_eq(got[j], want[j]);
  md_generator g;
  md_generator_seed(&g, 0);
  float u[4];
  md_rng_uniform(&g, u, 4);
  for (int j = 0; j < 4; j++) ck_assert_uint_eq(bits24(u[j]), want[j] >> 8);
}
END_TEST

START_TEST(uniform_matches_reference_at_any_seed_and_counter) {
  uint64_t seeds[3] = {1, 0xDEADBEEFCAFEull, UINT64_MAX};
  uint64_t counters[3] = {0, 12345, 0x100000000ull - 1}; /* the last crosses into the high word */
  for (int si = 0; si < 3; si++)
    for (int ci = 0; ci < 3; ci++) {
      md_generator g = {.seed = seeds[si], .counter = counters[ci]};
      float u[12];
      md_rng_uniform(&g, u, 12);
      ck_assert_uint_eq(g.counter, counters[ci] + 3); /* one counter step per four numbers */
      for (int b = 0; b < 3; b++) {
        uint64_t c = counters[ci] + (uint64_t)b;
        uint32_t key[2] = {(uint32_t)seeds[si], (uint32_t)(seeds[si] >> 32)};
        uint32_t ctr[4] = {(uint32_t)c, (uint32_t)(c >> 32), 0, 0}, w[4];
        naive_philox(key, ctr, w);
        for (int j = 0; j < 4; j++) ck_assert_uint_eq(bits24(u[b * 4 + j]), w[j] >> 8);
      }
    }
}
END_TEST

START_TEST(split_draws_equal_one_draw_and_state_round_trips) {
  enum { N = 4000 };
  float *one = malloc(N * sizeof *one), *two = malloc(N * sizeof *two);
  md_generator g;
  md_generator_seed(&g, 42);
  md_rng_normal(&g, one, N);
  md_generator_seed(&g, 42);
  md_rng_normal(&g, two, 1000);
  md_generator saved = g; /* a checkpoint's (seed, counter) */
  md_rng_normal(&g, two + 1000, N - 1000);
  ck_assert_mem_eq(one, two, N * sizeof *one);
  md_rng_normal(&saved, two, N - 1000);
  ck_assert_mem_eq(one + 1000, two, (N - 1000) * sizeof *one);
  free(one), free(two);
}
END_TEST

START_TEST(same_numbers_whatever_the_thread_count) {
  enum { N = 300001 }; /* above the parallel threshold, not a multiple of 4 */
  float *a = malloc(N * sizeof *a), *b = malloc(N * sizeof *b);
  int before = omp_get_max_threads();
  for (int kind = 0; kind < 2; kind++) {
    md_generator g;
    omp_set_num_threads(1);
    md_generator_seed(&g, 7);
    (kind ? md_rng_normal : md_rng_uniform)(&g, a, N);
    omp_set_num_threads(3);
    md_generator_seed(&g, 7);
    (kind ? md_rng_normal : md_rng_uniform)(&g, b, N);
    ck_assert_mem_eq(a, b, N * sizeof *a);
  }
  omp_set_num_threads(before);
  free(a), free(b);
}
END_TEST

START_TEST(distributions_have_the_right_range_and_moments) {
  enum { N = 200000 };
  float *x = malloc(N * sizeof *x);
  md_generator g;
  md_generator_seed(&g, 3);
  md_rng_uniform(&g, x, N);
  double s = 0, ss = 0;
  for (int i = 0; i < N; i++) {
    ck_assert(x[i] >= 0.0f && x[i] < 1.0f);
    s += x[i], ss += (double)x[i] * x[i];
  }
  ck_assert_double_eq_tol(s / N, 0.5, 0.005);
  ck_assert_double_eq_tol(ss / N - (s / N) * (s / N), 1.0 / 12, 0.002);
  md_rng_normal(&g, x, N);
  s = ss = 0;
  double s4 = 0;
  for (int i = 0; i < N; i++) {
    ck_assert(isfinite(x[i]));
    s += x[i], ss += (double)x[i] * x[i], s4 += (double)x[i] * x[i] * x[i] * x[i];
  }
  ck_assert_double_eq_tol(s / N, 0.0, 0.01);
  ck_assert_double_eq_tol(ss / N, 1.0, 0.02);
  ck_assert_double_eq_tol(s4 / N, 3.0, 0.1); /* kurtosis of a Gaussian */
  int count[7] = {0};
  md_rng_randint(&g, x, N, -3, 4);
  for (int i = 0; i < N; i++) {
    ck_assert(x[i] == floorf(x[i]) && x[i] >= -3 && x[i] < 4);
    count[(int)x[i] + 3]++;
  }
  for (int v = 0; v < 7; v++) ck_assert_int_lt(abs(count[v] - N / 7), N / 70);
  free(x);
}
END_TEST

START_TEST(generators_are_independent_of_the_default_one) {
  md_generator *d = md_default_generator();
  md_generator_seed(d, 5);
  float a[8], b[8], c[8];
  md_rng_uniform(d, a, 8);
  md_generator_seed(d, 5);
  md_generator other;
  md_generator_seed(&other, 5);
  md_rng_uniform(&other, c, 8); /* same seed, own counter */
  md_rng_uniform(d, b, 8);
  ck_assert_mem_eq(a, b, sizeof a);
  ck_assert_mem_eq(a, c, sizeof a);
  md_generator_seed(&other, 6);
  md_rng_uniform(&other, c, 8);
  ck_assert(memcmp(a, c, sizeof a) != 0);
}
END_TEST

Suite *make_suite(void) {
  Suite *s = suite_create("rng");
  TCase *tc = tcase_create("philox");
  tcase_set_timeout(tc, 60);
  tcase_add_test(tc, philox_known_answer);
  tcase_add_test(tc, uniform_matches_reference_at_any_seed_and_counter);
  tcase_add_test(tc, split_draws_equal_one_draw_and_state_round_trips);
  tcase_add_test(tc, same_numbers_whatever_the_thread_count);
  tcase_add_test(tc, distributions_have_the_right_range_and_moments);
  tcase_add_test(tc, generators_are_independent_of_the_default_one);
  suite_add_tcase(s, tc);
  return s;
}
