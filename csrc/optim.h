/* Optimizer kernels over flat float buffers: one call updates n parameters.
 * The Lua layer (lua/moondust/optim.lua) keeps the state tensors and calls
 * these once per parameter tensor. Semantics follow PyTorch's torch.optim. */
#ifndef MD_OPTIM_H
#define MD_OPTIM_H

#include <stdbool.h>
#include <stdint.h>

typedef struct md_adam_config {
  float lr, beta1, beta2, eps, weight_decay;
  bool decoupled; /* AdamW: decay the weights directly; Adam: add wd*p to the gradient */
} md_adam_config;

/* One Adam/AdamW step; `step` counts from 1 (for bias correction). */
void md_adam_step(float *p, const float *g, float *m, float *v, int64_t n, int64_t step,
                  const md_adam_config *c);

typedef struct md_sgd_config {
  float lr, momentum, dampening, weight_decay;
  bool nesterov;
} md_sgd_config;

/* One SGD step. `buf` is the momentum buffer (may be NULL when momentum is 0);
 * `first` says the buffer is still empty (PyTorch initialises it to the grad). */
void md_sgd_step(float *p, const float *g, float *buf, int64_t n, bool first, const md_sgd_config *c);

/* ema = decay * ema + (1 - decay) * p */
void md_ema_update(float *ema, const float *p, int64_t n, float decay);

/* Sum of squares of g[0..n), in double, for gradient-norm clipping. */
double md_sum_squares(const float *g, int64_t n);

/* g *= s */
void md_scale(float *g, int64_t n, float s);

#endif
