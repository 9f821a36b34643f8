/* Mirrors csrc/autograd.c: the engine, exercised through views:
 * gradients land in the right windows, accumulate, respect grad mode, catch
 * in-place writes and second sweeps. */
#include "autograd.h"
#include "ops/view.h"
#include "testutil.h"

static md_tensor *leaf(int64_t n, bool rg) {
  md_tensor *t = md_tensor_zeros(1, &n);
  t->requires_grad = rg;
  return t;
}


START_TEST(no_grad_records_nothing) {
  md_tensor *x = leaf(4, true), *y;
  md_set_grad_enabled(false);
  int64_t s[2] = {2, 2};
  ck_assert_int_eq(md_reshape(&y, x, 2, s), MD_OK);
  md_set_grad_enabled(true);
  ck_assert_ptr_null(y->grad_fn);
  ck_assert_int_eq(md_backward(y, NULL, false), MD_ERR);
  md_tensor_release(y);
  md_tensor_release(x);
}
END_TEST

START_TEST(second_sweep_and_inplace_are_errors) {
  md_tensor *x = leaf(1, true), *y, *z;
  int64_t one = 1;
  ck_assert_int_eq(md_reshape(&y, x, 1, &one), MD_OK);
  ck_assert_int_eq(md_backward(y, NULL, false), MD_OK);
  ck_assert_int_eq(md_backward(y, NULL, false), MD_ERR);
  ck_assert_int_eq(md_reshape(&z, x, 1, &one), MD_OK);
  ck_assert_int_eq(md_begin_inplace(x, "test"), MD_ERR); /* x requires grad */
  x->storage->version++;                                   /* as a no_grad write would */
  ck_assert_int_eq(md_backward(z, NULL, false), MD_ERR);
  md_tensor_release(y);
  md_tensor_release(z);
  md_tensor_release(x);
}
END_TEST

START_TEST(grad_leaves_parameter_grads_alone) {
  md_tensor *x = leaf(2, true), *w = leaf(2, true), *y;
  int64_t s[1] = {2};
  ck_assert_int_eq(md_reshape(&y, x, 1, s), MD_OK);
  float g[2] = {3, 4};
  md_tensor *gt = md_tensor_from_data(1, s, g), *gx;
  ck_assert_int_eq(md_grad(y, gt, 1, &x, &gx, false), MD_OK);
  ck_assert_close(md_data(gx), g, 2, 0, 1e-6);
  ck_assert_ptr_null(x->grad);
  ck_assert_ptr_null(w->grad);
  md_tensor_release(gx);
  md_tensor_release(gt);
  md_tensor_release(y);
  md_tensor_release(w);
  md_tensor_release(x);
}
END_TEST


Suite *make_suite(void) {
  Suite *s = suite_create("autograd");
  TCase *tc = tcase_create("engine");
  tcase_add_test(tc, no_grad_records_nothing);
  tcase_add_test(tc, second_sweep_and_inplace_are_errors);
  tcase_add_test(tc, grad_leaves_parameter_grads_alone);
  suite_add_tcase(s, tc);
  return s;
}
