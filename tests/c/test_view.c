/* Mirrors csrc/ops/view.c: views share storage and route gradients to the
 * part they view; reshape checks its element count. */
#include "autograd.h"
#include "ops/view.h"
#include "testutil.h"

START_TEST(select_routes_gradient_to_its_row) {
  int64_t shape[2] = {3, 2};
  md_tensor *x = md_tensor_zeros(2, shape), *row, *row2;
  x->requires_grad = true;
  ck_assert_int_eq(md_select_first(&row, x, 1), MD_OK);
  ck_assert_int_eq(md_select_first(&row2, x, 1), MD_OK);
  float g[2] = {1, 2};
  int64_t two = 2;
  md_tensor *gt = md_tensor_from_data(1, &two, g);
  ck_assert_int_eq(md_backward(row, gt, false), MD_OK);
  ck_assert_int_eq(md_backward(row2, gt, false), MD_OK);
  float want[6] = {0, 0, 2, 4, 0, 0};
  ck_assert_close(md_data(x->grad), want, 6, 0, 1e-6);
  md_tensor_release(gt);
  md_tensor_release(row);
  md_tensor_release(row2);
  md_tensor_release(x);
}
END_TEST

START_TEST(reshape_rejects_wrong_count) {
  int64_t six = 6;
  md_tensor *x = md_tensor_zeros(1, &six), *y = NULL;
  int64_t s[2] = {4, 2};
  ck_assert_int_eq(md_reshape(&y, x, 2, s), MD_ERR);
  ck_assert_ptr_nonnull(strstr(md_errmsg(), "6 elements"));
  int64_t inf[2] = {-1, 3};
  ck_assert_int_eq(md_reshape(&y, x, 2, inf), MD_OK);
  ck_assert_int_eq(y->shape[0], 2);
  md_tensor_release(y);
  md_tensor_release(x);
}
END_TEST

Suite *make_suite(void) {
  Suite *s = suite_create("view");
  TCase *tc = tcase_create("view");
  tcase_add_test(tc, select_routes_gradient_to_its_row);
  tcase_add_test(tc, reshape_rejects_wrong_count);
  suite_add_tcase(s, tc);
  return s;
}
