/* Mirrors csrc/ops/softmax.c: softmax and log_softmax along each dimension
 * against naive_softmax and finite differences (check_grads). */
#include "ops/softmax.h"
#include "testutil.h"

typedef struct {
  int dim;
  bool as_log;
} softmax_case;

static md_tensor *run_softmax(md_tensor *const *in, const void *arg) {
  const softmax_case *c = arg;
  md_tensor *y = NULL;
  return md_softmax(&y, in[0], c->dim, c->as_log) == MD_OK ? y : NULL;
}

/* inputs in [-4, 4): the largest logit dominates, as it does in training */
START_TEST(softmax_matches_naive_and_finite_differences) {
  int64_t shape[3] = {3, 5, 4};
  md_tensor *x = filled(3, shape, 16, -4, 4);
  for (int d = 0; d < 3; d++)
    for (int as_log = 0; as_log < 2; as_log++) {
      softmax_case c = {d, as_log};
      md_tensor *y = run_softmax(&x, &c);
      ck_assert_ptr_nonnull(y);
      int64_t outer, len, inner;
      split_around(x, false, d, &outer, &len, &inner);
      double want[60];
      naive_softmax(md_data(x), want, outer, len, inner, as_log);
      for (int64_t i = 0; i < x->numel; i++)
        ck_assert_msg(fabs(md_data(y)[i] - want[i]) <= 1e-6 * (1 + fabs(want[i])), "dim %d log %d at %lld: %g vs %g",
                      d, as_log, (long long)i, md_data(y)[i], want[i]);
      md_tensor_release(y);
      double e = check_grads(run_softmax, &c, 1, &x, 0);
      ck_assert_msg(e <= 1.0, "dim %d log %d: gradient off by %g tolerances", d, as_log, e);
    }
  md_tensor_release(x);
}
END_TEST

/* exp of large logits must not overflow: the maximum is subtracted first */
START_TEST(softmax_is_stable_and_checks_its_dimension) {
  int64_t s[1] = {3};
  float big[3] = {1000, 999, -1000};
  md_tensor *x = md_tensor_from_data(1, s, big), *y = NULL;
  ck_assert_int_eq(md_softmax(&y, x, 0, false), MD_OK);
  double want[3];
  naive_softmax(big, want, 1, 3, 1, false);
  for (int i = 0; i < 3; i++) ck_assert_double_eq_tol(md_data(y)[i], want[i], 1e-6);
  md_tensor_release(y);
  ck_assert_int_eq(md_softmax(&y, x, 0, true), MD_OK);
  ck_assert_float_eq_tol(md_data(y)[2], -2000 - log1p(exp(-1.0)), 1e-3);
  md_tensor_release(y);
  ck_assert_int_eq(md_softmax(&y, x, 1, false), MD_ERR);
  md_tensor *scalar = md_tensor_scalar(1);
  ck_assert_int_eq(md_softmax(&y, scalar, 0, false), MD_ERR);
  ck_assert_ptr_nonnull(strstr(md_errmsg(), "at least one dimension"));
  md_tensor_release(scalar), md_tensor_release(x);
}
END_TEST

Suite *make_suite(void) {
  Suite *s = suite_create("softmax");
  TCase *tc = tcase_create("ops");
  tcase_add_test(tc, softmax_matches_naive_and_finite_differences);
  tcase_add_test(tc, softmax_is_stable_and_checks_its_dimension);
  suite_add_tcase(s, tc);
  return s;
}
