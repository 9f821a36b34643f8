/* Shared by the Check suites: each tests/c/test_*.c defines make_suite(),
 * and main.c runs it. */
#ifndef MD_TESTUTIL_H
#define MD_TESTUTIL_H

#include <check.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

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

#endif
