/* Ops that move data without arithmetic: copies, concatenation, stacking,
 * permutation (always copying: tensors stay contiguous) and gathering rows
 * along a dimension. All differentiable. */
#ifndef MD_MOVEMENT_H
#define MD_MOVEMENT_H

#include "../tensor.h"

int md_clone(md_tensor **out, md_tensor *x);
/* dst = src in place; src has dst's element count (any shape) or broadcasts to dst's shape. */
int md_copy_(md_tensor *dst, const md_tensor *src);
int md_fill_(md_tensor *dst, float value);

int md_cat(md_tensor **out, int n, md_tensor *const *xs, int dim);
int md_stack(md_tensor **out, int n, md_tensor *const *xs, int dim);
/* out.shape[i] = x.shape[perm[i]] */
int md_permute(md_tensor **out, md_tensor *x, const int *perm);
/* idx holds 0-based integer positions along dim. */
int md_index_select(md_tensor **out, md_tensor *x, int dim, const md_tensor *idx);

#endif
