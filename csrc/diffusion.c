#include "diffusion.h"
#include "backend/threads.h"

#include <math.h>


void md_q_sample(const float *x0, const float *noise, const float *t, const float *ab, int64_t n, int64_t per,
                 float *xt) {
#pragma omp parallel for if (n * per > MD_PAR_MIN) schedule(static)
  for (int64_t i = 0; i < n; i++) {
    float a = ab[(int64_t)t[i]], sa = sqrtf(a), sb = sqrtf(1.0f - a);
    for (int64_t j = i * per; j < (i + 1) * per; j++) xt[j] = sa * x0[j] + sb * noise[j];
  }
}

void md_v_target(const float *x0, const float *noise, const float *t, const float *ab, int64_t n, int64_t per,
                 float *v) {
#pragma omp parallel for if (n * per > MD_PAR_MIN) schedule(static)
  for (int64_t i = 0; i < n; i++) {
    float a = ab[(int64_t)t[i]], sa = sqrtf(a), sb = sqrtf(1.0f - a);
    for (int64_t j = i * per; j < (i + 1) * per; j++) v[j] = sa * noise[j] - sb * x0[j];
  }
}

void md_pred_to_x0_eps(const float *x, const float *out, int64_t n, double ab, md_prediction kind, bool clip,
                       float *x0, float *eps) {
  const float sa = (float)sqrt(ab), sb = (float)sqrt(1.0 - ab);
#pragma omp parallel for if (n > MD_PAR_MIN) schedule(static)
  for (int64_t j = 0; j < n; j++) {
    float p, e;
    switch (kind) {
    case MD_PRED_X0: p = out[j]; e = (x[j] - sa * p) / sb; break;
    case MD_PRED_V: p = sa * x[j] - sb * out[j]; e = sb * x[j] + sa * out[j]; break;
    default: e = out[j]; p = (x[j] - sb * e) / sa; break;
    }
    if (clip && (p > 1.0f || p < -1.0f)) {
      p = fminf(fmaxf(p, -1.0f), 1.0f);
      e = (x[j] - sa * p) / sb;
    }
    x0[j] = p;
    eps[j] = e;
  }
}

void md_ddpm_step(const float *x, const float *x0, const float *noise, const float *shift, int64_t n, double ab_t,
                  double ab_prev, bool large_variance, bool last, float *out) {
  const double beta = 1.0 - ab_t / ab_prev, alpha = 1.0 - beta;
  const float c0 = (float)(beta * sqrt(ab_prev) / (1.0 - ab_t)), ct = (float)((1.0 - ab_prev) * sqrt(alpha) / (1.0 - ab_t));
  /* the posterior variance is 0 at the last step; ADM's "large" variance
     uses the posterior's value there too, so no step ever adds noise last */
  const double posterior = beta * (1.0 - ab_prev) / (1.0 - ab_t);
  const float var = (float)(large_variance && !last ? beta : posterior);
  const float sd = last ? 0.0f : sqrtf(var);
#pragma omp parallel for if (n > MD_PAR_MIN) schedule(static)
  for (int64_t j = 0; j < n; j++) {
    float mean = c0 * x0[j] + ct * x[j];
    if (shift) mean += var * shift[j];
    out[j] = mean + (noise ? sd * noise[j] : 0.0f);
  }
}

void md_ddim_step(const float *x0, const float *eps, const float *noise, int64_t n, double ab_t, double ab_prev,
                  double eta, float *out) {
  const double sd = eta * sqrt((1.0 - ab_prev) / (1.0 - ab_t)) * sqrt(1.0 - ab_t / ab_prev);
  const float sigma = (float)sd, c0 = (float)sqrt(ab_prev), ce = (float)sqrt(fmax(1.0 - ab_prev - sd * sd, 0.0));
#pragma omp parallel for if (n > MD_PAR_MIN) schedule(static)
  for (int64_t j = 0; j < n; j++) out[j] = c0 * x0[j] + ce * eps[j] + (noise && sigma > 0 ? sigma * noise[j] : 0.0f);
}
