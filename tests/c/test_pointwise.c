/* Mirrors csrc/ops/pointwise.c: unary and broadcasting binary ops, their
 * in-place forms and where, against naive_unary / naive_binary /
 * naive_broadcast_index and finite differences (check_grads). */
#include "ops/pointwise.h"
#include "testutil.h"

typedef struct {
  md_unary_op op;
  float p0, p1, lo, hi; /* parameters, input range */
} unary_case;

static const unary_case unary_cases[] = {
    {MD_NEG, 0, 0, -1, 1},     {MD_SQRT, 0, 0, 0.5f, 2},   {MD_RSQRT, 0, 0, 0.5f, 2},
    {MD_EXP, 0, 0, -1, 1},     {MD_LOG, 0, 0, 0.5f, 2},    {MD_ABS, 0, 0, -1, 1},
    {MD_SIN, 0, 0, -2, 2},     {MD_COS, 0, 0, -2, 2},      {MD_SIGMOID, 0, 0, -3, 3},
    {MD_TANH, 0, 0, -2, 2},    {MD_RELU, 0, 0, -1, 1},     {MD_SILU, 0, 0, -3, 3},
    {MD_AFFINE, -2, 0.5f, -1, 1}, {MD_RECIP, 3, 0, 0.5f, 2}, {MD_POWS, 2.5f, 0, 0.5f, 2},
    {MD_CLAMP, -0.3f, 0.4f, -1, 1},
};

static md_tensor *run_unary(md_tensor *const *in, const void *arg) {
  const unary_case *u = arg;
  md_tensor *y = NULL;
  return md_unary(&y, u->op, in[0], u->p0, u->p1) == MD_OK ? y : NULL;
}

START_TEST(unary_ops_match_naive_and_finite_differences) {
  int64_t shape[2] = {5, 7};
  for (size_t c = 0; c < sizeof unary_cases / sizeof *unary_cases; c++) {
    const unary_case *u = &unary_cases[c];
    md_tensor *x = filled(2, shape, 10 + (uint32_t)c, u->lo, u->hi);
    /* keep finite differences off the kinks of abs, relu and clamp */
    for (int64_t i = 0; i < x->numel; i++) {
      float *v = md_data(x) + i;
      if (fabsf(*v) < 0.01f || fabsf(*v - u->p0) < 0.01f || fabsf(*v - u->p1) < 0.01f) *v += 0.02f;
    }
    md_tensor *y = run_unary(&x, u);
    ck_assert_ptr_nonnull(y);
    for (int64_t i = 0; i < x->numel; i++)
      ck_assert_msg(fabs(md_data(y)[i] - naive_unary(u->op, md_data(x)[i], u->p0, u->p1)) < 1e-5,
                    "%s at %lld", md_unary_name(u->op), (long long)i);
    md_tensor_release(y);
    double e = check_grads(run_unary, u, 1, &x, 0);
    ck_assert_msg(e <= 1.0, "%s: gradient off by %g tolerances", md_unary_name(u->op), e);
    /* the in-place variant computes the same values */
    md_tensor *x2 = md_tensor_clone_data(x);
    ck_assert_int_eq(md_unary_(u->op, x2, u->p0, u->p1), MD_OK);
    for (int64_t i = 0; i < x->numel; i++)
      ck_assert_double_eq_tol(md_data(x2)[i], naive_unary(u->op, md_data(x)[i], u->p0, u->p1), 1e-5);
    md_tensor_release(x2), md_tensor_release(x);
  }
}
END_TEST

static md_tensor *run_binary(md_tensor *const *in, const void *arg) {
  md_tensor *y = NULL;
  return md_binary(&y, *(const md_binary_op *)arg, in[0], in[1]) == MD_OK ? y : NULL;
}

START_TEST(broadcast_binary_ops_match_naive_and_finite_differences) {
  /* [2, 3, 1, 4] op [3, 5, 1] -> [2, 3, 5, 4]; positive inputs keep pow and div smooth */
  int64_t sa[4] = {2, 3, 1, 4}, sb[3] = {3, 5, 1}, so[4] = {2, 3, 5, 4};
  for (md_binary_op op = MD_ADD; op <= MD_GE; op++) {
    md_tensor *in[2] = {filled(4, sa, 20 + op, 0.5f, 2), filled(3, sb, 40 + op, 0.5f, 2)};
    if (op >= MD_EQ) md_data(in[1])[0] = md_data(in[0])[0]; /* some equal pairs */
    in[0]->requires_grad = in[1]->requires_grad = true;
    md_tensor *y = run_binary(in, &op);
    ck_assert_ptr_nonnull(y);
    ck_assert_int_eq(y->ndim, 4);
    for (int d = 0; d < 4; d++) ck_assert_int_eq(y->shape[d], so[d]);
    for (int64_t i = 0; i < y->numel; i++) {
      float a = md_data(in[0])[naive_broadcast_index(in[0], 4, so, i)];
      float b = md_data(in[1])[naive_broadcast_index(in[1], 4, so, i)];
      double want = naive_binary(op, a, b);
      ck_assert_msg(fabs(md_data(y)[i] - want) <= 1e-5 * (1 + fabs(want)), "%s at %lld", md_binary_name(op),
                    (long long)i);
      /* a float product is exact to the rounding of the double one */
      if (op == MD_MUL) ck_assert_float_eq(md_data(y)[i], a * b);
    }
    if (op >= MD_EQ) ck_assert_ptr_null(y->grad_fn); /* comparisons are not differentiable */
    md_tensor_release(y);
    in[0]->requires_grad = in[1]->requires_grad = false;
    double e = op < MD_EQ ? check_grads(run_binary, &op, 2, in, 0) : 0;
    ck_assert_msg(e <= 1.0, "%s: gradient off by %g tolerances", md_binary_name(op), e);
    md_tensor_release(in[0]), md_tensor_release(in[1]);
  }
  int64_t sc[1] = {7};
  md_tensor *a = filled(4, sa, 1, -1, 1), *c = filled(1, sc, 3, -1, 1), *y;
  ck_assert_int_eq(md_binary(&y, MD_ADD, a, c), MD_ERR);
  ck_assert_ptr_nonnull(strstr(md_errmsg(), "cannot broadcast"));
  md_tensor_release(a), md_tensor_release(c);
}
END_TEST

START_TEST(inplace_binary_broadcasts_into_the_left_operand) {
  int64_t sa[2] = {3, 4}, sb[1] = {4};
  md_tensor *a = filled(2, sa, 1, -1, 1), *b = filled(1, sb, 2, 0.5f, 1), *a0 = md_tensor_clone_data(a);
  ck_assert_int_eq(md_binary_(MD_DIV, a, b), MD_OK);
  for (int64_t i = 0; i < 12; i++) ck_assert_float_eq_tol(md_data(a)[i], md_data(a0)[i] / md_data(b)[i % 4], 1e-6);
  ck_assert_int_eq(md_binary_(MD_ADD, b, a), MD_ERR); /* [3, 4] does not fit into [4] */
  ck_assert_ptr_nonnull(strstr(md_errmsg(), "[4]"));
  b->requires_grad = true;
  ck_assert_int_eq(md_binary_(MD_MUL, b, b), MD_ERR); /* would lose values autograd needs */
  md_tensor_release(a), md_tensor_release(b), md_tensor_release(a0);
}
END_TEST

static md_tensor *run_where(md_tensor *const *in, const void *arg) {
  md_tensor *y = NULL;
  return md_where(&y, in[0], in[1], in[2]) == MD_OK ? y : NULL;
}

START_TEST(where_matches_naive_and_finite_differences) {
  int64_t sc[2] = {3, 1}, sa[2] = {3, 4}, sb[1] = {4}, so[2] = {3, 4};
  md_tensor *in[3] = {md_tensor_zeros(2, sc), filled(2, sa, 3, -1, 1), filled(1, sb, 4, -1, 1)};
  md_data(in[0])[1] = 1;
  md_tensor *y = run_where(in, NULL);
  for (int64_t i = 0; i < 12; i++) {
    bool c = md_data(in[0])[naive_broadcast_index(in[0], 2, so, i)] != 0;
    ck_assert_float_eq(md_data(y)[i], c ? md_data(in[1])[i] : md_data(in[2])[i % 4]);
  }
  md_tensor_release(y);
  ck_assert(check_grads(run_where, NULL, 3, in, 1u) <= 1.0);
  for (int k = 0; k < 3; k++) md_tensor_release(in[k]);
}
END_TEST

Suite *make_suite(void) {
  Suite *s = suite_create("pointwise");
  TCase *tc = tcase_create("ops");
  tcase_set_timeout(tc, 60);
  tcase_add_test(tc, unary_ops_match_naive_and_finite_differences);
  tcase_add_test(tc, broadcast_binary_ops_match_naive_and_finite_differences);
  tcase_add_test(tc, inplace_binary_broadcasts_into_the_left_operand);
  tcase_add_test(tc, where_matches_naive_and_finite_differences);
  suite_add_tcase(s, tc);
  return s;
}
