/* Group normalisation (the U-Net's GroupNorm, with SiLU and the ResBlock's
 * embedding add fused in): the differentiable op and its raw kernels. */
#ifndef MD_NORM_H
#define MD_NORM_H

#include <stdbool.h>
#include <stdint.h>

#include "../tensor.h"

/* x [N, C, *]; weight and bias [C] or NULL. PyTorch semantics: biased
 * variance, eps inside the square root. shift [N, C] or NULL is added to
 * x first: group_norm(x + shift[:, :, None, None]), the ResBlock's
 * embedding add. With silu, the output is silu(group_norm(...)), the
 * U-Net's norm-then-activate. One pass each way; the normalised values are
 * recomputed in backward instead of stored. */
int md_group_norm(md_tensor **out, md_tensor *x, int64_t groups, md_tensor *weight, md_tensor *bias, float eps,
                  bool silu, md_tensor *shift);


/* The raw kernels, exposed for the tests. */
/* x, y [n, c, hw] (or blocked, c a multiple of 16); shift [n, c], w, b [c]
 * may be NULL; mean, rstd [n, groups] are written forward and read
 * backward. Backward accumulates into the gradients that are not NULL
 * (overwrites dx with assign_dx). */
int md_group_norm_forward(const float *x, const float *shift, const float *w, const float *b, float *y, float *mean,
                          float *rstd, int64_t n, int64_t c, int64_t hw, int64_t groups, float eps, bool silu,
                          bool blocked);
int md_group_norm_backward(const float *x, const float *shift, const float *w, const float *b, const float *mean,
                           const float *rstd, const float *dy, float *dx, float *dshift, float *dw, float *db,
                           int64_t n, int64_t c, int64_t hw, int64_t groups, bool silu, bool blocked,
                           bool assign_dx);

#endif
