/* Mirrors csrc/ops/movement.c: cat, stack, permute, index_select, clone,
 * copy_ and fill_, against naive_cat / naive_stack / naive_permute /
 * naive_index_select and finite differences (check_grads). */
#include "ops/movement.h"
#include "testutil.h"

static void expect_equal(const md_tensor *y, const float *want) {
  for (int64_t i = 0; i < y->numel; i++) ck_assert_float_eq(md_data(y)[i], want[i]);
}

static md_tensor *run_cat(md_tensor *const *in, const void *arg) {
  md_tensor *y = NULL;
  return md_cat(&y, 3, in, *(const int *)arg) == MD_OK ? y : NULL;
}

static md_tensor *run_stack(md_tensor *const *in, const void *arg) {
  md_tensor *y = NULL;
  return md_stack(&y, 2, in, *(const int *)arg) == MD_OK ? y : NULL;
}

START_TEST(cat_and_stack_match_naive_and_finite_differences) {
  int64_t s0[3] = {2, 1, 3}, s1[3] = {2, 4, 3}, s2[3] = {2, 2, 3};
  md_tensor *in[3] = {filled(3, s0, 7, -1, 1), filled(3, s1, 8, -1, 1), filled(3, s2, 9, -1, 1)};
  float want[48];
  int dim = 1;
  md_tensor *y = run_cat(in, &dim);
  ck_assert_int_eq(y->shape[1], 7);
  naive_cat(3, in, dim, want);
  expect_equal(y, want);
  md_tensor_release(y);
  ck_assert(check_grads(run_cat, &dim, 3, in, 0) <= 1.0);
  md_tensor *pair[2] = {in[1], filled(3, s1, 10, -1, 1)};
  for (dim = 0; dim <= 3; dim++) {
    y = run_stack(pair, &dim);
    ck_assert_ptr_nonnull(y);
    ck_assert_int_eq(y->ndim, 4);
    ck_assert_int_eq(y->shape[dim], 2);
    naive_stack(2, pair, dim, want);
    expect_equal(y, want);
    md_tensor_release(y);
  }
  dim = 2;
  ck_assert(check_grads(run_stack, &dim, 2, pair, 0) <= 1.0);
  ck_assert_int_eq(md_cat(&y, 2, in, 0), MD_ERR); /* [2,1,3] and [2,4,3] differ outside dim 0 */
  ck_assert_ptr_nonnull(strstr(md_errmsg(), "[2, 4, 3]"));
  for (int k = 0; k < 3; k++) md_tensor_release(in[k]);
  md_tensor_release(pair[1]);
}
END_TEST

static md_tensor *run_permute(md_tensor *const *in, const void *arg) {
  md_tensor *y = NULL;
  return md_permute(&y, in[0], arg) == MD_OK ? y : NULL;
}

START_TEST(permute_matches_naive_and_finite_differences) {
  int64_t s[4] = {2, 3, 4, 5};
  md_tensor *x = filled(4, s, 11, -1, 1);
  int perm[4] = {2, 0, 3, 1};
  md_tensor *y = run_permute(&x, perm);
  for (int d = 0; d < 4; d++) ck_assert_int_eq(y->shape[d], s[perm[d]]);
  float want[120];
  naive_permute(x, perm, want);
  expect_equal(y, want);
  md_tensor_release(y);
  ck_assert(check_grads(run_permute, perm, 1, &x, 0) <= 1.0);
  int bad[4] = {0, 1, 1, 3};
  ck_assert_int_eq(md_permute(&y, x, bad), MD_ERR);
  md_tensor_release(x);
}
END_TEST

static md_tensor *run_index_select(md_tensor *const *in, const void *arg) {
  md_tensor *y = NULL;
  return md_index_select(&y, in[0], *(const int *)arg, in[1]) == MD_OK ? y : NULL;
}

START_TEST(index_select_matches_naive_and_accumulates_repeats) {
  int64_t s[3] = {2, 4, 3}, sk[1] = {5};
  float idx[5] = {3, 0, 3, 1, 3}, want[30];
  md_tensor *in[2] = {filled(3, s, 12, -1, 1), md_tensor_from_data(1, sk, idx)};
  int dim = 1;
  md_tensor *y = run_index_select(in, &dim);
  naive_index_select(in[0], dim, idx, 5, want);
  expect_equal(y, want);
  md_tensor_release(y);
  ck_assert(check_grads(run_index_select, &dim, 2, in, 2u) <= 1.0);
  md_data(in[1])[2] = 4; /* out of range */
  ck_assert_int_eq(md_index_select(&y, in[0], 1, in[1]), MD_ERR);
  ck_assert_ptr_nonnull(strstr(md_errmsg(), "index 4"));
  md_data(in[1])[2] = 1.5f;
  ck_assert_int_eq(md_index_select(&y, in[0], 1, in[1]), MD_ERR);
  md_tensor_release(in[0]), md_tensor_release(in[1]);
}
END_TEST

START_TEST(clone_and_copy_are_deep_and_broadcast) {
  int64_t s[2] = {3, 4}, sr[1] = {4};
  md_tensor *x = filled(2, s, 13, -1, 1), *row = filled(1, sr, 14, -1, 1), *c;
  ck_assert_int_eq(md_clone(&c, x), MD_OK);
  ck_assert_ptr_ne(c->storage, x->storage);
  ck_assert_mem_eq(md_data(c), md_data(x), 12 * sizeof(float));
  ck_assert_msg(md_copy_(c, row) == MD_OK, "%s", md_errmsg());
  for (int64_t i = 0; i < 12; i++) ck_assert_float_eq(md_data(c)[i], md_data(row)[naive_broadcast_index(row, 2, s, i)]);
  ck_assert_int_eq(md_copy_(row, c), MD_ERR);
  ck_assert_int_eq(md_fill_(c, 2.5f), MD_OK);
  for (int64_t i = 0; i < 12; i++) ck_assert_float_eq(md_data(c)[i], 2.5f);
  md_tensor_release(x), md_tensor_release(row), md_tensor_release(c);
}
END_TEST

Suite *make_suite(void) {
  Suite *s = suite_create("movement");
  TCase *tc = tcase_create("ops");
  tcase_set_timeout(tc, 60);
  tcase_add_test(tc, cat_and_stack_match_naive_and_finite_differences);
  tcase_add_test(tc, permute_matches_naive_and_finite_differences);
  tcase_add_test(tc, index_select_matches_naive_and_accumulates_repeats);
  tcase_add_test(tc, clone_and_copy_are_deep_and_broadcast);
  suite_add_tcase(s, tc);
  return s;
}
