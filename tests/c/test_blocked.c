/* Mirrors csrc/ops/blocked.c and the kernels under it in csrc/layout.c: the
 * block / unblock kernels against naive_block, and the differentiable
 * conversions md_to_blocked / md_to_plain (values, layouts, gradients). */
#include "layout.h"
#include "ops/blocked.h"
#include "ops/linalg.h"
#include "ops/movement.h"
#include "ops/pointwise.h"
#include "ops/reduce.h"
#include "ops/view.h"
#include "testutil.h"

/* The layout conversions are inverse permutations: block then unblock is
 * the identity, and blocking puts each element where naive_block does. */
START_TEST(block_and_unblock_are_inverse_permutations) {
  int64_t n = 2, c = 32, hw = 5, total = n * c * hw;
  float *x = malloc(total * 4), *bl = malloc(total * 4), *want = malloc(total * 4), *back = malloc(total * 4);
  fill_uniform(x, total, 9);
  md_block_kernel(x, bl, n, c, hw, false);
  naive_block(x, want, n, c, hw);
  for (int64_t i = 0; i < total; i++) ck_assert_float_eq(bl[i], want[i]);
  md_unblock_kernel(bl, back, n, c, hw, false);
  for (int64_t i = 0; i < total; i++) ck_assert_float_eq(back[i], x[i]);
  md_unblock_kernel(bl, back, n, c, hw, true); /* accumulating doubles it */
  for (int64_t i = 0; i < total; i++) ck_assert_float_eq(back[i], 2 * x[i]);
  free(x), free(bl), free(want), free(back);
}
END_TEST

/* to_plain(to_blocked(x)): the identity, through both backward functions */
static md_tensor *run_round_trip(md_tensor *const *in, const void *arg) {
  md_tensor *b = NULL, *y = NULL;
  if (md_to_blocked(&b, in[0]) != MD_OK) return NULL;
  int rc = md_to_plain(&y, b);
  md_tensor_release(b);
  return rc == MD_OK ? y : NULL;
}

START_TEST(to_blocked_and_to_plain_convert_values_and_gradients) {
  int64_t shape[4] = {2, 32, 3, 2}, total = 2 * 32 * 6;
  md_tensor *x = filled(4, shape, 15, -1, 1), *b = NULL, *p = NULL, *same = NULL;
  ck_assert_int_eq(md_to_blocked(&b, x), MD_OK);
  ck_assert(md_is_blocked(b));
  ck_assert_int_eq(b->ndim, 4);
  for (int d = 0; d < 4; d++) ck_assert_int_eq(b->shape[d], shape[d]); /* the shape stays NCHW */
  float *want = malloc(total * 4);
  naive_block(md_data(x), want, 2, 32, 6);
  for (int64_t i = 0; i < total; i++) ck_assert_float_eq(md_data(b)[i], want[i]);
  ck_assert_int_eq(md_to_blocked(&same, b), MD_OK); /* already blocked: the tensor itself */
  ck_assert_ptr_eq(same, b);
  md_tensor_release(same);
  ck_assert_int_eq(md_to_plain(&p, b), MD_OK);
  ck_assert(!md_is_blocked(p));
  ck_assert_mem_eq(md_data(p), md_data(x), (size_t)total * 4);
  ck_assert_int_eq(md_to_plain(&same, x), MD_OK);
  ck_assert_ptr_eq(same, x);
  md_tensor_release(same), md_tensor_release(p), md_tensor_release(b);
  ck_assert(check_grads(run_round_trip, NULL, 1, &x, 0) <= 1.0);
  int64_t odd[4] = {1, 8, 2, 2};
  md_tensor *x8 = md_tensor_zeros(4, odd);
  ck_assert_int_eq(md_to_blocked(&b, x8), MD_ERR);
  ck_assert_ptr_nonnull(strstr(md_errmsg(), "C a multiple of 16, got [1, 8, 2, 2]"));
  md_tensor_release(x8), md_tensor_release(x);
  free(want);
}
END_TEST

/* The layout rule lives in the ops, so C callers see what Lua sees: every op
 * takes a blocked tensor and gives the values (and gradients) it would give
 * for the plain one. */
static md_tensor *run_through_blocked(md_tensor *const *in, const void *arg) {
  md_tensor *b = NULL, *r = NULL, *m = NULL, *s = NULL, *c = NULL;
  int64_t flat[2] = {2, 32 * 6};
  int rc = md_to_blocked(&b, in[0]);
  if (rc == MD_OK) rc = md_reshape(&r, b, 2, flat);                                  /* a view op */
  if (rc == MD_OK) rc = md_matmul(&m, r, in[1]);                                     /* a product */
  if (rc == MD_OK) rc = md_binary(&s, MD_MUL, b, in[2]);                             /* mixed layouts */
  if (rc == MD_OK) rc = md_cat(&c, 2, (md_tensor *[]){s, in[0]}, 0);                 /* mixed cat */
  md_tensor *total = NULL, *mc = NULL, *sum = NULL;
  if (rc == MD_OK) rc = md_reduce(&total, MD_SUM, c, true, 0, false, 0);
  if (rc == MD_OK) rc = md_reduce(&mc, MD_SUM, m, true, 0, false, 0);
  if (rc == MD_OK) rc = md_binary(&sum, MD_ADD, total, mc);
  md_tensor_release(b), md_tensor_release(r), md_tensor_release(m), md_tensor_release(s), md_tensor_release(c);
  md_tensor_release(total), md_tensor_release(mc);
  return rc == MD_OK ? sum : NULL;
}

START_TEST(ops_take_blocked_inputs_as_their_plain_values) {
  int64_t shape[4] = {2, 32, 3, 2}, wshape[2] = {32 * 6, 3};
  md_tensor *x = filled(4, shape, 21, -1, 1), *w = filled(2, wshape, 22, -1, 1), *y = filled(4, shape, 23, -1, 1);
  md_tensor *b = NULL, *r1 = NULL, *r2 = NULL;
  int64_t flat[2] = {2, 32 * 6};
  ck_assert_int_eq(md_to_blocked(&b, x), MD_OK);
  ck_assert_int_eq(md_reshape(&r1, b, 2, flat), MD_OK);
  ck_assert_int_eq(md_reshape(&r2, x, 2, flat), MD_OK);
  ck_assert(!md_is_blocked(r1));
  ck_assert_mem_eq(md_data(r1), md_data(r2), (size_t)r2->numel * 4);
  /* an in-place op with a plain operand turns the blocked tensor plain in place, same values */
  ck_assert_int_eq(md_binary_(MD_ADD, b, y), MD_OK);
  ck_assert(!md_is_blocked(b));
  for (int64_t i = 0; i < x->numel; i++) ck_assert_float_eq(md_data(b)[i], md_data(x)[i] + md_data(y)[i]);
  md_tensor_release(b), md_tensor_release(r1), md_tensor_release(r2);
  x->requires_grad = w->requires_grad = y->requires_grad = true;
  ck_assert(check_grads(run_through_blocked, NULL, 3, (md_tensor *[]){x, w, y}, 0) <= 1.0);
  md_tensor_release(x), md_tensor_release(w), md_tensor_release(y);
}
END_TEST

Suite *make_suite(void) {
  Suite *s = suite_create("blocked");
  TCase *tc = tcase_create("layout");
  tcase_add_test(tc, block_and_unblock_are_inverse_permutations);
  tcase_add_test(tc, to_blocked_and_to_plain_convert_values_and_gradients);
  tcase_add_test(tc, ops_take_blocked_inputs_as_their_plain_values);
  suite_add_tcase(s, tc);
  return s;
}
