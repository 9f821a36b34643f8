/* The blocked layout (nChw16c, see tensor.h): conversions to and from plain
 * NCHW, as kernels and as differentiable ops. Which ops keep activations
 * blocked: conv2d (output channels a multiple of 16, oneDNN engine), the
 * pointwise ops (same layout in and out), group_norm, upsample_nearest and
 * cat along channels. */
#ifndef MD_BLOCKED_H
#define MD_BLOCKED_H

#include "../tensor.h"

/* Kernels over [n, c, hw] values, c a multiple of 16: blocked = block(plain)
 * and plain = unblock(blocked); with accumulate, the result is added to the
 * destination instead (the backward passes). */
void md_block_kernel(const float *plain, float *blocked, int64_t n, int64_t c, int64_t hw, bool accumulate);
void md_unblock_kernel(const float *blocked, float *plain, int64_t n, int64_t c, int64_t hw, bool accumulate);

/* The same values in the other layout, recorded by autograd. When x is
 * already in that layout, *out is x itself (a new reference). */
int md_to_plain(md_tensor **out, md_tensor *x);
int md_to_blocked(md_tensor **out, md_tensor *x);

/* Gives t a plain storage with the same values, for an in-place op on a
 * blocked tensor. Autograd graphs that used t's values can no longer be
 * swept (as after any in-place write). */
int md_make_plain_inplace(md_tensor *t);

#endif
