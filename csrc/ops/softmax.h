/* softmax and log_softmax along one dimension. */
#ifndef MD_SOFTMAX_H
#define MD_SOFTMAX_H

#include <stdbool.h>
#include <stdint.h>

#include "../tensor.h"

/* softmax / log_softmax along dim (0-based) */
int md_softmax(md_tensor **out, md_tensor *x, int dim, bool log);

#endif
