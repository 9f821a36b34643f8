/* Reductions over all elements or along one dimension. Indices (max, min,
 * argmax) are 0-based data values stored as floats, as class labels are. */
#ifndef MD_REDUCE_H
#define MD_REDUCE_H

#include "../tensor.h"

typedef enum { MD_SUM, MD_MEAN, MD_VAR, MD_STD, MD_REDUCE_COUNT } md_reduce_op;

/* all: reduce every element to a 0-dim tensor (dim, keepdim ignored).
 * correction: Bessel's correction for var/std (1 = unbiased, 0 = biased). */
int md_reduce(md_tensor **out, md_reduce_op op, md_tensor *x, bool all, int dim, bool keepdim,
              int correction);

/* Largest (or smallest, with is_min) values and their indices; indices may be
 * NULL. Differentiable in the values. */
int md_max(md_tensor **values, md_tensor **indices, md_tensor *x, bool all, int dim, bool keepdim,
           bool is_min);

#endif
