/* Diffusion kernels, fused: one pass over the images per call.
 * Notation (Ho et al. 2020; Song et al. 2021): ab = alpha-bar (cumulative
 * product of 1 - beta), x_t = sqrt(ab) x0 + sqrt(1 - ab) eps. During
 * sampling every image is at the same step, so the step kernels take the
 * schedule values as scalars (doubles: near alpha-bar = 1, as with EDM's
 * sigma_min, 1 - ab in float would lose most of its digits); training draws t per image, so q_sample takes
 * per-image timesteps and the whole alpha-bar table. */
#ifndef MD_DIFFUSION_H
#define MD_DIFFUSION_H

#include <stdbool.h>
#include <stdint.h>

/* x_t[i] = sqrt(ab[t_i]) x0[i] + sqrt(1 - ab[t_i]) noise[i]; n images of
 * `per` values; t holds integer timesteps < T. */
void md_q_sample(const float *x0, const float *noise, const float *t, const float *ab, int64_t n, int64_t per,
                 float *xt);

typedef enum { MD_PRED_EPS, MD_PRED_X0, MD_PRED_V, MD_PRED_COUNT } md_prediction;

/* From the model output to (x0, eps) at alpha-bar ab; optionally clips x0
 * to [-1, 1] and recomputes eps from the clipped x0 (as ADM does). */
void md_pred_to_x0_eps(const float *x, const float *out, int64_t n, double ab, md_prediction kind, bool clip,
                       float *x0, float *eps);

/* The v target for training v-prediction models: v = sqrt(ab) eps - sqrt(1-ab) x0, per image. */
void md_v_target(const float *x0, const float *noise, const float *t, const float *ab, int64_t n, int64_t per,
                 float *v);

/* DDPM ancestral step from x_t to x_{t-1}, given x0 (already predicted):
 * the posterior mean, plus `shift` (classifier guidance, may be NULL)
 * scaled by the variance, plus sqrt(variance) * noise unless last.
 * large_variance picks beta_t instead of the posterior variance. */
void md_ddpm_step(const float *x, const float *x0, const float *noise, const float *shift, int64_t n, double ab_t,
                  double ab_prev, bool large_variance, bool last, float *out);

/* DDIM step (eta = 0: deterministic) from x_t and (x0, eps). */
void md_ddim_step(const float *x0, const float *eps, const float *noise, int64_t n, double ab_t, double ab_prev,
                  double eta, float *out);

#endif
