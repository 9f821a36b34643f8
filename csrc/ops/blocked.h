/* The blocked layout (nChw16c, see tensor.h) among the ops: differentiable
 * conversions, and the one rule by which every op takes tensors of either
 * layout.
 *
 * Which ops keep activations blocked: conv2d (output channels a multiple of
 * 16, oneDNN engine), the pointwise ops (same layout in and out), group_norm,
 * upsample_nearest and cat along channels. Every other op reads plain NCHW:
 * it begins with md_plain_inputs, which swaps each blocked input for a plain
 * copy recorded by autograd (so gradients flow back into the blocked
 * tensor), and ends with md_plain_release. In-place ops on a blocked tensor
 * that cannot keep its layout turn it plain first (md_make_plain_inplace, in
 * layout.h). So C callers and Lua callers see the same ops, and users only
 * ever see NCHW values. */
#ifndef MD_BLOCKED_H
#define MD_BLOCKED_H

#include "../layout.h"

/* The same values in the other layout, recorded by autograd. When x is
 * already in that layout, *out is x itself (a new reference). */
int md_to_plain(md_tensor **out, md_tensor *x);
int md_to_blocked(md_tensor **out, md_tensor *x);

/* The plain copies an op made of its inputs, released when it is done. */
#define MD_PLAIN_MAX 8
typedef struct {
  md_tensor *held[MD_PLAIN_MAX];
  int n;
} md_plain_scope;

/* For each xs[i] that points at a blocked tensor, makes a plain copy and
 * points xs[i] at it (NULL entries are skipped). On error nothing is held. */
int md_plain_inputs(md_plain_scope *scope, int n, md_tensor **const *xs);
void md_plain_release(md_plain_scope *scope);

#endif
