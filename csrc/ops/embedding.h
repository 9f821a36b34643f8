/* Embedding tables (class labels) and the sinusoidal timestep embedding. */
#ifndef MD_EMBEDDING_H
#define MD_EMBEDDING_H

#include <stdbool.h>
#include <stdint.h>

#include "../tensor.h"

/* idx: any shape of 0-based integer values < w.shape[0]; w [num, dim] */
int md_embedding(md_tensor **out, const md_tensor *idx, md_tensor *w);
/* ADM's sinusoidal embedding: t [N] -> [N, dim], cos half then sin half. */
int md_timestep_embedding(md_tensor **out, const md_tensor *t, int64_t dim, float max_period);

#endif
