/* Matrix products through OpenBLAS (backend/blas.h). */
#ifndef MD_LINALG_H
#define MD_LINALG_H

#include "../tensor.h"
#include "linear.h" /* md_linear lives in linear.c */

/* a [..., m, k] @ b [..., k, n]: the operand with fewer batch dims repeats
 * over the other's leading ones (its batch dims must equal the other's
 * trailing batch dims, e.g. [B, H, m, k] @ [H, k, n] or [m, k] @ [B, k, n]);
 * 1-D a or b act as a row or a column, as in torch.matmul. */
int md_matmul(md_tensor **out, md_tensor *a, md_tensor *b);
/* a [B, m, k] @ b [B, k, n] */
int md_bmm(md_tensor **out, md_tensor *a, md_tensor *b);

#endif
