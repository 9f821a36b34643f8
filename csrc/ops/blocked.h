/* The blocked layout (nChw16c, see tensor.h): conversions to and from plain
 * NCHW, as kernels and as differentiable ops. Which ops keep activations
 * blocked: conv2d (output channels a multiple of 16, oneDNN engine), the
 * pointwise ops (same layout in and out), group_norm, upsample_nearest and
 * cat along channels. */
#ifndef MD_BLOCKED_H
#define MD_BLOCKED_H

#include "../layout.h"

/* The same values in the other layout, recorded by autograd. When x is
 * already in that layout, *out is x itself (a new reference). */
int md_to_plain(md_tensor **out, md_tensor *x);
int md_to_blocked(md_tensor **out, md_tensor *x);

#endif
