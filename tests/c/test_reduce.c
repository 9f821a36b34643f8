/* Mirrors csrc/ops/reduce.c: sum, mean, var, std and max / min, over one
 * dimension or all, against naive_reduce / naive_max and finite
 * differences (check_grads); empty and degenerate inputs. */
#include "ops/reduce.h"
#include "testutil.h"

typedef struct {
  md_reduce_op op;
  bool all;
  int dim, correction;
  bool keepdim;
} reduce_case;

static md_tensor *run_reduce(md_tensor *const *in, const void *arg) {
  const reduce_case *c = arg;
  md_tensor *y = NULL;
  return md_reduce(&y, c->op, in[0], c->all, c->dim, c->keepdim, c->correction) == MD_OK ? y : NULL;
}

/* [3, 50, 4]: a reduced length of 50 spans several vector lanes */
START_TEST(reductions_match_naive_and_finite_differences) {
  int64_t shapes[2][3] = {{3, 5, 4}, {3, 50, 4}};
  for (int si = 0; si < 2; si++) {
    md_tensor *x = filled(3, shapes[si], 5 - si, -1, 1);
    for (md_reduce_op op = MD_SUM; op <= MD_STD; op++)
      for (int d = -1; d < 3; d++)
        for (int keep = 0; keep < 2; keep++) {
          reduce_case c = {op, d < 0, d < 0 ? 0 : d, op >= MD_VAR ? keep : 1, keep};
          md_tensor *y = run_reduce(&x, &c);
          ck_assert_ptr_nonnull(y);
          ck_assert_int_eq(y->ndim, c.all ? 0 : keep ? 3 : 2);
          if (!c.all && keep) ck_assert_int_eq(y->shape[d], 1);
          int64_t outer, len, inner;
          split_around(x, c.all, d, &outer, &len, &inner);
          double *want = malloc((size_t)(outer * inner) * sizeof *want);
          naive_reduce(op, md_data(x), outer, len, inner, c.correction, want);
          for (int64_t i = 0; i < outer * inner; i++) ck_assert_double_eq_tol(md_data(y)[i], want[i], 1e-5);
          free(want);
          md_tensor_release(y);
          double e = check_grads(run_reduce, &c, 1, &x, 0);
          ck_assert_msg(e <= 1.0, "op %d dim %d keepdim %d: gradient off by %g tolerances", op, d, keep, e);
        }
    md_tensor_release(x);
  }
}
END_TEST

typedef struct {
  bool all;
  int dim;
  bool is_min;
} max_case;

static md_tensor *run_max(md_tensor *const *in, const void *arg) {
  const max_case *c = arg;
  md_tensor *v = NULL, *ix = NULL;
  if (md_max(&v, &ix, in[0], c->all, c->dim, false, c->is_min) != MD_OK) return NULL;
  md_tensor_release(ix);
  return v;
}

/* dim -1 here: over all elements */
START_TEST(max_min_match_naive_and_finite_differences) {
  int64_t shape[3] = {2, 6, 3};
  md_tensor *x = filled(3, shape, 6, -1, 1);
  for (int d = -1; d < 3; d++)
    for (int is_min = 0; is_min < 2; is_min++) {
      max_case c = {d < 0, d < 0 ? 0 : d, is_min};
      md_tensor *v, *ix;
      ck_assert_int_eq(md_max(&v, &ix, x, c.all, c.dim, true, is_min), MD_OK);
      int64_t outer, len, inner;
      split_around(x, c.all, c.dim, &outer, &len, &inner);
      float want[36];
      int64_t want_ix[36];
      naive_max(md_data(x), outer, len, inner, is_min, want, want_ix);
      for (int64_t i = 0; i < outer * inner; i++) {
        ck_assert_float_eq(md_data(v)[i], want[i]);
        ck_assert_float_eq(md_data(ix)[i], (float)want_ix[i]);
      }
      md_tensor_release(v), md_tensor_release(ix);
      double e = check_grads(run_max, &c, 1, &x, 0);
      ck_assert_msg(e <= 1.0, "dim %d min %d: gradient off by %g tolerances", d, is_min, e);
    }
  md_tensor_release(x);
}
END_TEST

START_TEST(empty_and_degenerate_reductions) {
  int64_t s0[2] = {0, 3};
  md_tensor *z = md_tensor_zeros(2, s0), *y, *ix;
  ck_assert_int_eq(md_reduce(&y, MD_SUM, z, false, 0, false, 1), MD_OK);
  for (int i = 0; i < 3; i++) ck_assert_float_eq(md_data(y)[i], 0.0f); /* an empty sum is 0 */
  md_tensor_release(y);
  ck_assert_int_eq(md_max(&y, &ix, z, false, 0, false, false), MD_ERR);
  ck_assert_ptr_nonnull(strstr(md_errmsg(), "empty"));
  int64_t s1[1] = {1};
  md_tensor *one = md_tensor_zeros(1, s1);
  ck_assert_int_eq(md_reduce(&y, MD_VAR, one, true, 0, false, 1), MD_ERR);
  ck_assert_int_eq(md_reduce(&y, MD_SUM, one, false, 2, false, 1), MD_ERR);
  ck_assert_ptr_nonnull(strstr(md_errmsg(), "out of range"));
  md_tensor_release(z), md_tensor_release(one);
}
END_TEST

Suite *make_suite(void) {
  Suite *s = suite_create("reduce");
  TCase *tc = tcase_create("ops");
  tcase_set_timeout(tc, 60);
  tcase_add_test(tc, reductions_match_naive_and_finite_differences);
  tcase_add_test(tc, max_min_match_naive_and_finite_differences);
  tcase_add_test(tc, empty_and_degenerate_reductions);
  suite_add_tcase(s, tc);
  return s;
}
