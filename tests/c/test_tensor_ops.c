/* The tensor ops (pointwise, reduce, layout, linalg) against naive
 * references written from the definitions, and every differentiable one
 * against finite differences of its own forward (grad_check). Dimensions are
 * 0-based here, as in the C API. */
#include "autograd.h"
#include "ops/movement.h"
#include "ops/linalg.h"
#include "ops/pointwise.h"
#include "ops/reduce.h"
#include "testutil.h"

/* ---- helpers -------------------------------------------------------------------------- */

static md_tensor *filled(int nd, const int64_t *shape, uint32_t seed, float lo, float hi) {
  md_tensor *t = md_tensor_new(nd, shape);
  float *p = md_data(t);
  fill_uniform(p, t->numel, seed);
  for (int64_t i = 0; i < t->numel; i++) p[i] = lo + (p[i] + 1.0f) * 0.5f * (hi - lo);
  return t;
}

/* Flat index into x of the element that broadcasts to position `flat` of an
 * output of shape (nd, shape): x's dims are right-aligned, size 1 repeats. */
static int64_t bcast_index(const md_tensor *x, int nd, const int64_t *shape, int64_t flat) {
  int64_t idx = 0, stride = 1;
  for (int d = nd - 1; d >= 0; d--) {
    int64_t pos = flat % shape[d];
    flat /= shape[d];
    int xd = d - (nd - x->ndim);
    if (xd < 0) continue;
    if (x->shape[xd] != 1) idx += pos * stride;
    stride *= x->shape[xd];
  }
  return idx;
}

/* An op under test: its output for inputs in[0..n). */
typedef md_tensor *(*op_fn)(md_tensor *const *in, const void *arg);

typedef struct {
  op_fn f;
  const void *arg;
  md_tensor *const *in;
  const float *r;
} fd_case;

/* sum(r * f(in)) without recording: the scalar grad_check differentiates */
static double fd_loss(void *p) {
  fd_case *c = p;
  md_set_grad_enabled(false);
  md_tensor *y = c->f(c->in, c->arg);
  md_set_grad_enabled(true);
  ck_assert_ptr_nonnull(y);
  double acc = 0;
  for (int64_t i = 0; i < y->numel; i++) acc += (double)md_data(y)[i] * c->r[i];
  md_tensor_release(y);
  return acc;
}

/* Backward of f with upstream gradient r, against central differences for
 * every input that is not marked constant (const_mask bit k); returns the
 * worst error in tolerances (<= 1 passes). */
static double check_grads(op_fn f, const void *arg, int n, md_tensor *const *in, unsigned const_mask) {
  for (int k = 0; k < n; k++) in[k]->requires_grad = !(const_mask >> k & 1u);
  md_tensor *y = f(in, arg);
  ck_assert_ptr_nonnull(y);
  md_tensor *r = filled(y->ndim, y->shape, 99, -1, 1);
  ck_assert_int_eq(md_backward(y, r, false), MD_OK);
  fd_case c = {f, arg, in, md_data(r)};
  double worst = 0;
  for (int k = 0; k < n; k++) {
    if (const_mask >> k & 1u) continue;
    ck_assert_ptr_nonnull(in[k]->grad);
    /* a small step: kinks (relu, max, clamp) rarely fall within it */
    double e = grad_check(fd_loss, &c, md_data(in[k]), md_data(in[k]->grad), in[k]->numel, 1e-3f, 60);
    if (!(e <= worst)) worst = e;
    md_tensor_release(in[k]->grad);
    in[k]->grad = NULL;
    in[k]->requires_grad = false;
  }
  md_tensor_release(r), md_tensor_release(y);
  return worst;
}

/* ---- pointwise ------------------------------------------------------------------------- */

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

static double naive_unary(md_unary_op op, double x, double p0, double p1) {
  switch (op) {
  case MD_NEG: return -x;
  case MD_SQRT: return sqrt(x);
  case MD_RSQRT: return 1 / sqrt(x);
  case MD_EXP: return exp(x);
  case MD_LOG: return log(x);
  case MD_ABS: return fabs(x);
  case MD_SIN: return sin(x);
  case MD_COS: return cos(x);
  case MD_SIGMOID: return 1 / (1 + exp(-x));
  case MD_TANH: return tanh(x);
  case MD_RELU: return x > 0 ? x : 0;
  case MD_SILU: return x / (1 + exp(-x));
  case MD_AFFINE: return p0 * x + p1;
  case MD_RECIP: return p0 / x;
  case MD_POWS: return pow(x, p0);
  case MD_CLAMP: return fmin(fmax(x, p0), p1);
  default: return NAN;
  }
}

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

static double naive_binary(md_binary_op op, double a, double b) {
  switch (op) {
  case MD_ADD: return a + b;
  case MD_SUB: return a - b;
  case MD_MUL: return a * b;
  case MD_DIV: return a / b;
  case MD_POW: return pow(a, b);
  case MD_MAXIMUM: return fmax(a, b);
  case MD_MINIMUM: return fmin(a, b);
  case MD_EQ: return a == b;
  case MD_NE: return a != b;
  case MD_LT: return a < b;
  case MD_LE: return a <= b;
  case MD_GT: return a > b;
  case MD_GE: return a >= b;
  }
  return NAN;
}

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
      double want = naive_binary(op, md_data(in[0])[bcast_index(in[0], 4, so, i)],
                                 md_data(in[1])[bcast_index(in[1], 4, so, i)]);
      ck_assert_msg(fabs(md_data(y)[i] - want) <= 1e-5 * (1 + fabs(want)), "%s at %lld", md_binary_name(op),
                    (long long)i);
    }
    if (op >= MD_EQ) ck_assert_ptr_null(y->grad_fn); /* comparisons are not differentiable */
    md_tensor_release(y);
    in[0]->requires_grad = in[1]->requires_grad = false;
    double e = op < MD_EQ ? check_grads(run_binary, &op, 2, in, 0) : 0;
    ck_assert_msg(e <= 1.0, "%s: gradient off by %g tolerances", md_binary_name(op), e);
    md_tensor_release(in[0]), md_tensor_release(in[1]);
  }
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
    bool c = md_data(in[0])[bcast_index(in[0], 2, so, i)] != 0;
    ck_assert_float_eq(md_data(y)[i], c ? md_data(in[1])[i] : md_data(in[2])[i % 4]);
  }
  md_tensor_release(y);
  ck_assert(check_grads(run_where, NULL, 3, in, 1u) <= 1.0);
  for (int k = 0; k < 3; k++) md_tensor_release(in[k]);
}
END_TEST

/* ---- reductions -------------------------------------------------------------------------- */

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

/* x as [outer, len, inner] around dim d */
static void around(const md_tensor *x, bool all, int d, int64_t *outer, int64_t *len, int64_t *inner) {
  if (all) {
    *outer = *inner = 1, *len = x->numel;
    return;
  }
  *outer = md_shape_numel(d, x->shape), *len = x->shape[d];
  *inner = md_shape_numel(x->ndim - d - 1, x->shape + d + 1);
}

START_TEST(reductions_match_naive_and_finite_differences) {
  int64_t shape[3] = {3, 5, 4};
  md_tensor *x = filled(3, shape, 5, -1, 1);
  const float *px = md_data(x);
  for (md_reduce_op op = MD_SUM; op <= MD_STD; op++)
    for (int d = -1; d < 3; d++)
      for (int keep = 0; keep < 2; keep++) {
        reduce_case c = {op, d < 0, d < 0 ? 0 : d, op >= MD_VAR ? keep : 1, keep};
        md_tensor *y = run_reduce(&x, &c);
        ck_assert_ptr_nonnull(y);
        ck_assert_int_eq(y->ndim, c.all ? 0 : keep ? 3 : 2);
        if (!c.all && keep) ck_assert_int_eq(y->shape[d], 1);
        int64_t outer, len, inner;
        around(x, c.all, d, &outer, &len, &inner);
        for (int64_t o = 0; o < outer; o++)
          for (int64_t i = 0; i < inner; i++) {
            double s = 0, ss = 0;
            for (int64_t j = 0; j < len; j++) s += px[(o * len + j) * inner + i];
            double mean = s / len;
            for (int64_t j = 0; j < len; j++) {
              double dv = px[(o * len + j) * inner + i] - mean;
              ss += dv * dv;
            }
            double var = ss / (double)(len - c.correction);
            double want = op == MD_SUM ? s : op == MD_MEAN ? mean : op == MD_VAR ? var : sqrt(var);
            ck_assert_double_eq_tol(md_data(y)[o * inner + i], want, 1e-5);
          }
        md_tensor_release(y);
        double e = check_grads(run_reduce, &c, 1, &x, 0);
        ck_assert_msg(e <= 1.0, "op %d dim %d keepdim %d: gradient off by %g tolerances", op, d, keep, e);
      }
  md_tensor_release(x);
}
END_TEST

typedef struct {
  int dim;
  bool is_min;
} max_case;

static md_tensor *run_max(md_tensor *const *in, const void *arg) {
  const max_case *c = arg;
  md_tensor *v = NULL, *ix = NULL;
  if (md_max(&v, &ix, in[0], false, c->dim, false, c->is_min) != MD_OK) return NULL;
  md_tensor_release(ix);
  return v;
}

START_TEST(max_min_match_naive_and_finite_differences) {
  int64_t shape[3] = {2, 6, 3};
  md_tensor *x = filled(3, shape, 6, -1, 1);
  const float *px = md_data(x);
  for (int d = 0; d < 3; d++)
    for (int is_min = 0; is_min < 2; is_min++) {
      md_tensor *v, *ix;
      ck_assert_int_eq(md_max(&v, &ix, x, false, d, true, is_min), MD_OK);
      int64_t outer, len, inner;
      around(x, false, d, &outer, &len, &inner);
      for (int64_t o = 0; o < outer; o++)
        for (int64_t i = 0; i < inner; i++) {
          int64_t best = 0;
          for (int64_t j = 1; j < len; j++) {
            float cand = px[(o * len + j) * inner + i], cur = px[(o * len + best) * inner + i];
            if (is_min ? cand < cur : cand > cur) best = j;
          }
          ck_assert_float_eq(md_data(v)[o * inner + i], px[(o * len + best) * inner + i]);
          ck_assert_float_eq(md_data(ix)[o * inner + i], (float)best);
        }
      md_tensor_release(v), md_tensor_release(ix);
      max_case c = {d, is_min};
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

/* ---- layout ------------------------------------------------------------------------------ */

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
  int dim = 1;
  md_tensor *y = run_cat(in, &dim);
  ck_assert_int_eq(y->shape[1], 7);
  for (int64_t a = 0; a < 2; a++)
    for (int64_t j = 0; j < 7; j++)
      for (int64_t c = 0; c < 3; c++) {
        int k = j < 1 ? 0 : j < 5 ? 1 : 2;
        int64_t jj = j - (k == 0 ? 0 : k == 1 ? 1 : 5), len = in[k]->shape[1];
        ck_assert_float_eq(md_data(y)[(a * 7 + j) * 3 + c], md_data(in[k])[(a * len + jj) * 3 + c]);
      }
  md_tensor_release(y);
  ck_assert(check_grads(run_cat, &dim, 3, in, 0) <= 1.0);
  md_tensor *pair[2] = {in[1], filled(3, s1, 10, -1, 1)};
  for (dim = 0; dim <= 3; dim++) {
    y = run_stack(pair, &dim);
    ck_assert_ptr_nonnull(y);
    ck_assert_int_eq(y->ndim, 4);
    ck_assert_int_eq(y->shape[dim], 2);
    int64_t outer = md_shape_numel(dim, s1), inner = md_shape_numel(3 - dim, s1 + dim);
    for (int64_t o = 0; o < outer; o++)
      for (int k = 0; k < 2; k++)
        for (int64_t i = 0; i < inner; i++)
          ck_assert_float_eq(md_data(y)[(o * 2 + k) * inner + i], md_data(pair[k])[o * inner + i]);
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
  int64_t st[4] = {60, 20, 5, 1}; /* x's strides */
  for (int64_t i = 0; i < y->numel; i++) {
    int64_t rem = i, src = 0;
    for (int d = 3; d >= 0; d--) {
      src += (rem % y->shape[d]) * st[perm[d]];
      rem /= y->shape[d];
    }
    ck_assert_float_eq(md_data(y)[i], md_data(x)[src]);
  }
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
  float idx[5] = {3, 0, 3, 1, 3};
  md_tensor *in[2] = {filled(3, s, 12, -1, 1), md_tensor_from_data(1, sk, idx)};
  int dim = 1;
  md_tensor *y = run_index_select(in, &dim);
  for (int64_t a = 0; a < 2; a++)
    for (int64_t j = 0; j < 5; j++)
      for (int64_t c = 0; c < 3; c++)
        ck_assert_float_eq(md_data(y)[(a * 5 + j) * 3 + c], md_data(in[0])[(a * 4 + (int64_t)idx[j]) * 3 + c]);
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
  for (int64_t i = 0; i < 12; i++) ck_assert_float_eq(md_data(c)[i], md_data(row)[i % 4]);
  ck_assert_int_eq(md_copy_(row, c), MD_ERR);
  ck_assert_int_eq(md_fill_(c, 2.5f), MD_OK);
  for (int64_t i = 0; i < 12; i++) ck_assert_float_eq(md_data(c)[i], 2.5f);
  md_tensor_release(x), md_tensor_release(row), md_tensor_release(c);
}
END_TEST

/* ---- matmul ------------------------------------------------------------------------------- */

static md_tensor *run_matmul(md_tensor *const *in, const void *arg) {
  md_tensor *y = NULL;
  return (arg ? md_bmm : md_matmul)(&y, in[0], in[1]) == MD_OK ? y : NULL;
}

/* C = A @ B with the smaller batch repeating over the trailing batch dims */
static void naive_matmul(const md_tensor *a, const md_tensor *b, const md_tensor *c) {
  int64_t m = a->shape[a->ndim - 2], k = a->shape[a->ndim - 1], n = b->shape[b->ndim - 1];
  int64_t na = md_shape_numel(a->ndim - 2, a->shape), nb = md_shape_numel(b->ndim - 2, b->shape);
  int64_t batch = md_shape_numel(c->ndim - 2, c->shape);
  for (int64_t t = 0; t < batch; t++)
    for (int64_t i = 0; i < m; i++)
      for (int64_t j = 0; j < n; j++) {
        double acc = 0;
        for (int64_t l = 0; l < k; l++)
          acc += (double)md_data(a)[((t % na) * m + i) * k + l] * md_data(b)[((t % nb) * k + l) * n + j];
        ck_assert_double_eq_tol(md_data(c)[(t * m + i) * n + j], acc, 1e-4);
      }
}

START_TEST(matmul_matches_naive_and_finite_differences) {
  struct {
    int na, nb;
    int64_t sa[4], sb[4];
    bool bmm;
  } cases[] = {
      {2, 2, {5, 7}, {7, 3}, false},             /* plain */
      {4, 3, {2, 3, 4, 5}, {3, 5, 2}, false},    /* b repeats over a's leading dim */
      {2, 4, {4, 5}, {2, 3, 5, 6}, false},       /* a shared by every batch of b */
      {3, 2, {2, 3, 4}, {4, 2}, false},          /* one GEMM over all rows */
      {3, 3, {2, 3, 4}, {2, 4, 5}, true},        /* bmm */
  };
  for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
    md_tensor *in[2] = {filled(cases[c].na, cases[c].sa, 30 + c, -1, 1), filled(cases[c].nb, cases[c].sb, 50 + c, -1, 1)};
    const void *arg = cases[c].bmm ? "bmm" : NULL;
    md_tensor *y = run_matmul(in, arg);
    ck_assert_ptr_nonnull(y);
    naive_matmul(in[0], in[1], y);
    md_tensor_release(y);
    double e = check_grads(run_matmul, arg, 2, in, 0);
    ck_assert_msg(e <= 1.0, "case %d: gradient off by %g tolerances", (int)c, e);
    md_tensor_release(in[0]), md_tensor_release(in[1]);
  }
  int64_t sa[3] = {2, 3, 4}, sb[3] = {3, 4, 5};
  md_tensor *a = md_tensor_zeros(3, sa), *b = md_tensor_zeros(3, sb), *y;
  ck_assert_int_eq(md_matmul(&y, a, b), MD_ERR); /* batch 2 vs 3 */
  ck_assert_str_eq(md_errmsg(), "matmul: shapes [2, 3, 4] and [3, 4, 5] do not multiply");
  ck_assert_int_eq(md_bmm(&y, a, a), MD_ERR);
  md_tensor_release(a), md_tensor_release(b);
  int64_t s0[2] = {2, 0}, s1[2] = {0, 3};
  a = md_tensor_new(2, s0), b = md_tensor_new(2, s1);
  ck_assert_int_eq(md_matmul(&y, a, b), MD_OK); /* inner size 0: zeros */
  for (int i = 0; i < 6; i++) ck_assert_float_eq(md_data(y)[i], 0.0f);
  md_tensor_release(y), md_tensor_release(a), md_tensor_release(b);
}
END_TEST

Suite *make_suite(void) {
  Suite *s = suite_create("tensor_ops");
  TCase *tc = tcase_create("ops");
  tcase_set_timeout(tc, 120);
  tcase_add_test(tc, unary_ops_match_naive_and_finite_differences);
  tcase_add_test(tc, broadcast_binary_ops_match_naive_and_finite_differences);
  tcase_add_test(tc, inplace_binary_broadcasts_into_the_left_operand);
  tcase_add_test(tc, where_matches_naive_and_finite_differences);
  tcase_add_test(tc, reductions_match_naive_and_finite_differences);
  tcase_add_test(tc, max_min_match_naive_and_finite_differences);
  tcase_add_test(tc, empty_and_degenerate_reductions);
  tcase_add_test(tc, cat_and_stack_match_naive_and_finite_differences);
  tcase_add_test(tc, permute_matches_naive_and_finite_differences);
  tcase_add_test(tc, index_select_matches_naive_and_accumulates_repeats);
  tcase_add_test(tc, clone_and_copy_are_deep_and_broadcast);
  tcase_add_test(tc, matmul_matches_naive_and_finite_differences);
  suite_add_tcase(s, tc);
  return s;
}
