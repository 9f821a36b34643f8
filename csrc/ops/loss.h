/* Losses with mean reduction, returning 0-dim tensors. Labels are float
 * tensors of 0-based class indices. */
#ifndef MD_LOSS_H
#define MD_LOSS_H

#include "../tensor.h"

int md_mse_loss(md_tensor **out, md_tensor *a, md_tensor *b);
/* logits [N, K], labels [N]: log_softmax + NLL fused */
int md_cross_entropy(md_tensor **out, md_tensor *logits, const md_tensor *labels);
/* logp [N, K] (log-probabilities), labels [N] */
int md_nll_loss(md_tensor **out, md_tensor *logp, const md_tensor *labels);
/* p in [0, 1], targets y; log clamped at -100 as in PyTorch */
int md_binary_cross_entropy(md_tensor **out, md_tensor *p, md_tensor *y);
/* the stable form over logits */
int md_binary_cross_entropy_with_logits(md_tensor **out, md_tensor *logits, md_tensor *y);

#endif
