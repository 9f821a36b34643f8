#include "blocked.h"

#include <string.h>

#include "../autograd.h"

static int64_t plane(const md_tensor *x) { return x->shape[2] * x->shape[3]; }

/* the gradient goes back through the inverse conversion (assigned when fresh) */
static int to_plain_backward(md_node *n, const float *dout, float *const *din) {
  const md_tensor *x = n->inputs[0];
  if (din[0]) md_block_kernel(dout, din[0], x->shape[0], x->shape[1], plane(x), !n->fresh[0]);
  return MD_OK;
}

static int to_blocked_backward(md_node *n, const float *dout, float *const *din) {
  const md_tensor *x = n->inputs[0];
  if (din[0]) md_unblock_kernel(dout, din[0], x->shape[0], x->shape[1], plane(x), !n->fresh[0]);
  return MD_OK;
}

static int convert(md_tensor **out, md_tensor *x, md_layout to) {
  if (x->storage->layout == to) {
    md_tensor_retain(x);
    *out = x;
    return MD_OK;
  }
  md_tensor *y = md_tensor_new_layout(x->ndim, x->shape, to);
  if (!y) return MD_ERR;
  if (to == MD_LAYOUT_PLAIN) md_unblock_kernel(md_data(x), md_data(y), x->shape[0], x->shape[1], plane(x), false);
  else md_block_kernel(md_data(x), md_data(y), x->shape[0], x->shape[1], plane(x), false);
  md_node *n;
  if (md_record(&n, y, to == MD_LAYOUT_PLAIN ? "to_plain" : "to_blocked",
                to == MD_LAYOUT_PLAIN ? to_plain_backward : to_blocked_backward, 1, &x) != MD_OK) {
    md_tensor_release(y);
    return MD_ERR;
  }
  if (n) n->assigns = true;
  *out = y;
  return MD_OK;
}

int md_to_plain(md_tensor **out, md_tensor *x) { return convert(out, x, MD_LAYOUT_PLAIN); }

int md_to_blocked(md_tensor **out, md_tensor *x) {
  if (!md_blockable(x->ndim, x->shape)) {
    char buf[MD_SHAPE_STR_LEN];
    return md_error("to_blocked: needs N x C x H x W with C a multiple of %d, got %s", MD_BLOCK,
                    md_shape_str(x, buf, sizeof buf));
  }
  return convert(out, x, MD_LAYOUT_BLOCKED);
}

int md_plain_inputs(md_plain_scope *scope, int n, md_tensor **const *xs) {
  scope->n = 0;
  for (int i = 0; i < n; i++) {
    md_tensor *x = *xs[i];
    if (!x || !md_is_blocked(x)) continue;
    if (scope->n == MD_PLAIN_MAX) {
      md_plain_release(scope);
      return md_error("internal: more than %d blocked inputs to one op", MD_PLAIN_MAX);
    }
    md_tensor *p;
    if (md_to_plain(&p, x) != MD_OK) {
      md_plain_release(scope);
      return MD_ERR;
    }
    scope->held[scope->n++] = p;
    *xs[i] = p;
  }
  return MD_OK;
}

void md_plain_release(md_plain_scope *scope) {
  for (int i = 0; i < scope->n; i++) md_tensor_release(scope->held[i]);
  scope->n = 0;
}
