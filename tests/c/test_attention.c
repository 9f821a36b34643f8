/* Mirrors csrc/ops/attention.c: the attention kernels against
 * naive_attention and finite differences of it; the op md_attention and
 * its argument checks. */
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

static md_tensor *run_attention(md_tensor *const *in, const void *arg) {
  md_tensor *y = NULL;
  return md_attention(&y, in[0], *(const int64_t *)arg) == MD_OK ? y : NULL;
}

/* The op over qkv [2, 12, 3, 3] in 2 heads, on top of the kernels checked
 * above; its argument checks. */
START_TEST(attention_op_matches_naive_and_finite_differences) {
  int64_t qs[4] = {2, 12, 3, 3}, heads = 2;
  md_tensor *qkv = filled(4, qs, 75, -1, 1), *y = run_attention(&qkv, &heads);
  ck_assert_ptr_nonnull(y);
  ck_assert_int_eq(y->shape[1], 4);
  double want[72];
  naive_attention(md_data(qkv), want, 2, 2, 2, 9);
  float *fw = naive_to_float(want, 72);
  ck_assert_close(md_data(y), fw, 72, 1e-5, 1e-4);
  free(fw);
  md_tensor_release(y);
  ck_assert(check_grads(run_attention, &heads, 1, &qkv, 0) <= 1.0);
  ck_assert_int_eq(md_attention(&y, qkv, 3), MD_ERR);
  ck_assert_ptr_nonnull(strstr(md_errmsg(), "4 channels do not split into 3 heads"));
  int64_t bad[4] = {2, 10, 3, 3};
  md_tensor *q10 = md_tensor_zeros(4, bad);
  ck_assert_int_eq(md_attention(&y, q10, 1), MD_ERR);
  ck_assert_ptr_nonnull(strstr(md_errmsg(), "expected qkv as N x 3C x H x W"));
  md_tensor_release(q10), md_tensor_release(qkv);
}
END_TEST

Suite *make_suite(void) {
  Suite *s = suite_create("attention");
  TCase *tc = tcase_create("kernels");
  tcase_set_timeout(tc, 60);
  tcase_add_test(tc, attention_matches_naive_and_finite_differences);
  tcase_add_test(tc, attention_op_matches_naive_and_finite_differences);
  suite_add_tcase(s, tc);
  return s;
}
