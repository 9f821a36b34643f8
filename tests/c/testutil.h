/* Shared by the Check suites: each tests/c/test_*.c defines make_suite(),
 * and main.c runs it. Test data, tolerances and finite differences live
 * here; the naive references the suites compare against are in naive.h. */
#ifndef MD_TESTUTIL_H
#define MD_TESTUTIL_H

#include <check.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "autograd.h"
#include "naive.h"

Suite *make_suite(void);

/* Deterministic test data in [-1, 1). */
static inline void fill_uniform(float *x, int64_t n, uint32_t seed) {
  uint32_t s = seed * 2654435761u + 1u;
  for (int64_t i = 0; i < n; i++) {
    s = s * 1664525u + 1013904223u;
    x[i] = (float)((s >> 8) * (1.0 / 16777216.0)) * 2.0f - 1.0f;
  }
}

/* Largest |a-b| / (atol + rtol*|b|); <= 1 means close. */
static inline double max_rel_err(const float *a, const float *b, int64_t n, double atol, double rtol) {
  double worst = 0;
  for (int64_t i = 0; i < n; i++) {
    double d = fabs((double)a[i] - (double)b[i]);
    double e = d == 0 ? 0 : d / (atol + rtol * fabs((double)b[i]));
    if (!(e <= worst)) worst = e; /* also catches NaN */
  }
  return worst;
}

#define ck_assert_close(a, b, n, atol, rtol) \
  ck_assert_msg(max_rel_err((a), (b), (n), (atol), (rtol)) <= 1.0, "arrays differ beyond tolerance")

/* Finite-difference check of an analytic gradient. loss(ctx) must compute a
 * scalar from the current contents of x (typically sum(out * r) for a fixed
 * random r, so that dL/dout = r is what backward was given). Perturbs up to
 * max_points evenly spread elements of x by +-eps and returns the worst
 * |numeric - analytic| / (atol + rtol * |numeric|) with atol = rtol = 1e-2:
 * <= 1 passes. */
static inline double grad_check(double (*loss)(void *ctx), void *ctx, float *x, const float *grad,
                                int64_t n, float eps, int64_t max_points) {
  int64_t step = n / max_points > 0 ? n / max_points : 1;
  double worst = 0;
  for (int64_t i = 0; i < n; i += step) {
    float orig = x[i];
    x[i] = orig + eps;
    double fp = loss(ctx);
    x[i] = orig - eps;
    double fm = loss(ctx);
    x[i] = orig;
    double num = (fp - fm) / (2.0 * (double)eps);
    double e = fabs(num - (double)grad[i]) / (1e-2 + 1e-2 * fabs(num));
    if (!(e <= worst)) worst = e;
  }
  return worst;
}

/* A tensor of deterministic values in [lo, hi). */
static inline md_tensor *filled(int nd, const int64_t *shape, uint32_t seed, float lo, float hi) {
  md_tensor *t = md_tensor_new(nd, shape);
  float *p = md_data(t);
  fill_uniform(p, t->numel, seed);
  for (int64_t i = 0; i < t->numel; i++) p[i] = lo + (p[i] + 1.0f) * 0.5f * (hi - lo);
  return t;
}

/* x as [outer, len, inner] around dim d (all: one run over every element) */
static inline void split_around(const md_tensor *x, bool all, int d, int64_t *outer, int64_t *len, int64_t *inner) {
  if (all) {
    *outer = *inner = 1, *len = x->numel;
    return;
  }
  *outer = md_shape_numel(d, x->shape), *len = x->shape[d];
  *inner = md_shape_numel(x->ndim - d - 1, x->shape + d + 1);
}

/* A tensor-level op under test: its output for inputs in[0..n), or NULL. */
typedef md_tensor *(*op_fn)(md_tensor *const *in, const void *arg);

typedef struct {
  op_fn f;
  const void *arg;
  md_tensor *const *in;
  const float *r;
} fd_case;

/* sum(r * f(in)) without recording: the scalar grad_check differentiates */
static inline double fd_loss(void *p) {
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
static inline double check_grads(op_fn f, const void *arg, int n, md_tensor *const *in, unsigned const_mask) {
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

#endif
