/* Views that share storage: reshape and selecting along the first dimension.
 * Both are recorded by autograd (their gradient is a copy into place). */
#ifndef MD_OPS_VIEW_H
#define MD_OPS_VIEW_H

#include "../tensor.h"

/* shape may contain one -1, inferred from the element count. */
int md_reshape(md_tensor **out, md_tensor *x, int ndim, const int64_t *shape);
/* x[i] along the first dimension (0-based i): ndim - 1 dimensions. */
int md_select_first(md_tensor **out, md_tensor *x, int64_t i);
/* x[start : start + len] along the first dimension. */
int md_narrow_first(md_tensor **out, md_tensor *x, int64_t start, int64_t len);

#endif
