/* Mirrors csrc/ops/loss.c: mse, binary cross-entropy (on probabilities and
 * on logits), cross-entropy and NLL against naive_* losses and finite
 * differences (check_grads, targets included where they have a gradient);
 * bad labels, shapes and probabilities. */
#include "ops/loss.h"
#include "testutil.h"

typedef int (*pair_loss_fn)(md_tensor **out, md_tensor *a, md_tensor *b);
typedef double (*naive_pair_fn)(const float *a, const float *b, int64_t n);

static md_tensor *run_pair(md_tensor *const *in, const void *arg) {
  md_tensor *y = NULL;
  return (*(const pair_loss_fn *)arg)(&y, in[0], in[1]) == MD_OK ? y : NULL;
}

START_TEST(elementwise_losses_match_naive_and_finite_differences) {
  int64_t shape[2] = {4, 7};
  struct {
    pair_loss_fn f;
    naive_pair_fn naive;
    float lo, hi; /* range of the first input; targets in [0, 1) */
  } cases[3] = {{md_mse_loss, naive_mse_loss, -1, 1},
                {md_binary_cross_entropy, naive_binary_cross_entropy, 0.1f, 0.9f},
                {md_binary_cross_entropy_with_logits, naive_binary_cross_entropy_with_logits, -4, 4}};
  for (int c = 0; c < 3; c++) {
    md_tensor *in[2] = {filled(2, shape, 17 + c, cases[c].lo, cases[c].hi), filled(2, shape, 27 + c, 0, 1)};
    md_tensor *y = run_pair(in, &cases[c].f);
    ck_assert_ptr_nonnull(y);
    ck_assert_int_eq(y->ndim, 0);
    double want = cases[c].naive(md_data(in[0]), md_data(in[1]), 28);
    ck_assert_msg(fabs(md_data(y)[0] - want) <= 1e-6 * (1 + fabs(want)), "case %d: %g vs %g", c, md_data(y)[0], want);
    md_tensor_release(y);
    double e = check_grads(run_pair, &cases[c].f, 2, in, 0);
    ck_assert_msg(e <= 1.0, "case %d: gradient off by %g tolerances", c, e);
    md_tensor_release(in[0]), md_tensor_release(in[1]);
  }
}
END_TEST

static md_tensor *run_class(md_tensor *const *in, const void *arg) {
  md_tensor *y = NULL;
  return (arg ? md_nll_loss : md_cross_entropy)(&y, in[0], in[1]) == MD_OK ? y : NULL;
}

START_TEST(classification_losses_match_naive_and_finite_differences) {
  int64_t shape[2] = {5, 6}, sl[1] = {5};
  float labels[5] = {0, 5, 2, 2, 3};
  md_tensor *in[2] = {filled(2, shape, 37, -3, 3), md_tensor_from_data(1, sl, labels)};
  for (int nll = 0; nll < 2; nll++) {
    const void *arg = nll ? "nll" : NULL;
    md_tensor *y = run_class(in, arg);
    ck_assert_ptr_nonnull(y);
    ck_assert_int_eq(y->ndim, 0);
    double want = (nll ? naive_nll_loss : naive_cross_entropy)(md_data(in[0]), labels, 5, 6);
    ck_assert_double_eq_tol(md_data(y)[0], want, 1e-5);
    md_tensor_release(y);
    double e = check_grads(run_class, arg, 2, in, 2u);
    ck_assert_msg(e <= 1.0, "nll %d: gradient off by %g tolerances", nll, e);
  }
  md_tensor_release(in[0]), md_tensor_release(in[1]);
}
END_TEST

START_TEST(bad_labels_shapes_and_probabilities_are_errors) {
  int64_t s2[2] = {2, 10}, sl[1] = {2}, s3[1] = {3};
  float bad[2] = {1, 10};
  md_tensor *x = md_tensor_zeros(2, s2), *l = md_tensor_from_data(1, sl, bad), *a = md_tensor_zeros(1, sl);
  md_tensor *b = md_tensor_zeros(1, s3), *y = NULL;
  ck_assert_int_eq(md_cross_entropy(&y, x, l), MD_ERR);
  ck_assert_ptr_nonnull(strstr(md_errmsg(), "label 10 out of range for 10 classes"));
  md_data(l)[1] = 0.5f;
  ck_assert_int_eq(md_nll_loss(&y, x, l), MD_ERR);
  ck_assert_int_eq(md_cross_entropy(&y, x, b), MD_ERR); /* 3 labels for 2 rows */
  ck_assert_ptr_nonnull(strstr(md_errmsg(), "expected 2 labels"));
  ck_assert_int_eq(md_mse_loss(&y, a, b), MD_ERR);
  md_data(a)[0] = 1.5f;
  ck_assert_int_eq(md_binary_cross_entropy(&y, a, a), MD_ERR);
  ck_assert_ptr_nonnull(strstr(md_errmsg(), "not a probability"));
  md_tensor_release(x), md_tensor_release(l), md_tensor_release(a), md_tensor_release(b);
}
END_TEST

Suite *make_suite(void) {
  Suite *s = suite_create("loss");
  TCase *tc = tcase_create("ops");
  tcase_add_test(tc, elementwise_losses_match_naive_and_finite_differences);
  tcase_add_test(tc, classification_losses_match_naive_and_finite_differences);
  tcase_add_test(tc, bad_labels_shapes_and_probabilities_are_errors);
  suite_add_tcase(s, tc);
  return s;
}
