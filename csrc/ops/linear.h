/* Fully connected layer: y = x @ w^T + b over the last dimension of x. */
#ifndef MD_LINEAR_H
#define MD_LINEAR_H

#include "../tensor.h"

/* x [..., in] @ w[out, in]^T + bias[out] (bias may be NULL) */
int md_linear(md_tensor **out, md_tensor *x, md_tensor *w, md_tensor *bias);

/* The kernels, over rows of x: x [rows, in], w [out, in], b [out] or NULL,
 * y [rows, out]. Backward accumulates into dx, dw, db (each may be NULL). */
void md_linear_forward(const float *x, const float *w, const float *b, float *y, int64_t rows, int64_t in,
                       int64_t out);
void md_linear_backward(const float *x, const float *w, const float *dy, float *dx, float *dw, float *db,
                        int64_t rows, int64_t in, int64_t out);

#endif
