/* Mirrors csrc/ops/attention.c: the attention kernels against
 * naive_attention and finite differences of it. */
#include "ops/attention.h"
#include "testutil.h"

typedef struct {
  float *qkv, *r;
  int64_t n, heads, d, l;
} attn_case;

static double attn_loss(void *p) {
  attn_case *k = p;
  int64_t total = k->n * k->heads * k->d * k->l;
  double *y = malloc(total * sizeof *y), acc = 0;
  naive_attention(k->qkv, y, k->n, k->heads, k->d, k->l);
  for (int64_t i = 0; i < total; i++) acc += y[i] * k->r[i];
  free(y);
  return acc;
}

START_TEST(attention_matches_naive_and_finite_differences) {
  attn_case k = {.n = 2, .heads = 2, .d = 4, .l = 9};
  int64_t nin = k.n * 3 * k.heads * k.d * k.l, nout = nin / 3;
  k.qkv = malloc(nin * 4), k.r = malloc(nout * 4);
  fill_uniform(k.qkv, nin, 5), fill_uniform(k.r, nout, 6);
  float *y = malloc(nout * 4), *probs = malloc(k.n * k.heads * k.l * k.l * 4), *fy = malloc(nout * 4);
  double *ry = malloc(nout * sizeof *ry);
  md_attention_forward(k.qkv, y, probs, k.n, k.heads, k.d, k.l);
  naive_attention(k.qkv, ry, k.n, k.heads, k.d, k.l);
  for (int64_t i = 0; i < nout; i++) fy[i] = (float)ry[i];
  ck_assert_close(y, fy, nout, 1e-5, 1e-4);
  float *dqkv = calloc(nin, 4);
  md_attention_backward(k.qkv, probs, k.r, dqkv, k.n, k.heads, k.d, k.l, false);
  ck_assert(grad_check(attn_loss, &k, k.qkv, dqkv, nin, 1e-2f, 80) <= 1.0);
  float *fresh = malloc(nin * 4); /* overwriting gives what adding to zeros gave */
  for (int64_t i = 0; i < nin; i++) fresh[i] = NAN;
  md_attention_backward(k.qkv, probs, k.r, fresh, k.n, k.heads, k.d, k.l, true);
  ck_assert_close(fresh, dqkv, nin, 1e-6, 1e-5);
  free(fresh);
  free(k.qkv), free(k.r), free(y), free(probs), free(fy), free(ry), free(dqkv);
}
END_TEST

Suite *make_suite(void) {
  Suite *s = suite_create("attention");
  TCase *tc = tcase_create("kernels");
  tcase_set_timeout(tc, 60);
  tcase_add_test(tc, attention_matches_naive_and_finite_differences);
  suite_add_tcase(s, tc);
  return s;
}
