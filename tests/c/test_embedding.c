/* Mirrors csrc/ops/embedding.c: embedding lookups against naive_embedding
 * and finite differences (repeated rows accumulate), the sinusoidal
 * timestep embedding against naive_timestep_embedding; bad indices. */
#include "ops/embedding.h"
#include "testutil.h"

static md_tensor *run_embedding(md_tensor *const *in, const void *arg) {
  md_tensor *y = NULL;
  return md_embedding(&y, in[0], in[1]) == MD_OK ? y : NULL;
}

START_TEST(embedding_matches_naive_and_finite_differences) {
  int64_t si[2] = {2, 3}, sw[2] = {4, 5};
  float idx[6] = {1, 3, 1, 0, 1, 2};
  md_tensor *in[2] = {md_tensor_from_data(2, si, idx), filled(2, sw, 47, -1, 1)};
  md_tensor *y = run_embedding(in, NULL);
  ck_assert_ptr_nonnull(y);
  ck_assert_int_eq(y->ndim, 3);
  ck_assert_int_eq(y->shape[2], 5);
  float want[30];
  naive_embedding(idx, 6, md_data(in[1]), 5, want);
  for (int64_t i = 0; i < 30; i++) ck_assert_float_eq(md_data(y)[i], want[i]);
  md_tensor_release(y);
  ck_assert(check_grads(run_embedding, NULL, 2, in, 1u) <= 1.0);
  float bad[3] = {-1, 1.5f, 4}; /* negative, fractional, past the last row */
  for (int k = 0; k < 3; k++) {
    md_data(in[0])[4] = bad[k];
    ck_assert_int_eq(md_embedding(&y, in[0], in[1]), MD_ERR);
    ck_assert_ptr_nonnull(strstr(md_errmsg(), "out of range for 4 rows"));
  }
  md_data(in[0])[4] = 1;
  int64_t s1[1] = {4};
  md_tensor *flat = md_tensor_zeros(1, s1);
  ck_assert_int_eq(md_embedding(&y, in[0], flat), MD_ERR);
  ck_assert_ptr_nonnull(strstr(md_errmsg(), "weight must be num x dim"));
  md_tensor_release(flat);
  md_tensor_release(in[0]), md_tensor_release(in[1]);
}
END_TEST

START_TEST(timestep_embedding_matches_naive) {
  int64_t st[1] = {4};
  float t[4] = {0, 1, 250.5f, 999};
  md_tensor *tt = md_tensor_from_data(1, st, t), *y = NULL;
  int64_t dims[3] = {8, 7, 1}; /* odd: the last column stays 0; 1: all 0 */
  for (int k = 0; k < 3; k++) {
    ck_assert_int_eq(md_timestep_embedding(&y, tt, dims[k], 10000), MD_OK);
    ck_assert_int_eq(y->shape[0], 4);
    ck_assert_int_eq(y->shape[1], dims[k]);
    double want[32];
    naive_timestep_embedding(t, 4, dims[k], 10000, want);
    for (int64_t i = 0; i < 4 * dims[k]; i++) ck_assert_double_eq_tol(md_data(y)[i], want[i], 1e-6);
    md_tensor_release(y);
  }
  ck_assert_int_eq(md_timestep_embedding(&y, tt, 0, 10000), MD_ERR);
  int64_t s2[2] = {2, 2};
  md_tensor *t2 = md_tensor_zeros(2, s2);
  ck_assert_int_eq(md_timestep_embedding(&y, t2, 8, 10000), MD_ERR);
  ck_assert_ptr_nonnull(strstr(md_errmsg(), "1-D"));
  md_tensor_release(t2), md_tensor_release(tt);
}
END_TEST

Suite *make_suite(void) {
  Suite *s = suite_create("embedding");
  TCase *tc = tcase_create("ops");
  tcase_add_test(tc, embedding_matches_naive_and_finite_differences);
  tcase_add_test(tc, timestep_embedding_matches_naive);
  suite_add_tcase(s, tc);
  return s;
}
