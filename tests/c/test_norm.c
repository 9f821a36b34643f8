/* Mirrors csrc/ops/norm.c: the group norm kernels (SiLU and the per-channel
 * shift fused in, plain and blocked layouts) against naive_group_norm and
 * finite differences of it; the op md_group_norm and its argument checks. */
#include "layout.h"
#include "ops/norm.h"
#include "testutil.h"

typedef struct {
  float *x, *s, *w, *b, *r;
  int64_t n, c, hw, g;
  bool silu;
} gn_case;

static void naive_gn_act(const gn_case *k, double *y) {
  naive_group_norm(k->x, k->s, k->w, k->b, y, k->n, k->c, k->hw, k->g, 1e-5, k->silu);
}

/* sum(r * gn(x)) for finite differences */
static double gn_loss(void *p) {
  gn_case *k = p;
  int64_t total = k->n * k->c * k->hw;
  double *y = malloc(total * sizeof *y), acc = 0;
  naive_gn_act(k, y);
  for (int64_t i = 0; i < total; i++) acc += y[i] * k->r[i];
  free(y);
  return acc;
}

/* _i: bit 0 fuses SiLU, bit 1 adds a per-(image, channel) shift, bit 2 runs
 * the blocked layout (32 channels in 2 groups, so a group spans a block;
 * plain has 8 channels in 4 groups), bit 3 takes one image (fewer images
 * than threads: they share its tiles); hw = 37 leaves a tail after the
 * vector lanes. The kernels see blocked copies and their results are
 * unblocked before the comparison. */
START_TEST(group_norm_matches_naive_and_finite_differences) {
  bool blocked = _i & 4;
  gn_case k = {.n = _i & 8 ? 1 : 2, .c = blocked ? 32 : 8, .hw = 37, .g = blocked ? 2 : 4, .silu = _i & 1};
  int64_t total = k.n * k.c * k.hw;
  k.x = malloc(total * 4), k.r = malloc(total * 4), k.w = malloc(k.c * 4), k.b = malloc(k.c * 4);
  k.s = _i & 2 ? malloc(k.n * k.c * 4) : NULL;
  fill_uniform(k.x, total, 1), fill_uniform(k.r, total, 2), fill_uniform(k.w, k.c, 3), fill_uniform(k.b, k.c, 4);
  if (k.s) fill_uniform(k.s, k.n * k.c, 7);
  float *y = malloc(total * 4), *mean = malloc(k.n * k.g * 4), *rstd = malloc(k.n * k.g * 4), *fy = malloc(total * 4);
  float *kx = malloc(total * 4), *kr = malloc(total * 4), *ky = malloc(total * 4), *kdx = calloc(total, 4);
  double *ry = malloc(total * sizeof *ry);
  if (blocked) md_block_kernel(k.x, kx, k.n, k.c, k.hw, false), md_block_kernel(k.r, kr, k.n, k.c, k.hw, false);
  else memcpy(kx, k.x, total * 4), memcpy(kr, k.r, total * 4);
  ck_assert_int_eq(md_group_norm_forward(kx, k.s, k.w, k.b, ky, mean, rstd, k.n, k.c, k.hw, k.g, 1e-5f, k.silu, blocked),
                   MD_OK);
  if (blocked) md_unblock_kernel(ky, y, k.n, k.c, k.hw, false);
  else memcpy(y, ky, total * 4);
  naive_gn_act(&k, ry);
  for (int64_t i = 0; i < total; i++) fy[i] = (float)ry[i];
  ck_assert_close(y, fy, total, 1e-5, 1e-4);
  float *dx = calloc(total, 4), *dw = calloc(k.c, 4), *db = calloc(k.c, 4), *ds = calloc(k.n * k.c, 4);
  ck_assert_int_eq(md_group_norm_backward(kx, k.s, k.w, k.b, mean, rstd, kr, kdx, k.s ? ds : NULL, dw, db, k.n, k.c,
                                          k.hw, k.g, k.silu, blocked, false),
                   MD_OK);
  if (blocked) md_unblock_kernel(kdx, dx, k.n, k.c, k.hw, false);
  else memcpy(dx, kdx, total * 4);
  /* overwriting a fresh buffer gives what accumulating from zero gave */
  float *kdx2 = malloc(total * 4), *dw2 = calloc(k.c, 4), *db2 = calloc(k.c, 4);
  for (int64_t i = 0; i < total; i++) kdx2[i] = NAN;
  ck_assert_int_eq(md_group_norm_backward(kx, k.s, k.w, k.b, mean, rstd, kr, kdx2, NULL, dw2, db2, k.n, k.c, k.hw, k.g,
                                          k.silu, blocked, true),
                   MD_OK);
  ck_assert_close(kdx2, kdx, total, 1e-7, 1e-6);
  free(kdx2), free(dw2), free(db2);
  ck_assert(grad_check(gn_loss, &k, k.x, dx, total, 1e-2f, 50) <= 1.0);
  ck_assert(grad_check(gn_loss, &k, k.w, dw, k.c, 1e-2f, 50) <= 1.0);
  ck_assert(grad_check(gn_loss, &k, k.b, db, k.c, 1e-2f, 50) <= 1.0);
  if (k.s) ck_assert(grad_check(gn_loss, &k, k.s, ds, k.n * k.c, 1e-2f, 50) <= 1.0);
  free(k.x), free(k.s), free(k.r), free(k.w), free(k.b), free(y), free(mean), free(rstd), free(fy), free(ry);
  free(dx), free(dw), free(db), free(ds), free(kx), free(kr), free(ky), free(kdx);
}
END_TEST

typedef struct {
  float eps;
  bool silu;
} gn_op_case;

static md_tensor *run_group_norm(md_tensor *const *in, const void *arg) {
  const gn_op_case *c = arg;
  md_tensor *y = NULL;
  return md_group_norm(&y, in[0], 2, in[1], in[2], c->eps, c->silu, in[3]) == MD_OK ? y : NULL;
}

/* The op over [2, 4, 3, 3] (2 groups) with every input differentiable, on
 * top of the kernels checked above; its argument checks. */
START_TEST(group_norm_op_matches_naive_and_finite_differences) {
  int64_t xs[4] = {2, 4, 3, 3}, cs[1] = {4}, ss[2] = {2, 4};
  md_tensor *in[4] = {filled(4, xs, 71, -1, 1), filled(1, cs, 72, 0.5f, 1.5f), filled(1, cs, 73, -1, 1),
                      filled(2, ss, 74, -1, 1)};
  for (int silu = 0; silu < 2; silu++) {
    gn_op_case c = {1e-5f, silu};
    md_tensor *y = run_group_norm(in, &c);
    ck_assert_ptr_nonnull(y);
    double want[72];
    naive_group_norm(md_data(in[0]), md_data(in[3]), md_data(in[1]), md_data(in[2]), want, 2, 4, 9, 2, 1e-5, silu);
    float *fw = naive_to_float(want, 72);
    ck_assert_close(md_data(y), fw, 72, 1e-5, 1e-4);
    free(fw);
    md_tensor_release(y);
    double e = check_grads(run_group_norm, &c, 4, in, 0);
    ck_assert_msg(e <= 1.0, "silu %d: gradient off by %g tolerances", silu, e);
  }
  int64_t s6[4] = {1, 6, 2, 2}, s23[2] = {2, 3};
  md_tensor *x6 = md_tensor_zeros(4, s6), *bad_shift = md_tensor_zeros(2, s23), *y = NULL;
  ck_assert_int_eq(md_group_norm(&y, x6, 4, NULL, NULL, 1e-5f, false, NULL), MD_ERR);
  ck_assert_ptr_nonnull(strstr(md_errmsg(), "6 channels are not divisible into 4 groups"));
  ck_assert_int_eq(md_group_norm(&y, in[0], 2, in[1], in[2], 1e-5f, true, bad_shift), MD_ERR);
  ck_assert_ptr_nonnull(strstr(md_errmsg(), "shift must be N x C = 2 x 4"));
  ck_assert_int_eq(md_group_norm(&y, in[0], 2, in[3], in[2], 1e-5f, true, NULL), MD_ERR);
  ck_assert_ptr_nonnull(strstr(md_errmsg(), "weight and bias must have 4 elements"));
  md_tensor_release(x6), md_tensor_release(bad_shift);
  for (int k = 0; k < 4; k++) md_tensor_release(in[k]);
}
END_TEST

Suite *make_suite(void) {
  Suite *s = suite_create("norm");
  TCase *tc = tcase_create("kernels");
  tcase_set_timeout(tc, 60);
  tcase_add_loop_test(tc, group_norm_matches_naive_and_finite_differences, 0, 16);
  tcase_add_test(tc, group_norm_op_matches_naive_and_finite_differences);
  suite_add_tcase(s, tc);
  return s;
}
