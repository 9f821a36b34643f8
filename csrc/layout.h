/* The two layouts a tensor's storage can have (see md_layout in tensor.h):
 * the kernels that convert values between plain NCHW and blocked nChw16c,
 * below autograd. The differentiable conversions and the rule for ops that
 * read only one layout are in ops/blocked.h. */
#ifndef MD_LAYOUT_H
#define MD_LAYOUT_H

#include "tensor.h"

/* Kernels over [n, c, hw] values, c a multiple of 16: blocked = block(plain)
 * and plain = unblock(blocked); with accumulate, the result is added to the
 * destination instead (the backward passes). */
void md_block_kernel(const float *plain, float *blocked, int64_t n, int64_t c, int64_t hw, bool accumulate);
void md_unblock_kernel(const float *blocked, float *plain, int64_t n, int64_t c, int64_t hw, bool accumulate);

/* Gives t a plain storage with the same values, for an in-place op on a
 * blocked tensor. Autograd graphs that used t's values can no longer be
 * swept (as after any in-place write). */
int md_make_plain_inplace(md_tensor *t);

/* t's values in plain layout for code that reads them outside autograd (I/O,
 * the binding's element access, the float kernels of optim and diffusion):
 * t itself when plain (a new reference), else a plain copy. */
int md_plain_values(md_tensor **out, const md_tensor *t);

#endif
