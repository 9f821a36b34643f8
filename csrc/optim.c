#include "optim.h"

#include <math.h>

#include "detsum.h"
#include "backend/threads.h"

/* Below this many elements a parallel region costs more than it saves. */

void md_adam_step(float *p, const float *g, float *m, float *v, int64_t n, int64_t step,
                  const md_adam_config *c) {
  const float b1 = c->beta1, b2 = c->beta2, wd = c->weight_decay, eps = c->eps;
  const float bc1 = 1.0f - powf(b1, (float)step);
  const float bc2_sqrt = sqrtf(1.0f - powf(b2, (float)step));
  const float step_size = c->lr / bc1;
  const float decay = c->decoupled ? 1.0f - c->lr * wd : 1.0f;
  const float l2 = c->decoupled ? 0.0f : wd;
#pragma omp parallel for if (n > MD_PAR_MIN) schedule(static)
  for (int64_t i = 0; i < n; i++) {
    float gi = g[i] + l2 * p[i];
    float mi = b1 * m[i] + (1.0f - b1) * gi;
    float vi = b2 * v[i] + (1.0f - b2) * gi * gi;
    m[i] = mi;
    v[i] = vi;
    p[i] = p[i] * decay - step_size * mi / (sqrtf(vi) / bc2_sqrt + eps);
  }
}

void md_sgd_step(float *p, const float *g, float *buf, int64_t n, bool first, const md_sgd_config *c) {
  const float mom = c->momentum, damp = c->dampening, wd = c->weight_decay, lr = c->lr;
#pragma omp parallel for if (n > MD_PAR_MIN) schedule(static)
  for (int64_t i = 0; i < n; i++) {
    float d = g[i] + wd * p[i];
    if (mom != 0.0f) {
      float b = first ? d : mom * buf[i] + (1.0f - damp) * d;
      buf[i] = b;
      d = c->nesterov ? d + mom * b : b;
    }
    p[i] -= lr * d;
  }
}

void md_ema_update(float *ema, const float *p, int64_t n, float decay) {
  const float w = 1.0f - decay;
#pragma omp parallel for if (n > MD_PAR_MIN) schedule(static)
  for (int64_t i = 0; i < n; i++) ema[i] += w * (p[i] - ema[i]);
}

double md_sum_squares(const float *g, int64_t n) {
  double part[MD_SUM_CHUNKS];
#pragma omp parallel for if (n > MD_PAR_MIN) schedule(static)
  for (int c = 0; c < MD_SUM_CHUNKS; c++) {
    double s = 0;
    for (int64_t i = md_chunk_start(n, c); i < md_chunk_start(n, c + 1); i++) s += (double)g[i] * g[i];
    part[c] = s;
  }
  return md_sum_parts(part);
}

void md_scale(float *g, int64_t n, float s) {
#pragma omp parallel for if (n > MD_PAR_MIN) schedule(static)
  for (int64_t i = 0; i < n; i++) g[i] *= s;
}
