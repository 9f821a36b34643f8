/* Mirrors csrc/optim.c: the optimizer kernels against naive_adam /
 * naive_sgd (double-precision transcriptions of PyTorch's update rules),
 * over several steps (so state handling counts); EMA, norms, scaling. */
#include "optim.h"
#include "testutil.h"

enum { N = 100003, STEPS = 5 }; /* odd size, above the parallel threshold */

static void check_adam(bool decoupled) {
  float *p = malloc(N * sizeof *p), *g = malloc(N * sizeof *g);
  float *m = calloc(N, sizeof *m), *v = calloc(N, sizeof *v);
  double *pr = malloc(N * sizeof *pr), *mr = calloc(N, sizeof *mr), *vr = calloc(N, sizeof *vr);
  fill_uniform(p, N, 1);
  for (int64_t i = 0; i < N; i++) pr[i] = p[i];
  md_adam_config c = {.lr = 1e-2f, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f,
                      .weight_decay = 0.1f, .decoupled = decoupled};
  for (int s = 1; s <= STEPS; s++) {
    fill_uniform(g, N, 10 + s);
    md_adam_step(p, g, m, v, N, s, &c);
    naive_adam(pr, g, mr, vr, N, s, c.lr, c.beta1, c.beta2, c.eps, c.weight_decay, decoupled);
  }
  float *want = malloc(N * sizeof *want);
  for (int64_t i = 0; i < N; i++) want[i] = (float)pr[i];
  ck_assert_close(p, want, N, 1e-6, 1e-4);
  free(p), free(g), free(m), free(v), free(pr), free(mr), free(vr), free(want);
}

START_TEST(adam_matches_reference) { check_adam(false); }
END_TEST

START_TEST(adamw_matches_reference) { check_adam(true); }
END_TEST

START_TEST(sgd_momentum_nesterov_matches_reference) {
  for (int nesterov = 0; nesterov <= 1; nesterov++) {
    float *p = malloc(N * sizeof *p), *g = malloc(N * sizeof *g), *b = calloc(N, sizeof *b);
    double *pr = malloc(N * sizeof *pr), *br = calloc(N, sizeof *br);
    fill_uniform(p, N, 2);
    for (int64_t i = 0; i < N; i++) pr[i] = p[i];
    md_sgd_config c = {.lr = 0.1f, .momentum = 0.9f, .dampening = 0, .weight_decay = 1e-2f,
                       .nesterov = nesterov};
    for (int s = 0; s < STEPS; s++) {
      fill_uniform(g, N, 20 + s);
      md_sgd_step(p, g, b, N, s == 0, &c);
      naive_sgd(pr, g, br, N, s == 0, c.lr, c.momentum, c.dampening, c.weight_decay, nesterov);
    }
    float *want = malloc(N * sizeof *want);
    for (int64_t i = 0; i < N; i++) want[i] = (float)pr[i];
    ck_assert_close(p, want, N, 1e-6, 1e-4);
    free(p), free(g), free(b), free(pr), free(br), free(want);
  }
}
END_TEST

START_TEST(ema_norm_and_scale) {
  float e[3] = {1, 2, 3}, p[3] = {3, 2, 1};
  md_ema_update(e, p, 3, 0.75f);
  float want[3] = {1.5f, 2.0f, 2.5f};
  ck_assert_close(e, want, 3, 0, 1e-6);
  ck_assert_double_eq_tol(md_sum_squares(p, 3), 14.0, 1e-9);
  md_scale(p, 3, 0.5f);
  float half[3] = {1.5f, 1.0f, 0.5f};
  ck_assert_close(p, half, 3, 0, 1e-6);
}
END_TEST

Suite *make_suite(void) {
  Suite *s = suite_create("optim");
  TCase *tc = tcase_create("kernels");
  tcase_add_test(tc, adam_matches_reference);
  tcase_add_test(tc, adamw_matches_reference);
  tcase_add_test(tc, sgd_momentum_nesterov_matches_reference);
  tcase_add_test(tc, ema_norm_and_scale);
  suite_add_tcase(s, tc);
  return s;
}
