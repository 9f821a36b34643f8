#include "autograd.h"

#include "alloc.h"
#include "layout.h"
#include "profile.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static _Thread_local bool grad_disabled;

bool md_grad_enabled(void) { return !grad_disabled; }
void md_set_grad_enabled(bool on) { grad_disabled = !on; }

int md_begin_inplace(md_tensor *t, const char *op) {
  if (md_grad_enabled() && md_needs_grad(t))
    return md_error("%s: in-place operation on a tensor that requires grad "
                    "(use an out-of-place op, or do it inside md.no_grad)",
                    op);
  t->storage->version++;
  return MD_OK;
}

static void node_destroy(md_node_ref *r);

int md_record(md_node **node, md_tensor *out, const char *op, md_backward_fn backward,
              int ninputs, md_tensor *const *inputs) {
  *node = NULL;
  if (!md_grad_enabled()) return MD_OK;
  bool any = false;
  for (int i = 0; i < ninputs; i++) any = any || md_needs_grad(inputs[i]);
  if (!any) return MD_OK;
  md_node *n = calloc(1, sizeof *n);
  if (!n) return md_error("%s: out of memory recording the autograd graph", op);
  n->ref.refcount = 1;
  n->ref.destroy = node_destroy;
  n->op = op;
  n->backward = backward;
  n->ninputs = ninputs;
  for (int i = 0; i < ninputs; i++) {
    n->inputs[i] = inputs[i];
    if (inputs[i]) {
      md_tensor_retain(inputs[i]);
      n->input_version[i] = inputs[i]->storage->version;
    }
  }
  n->out_ndim = out->ndim;
  memcpy(n->out_shape, out->shape, sizeof n->out_shape);
  n->out_numel = out->numel;
  md_node_release(out->grad_fn);
  out->grad_fn = n;
  out->requires_grad = true;
  *node = n;
  return MD_OK;
}

int md_node_save(md_node *n, int slot, const md_tensor *t) {
  md_tensor *a = md_tensor_alias(t, 0, t->ndim, t->shape);
  if (!a) return MD_ERR;
  a->offset = t->offset;
  md_tensor_release(n->saved[slot]);
  n->saved[slot] = a;
  n->saved_version[slot] = t->storage->version;
  return MD_OK;
}

void md_node_retain(md_node *n) {
  if (n) n->ref.refcount++;
}

/* Drops what the node holds; the node itself may live on (a tensor still
 * points at it) but can no longer be swept. */
static void node_free_saved(md_node *n) {
  for (int i = 0; i < n->ninputs; i++) {
    md_tensor_release(n->inputs[i]);
    n->inputs[i] = NULL;
  }
  for (int i = 0; i < MD_NODE_MAX_SAVED; i++) {
    md_tensor_release(n->saved[i]);
    n->saved[i] = NULL;
  }
  if (n->ctx && n->ctx_free) n->ctx_free(n->ctx);
  n->ctx = NULL;
  n->backward = NULL;
}

void md_node_release(md_node *n) { md_node_ref_release(n); }

static void node_destroy(md_node_ref *r) {
  md_node *n = (md_node *)r;
  /* Releasing inputs can release their nodes in turn; a long chain (an
   * unrolled sampler loop) recurses once per node, which is bounded by the
   * graph depth of one training step. */
  node_free_saved(n);
  md_free_floats(n->grad_buf, n->out_numel);
  free(n);
}

/* ---- the sweep ---------------------------------------------------------- */

typedef struct {
  md_node **v;
  int n, cap;
} node_list;

static int list_push(node_list *l, md_node *x) {
  if (l->n == l->cap) {
    int cap = l->cap ? 2 * l->cap : 64;
    md_node **v = realloc(l->v, (size_t)cap * sizeof *v);
    if (!v) return md_error("backward: out of memory");
    l->v = v;
    l->cap = cap;
  }
  l->v[l->n++] = x;
  return MD_OK;
}

/* Post-order DFS without recursion: order->v ends up with every node after
 * all nodes it depends on, so walking it backwards visits consumers first.
 * Each listed node is retained for the duration of the sweep. */
static int topo_sort(md_node *root, node_list *order) {
  node_list stack = {0};
  int rc = MD_OK;
  root->mark = 1;
  if ((rc = list_push(&stack, root)) != MD_OK) goto done;
  while (stack.n > 0) {
    md_node *n = stack.v[stack.n - 1];
    bool pushed = false;
    for (int i = 0; i < n->ninputs; i++) {
      md_tensor *in = n->inputs[i];
      md_node *c = in ? in->grad_fn : NULL;
      if (c && c->mark == 0) {
        c->mark = 1;
        if ((rc = list_push(&stack, c)) != MD_OK) goto done;
        pushed = true;
        break;
      }
    }
    if (pushed) continue;
    stack.n--;
    n->mark = 2;
    md_node_retain(n);
    if ((rc = list_push(order, n)) != MD_OK) {
      md_node_release(n);
      goto done;
    }
  }
done:
  free(stack.v);
  return rc;
}

static int target_index(const md_tensor *t, int ntargets, md_tensor *const *targets) {
  for (int i = 0; i < ntargets; i++)
    if (targets[i] == t) return i;
  return -1;
}

/* An input edge carries gradient when it ends at a leaf that collects it
 * (requires_grad in backward mode, a target in grad mode) or at a node that
 * is needed. Nodes are visited in dependency order, so inputs are decided
 * before their consumers. */
static bool edge_needed(const md_tensor *in, int ntargets, md_tensor *const *targets) {
  if (!in) return false;
  if (targets) {
    if (target_index(in, ntargets, targets) >= 0) return true;
    return in->grad_fn && in->grad_fn->needed;
  }
  return in->grad_fn ? in->grad_fn->needed : in->requires_grad;
}

static float *zeroed(int64_t n) {
  float *p = md_calloc_floats(n);
  if (!p) md_error("backward: out of memory for a gradient of %lld floats", (long long)n);
  return p;
}

/* Whether input i of n may get an uninitialised gradient buffer: n's
 * backward assigns into fresh buffers, and the input does not appear twice
 * in the node (both slots would then add into one buffer). Sets fresh[i]. */
static bool may_assign(md_node *n, int i) {
  bool assign = n->assigns;
  for (int j = 0; j < n->ninputs; j++) assign = assign && (j == i || n->inputs[j] != n->inputs[i]);
  n->fresh[i] = assign;
  return assign;
}

/* For the tests: fill uninitialised gradient buffers with NaN, so that a
 * backward function that leaves part of one unwritten shows. */
static bool poison_fresh;
void md_autograd_poison_fresh(bool on) { poison_fresh = on; }

static void poison(float *p, int64_t n) {
  for (int64_t i = 0; poison_fresh && i < n; i++) p[i] = NAN;
}

/* A first gradient buffer for input i of n. */
static float *new_grad_buf(md_node *n, int i, int64_t numel) {
  if (!may_assign(n, i)) return zeroed(numel);
  float *p = md_alloc_floats(numel);
  if (!p) md_error("backward: out of memory for a gradient of %lld floats", (long long)numel);
  else poison(p, numel);
  return p;
}

/* The same for a leaf's .grad or a target's gradient, shaped like `like`. */
static md_tensor *new_grad_tensor(md_node *n, int i, const md_tensor *like) {
  if (!may_assign(n, i)) return md_tensor_zeros_like(like);
  md_tensor *g = md_tensor_empty_like(like);
  if (g) poison(md_data(g), g->numel);
  return g;
}

static int check_root(const md_tensor *root, const md_tensor *grad_root) {
  if (!root->grad_fn)
    return md_error("backward: tensor does not require grad and has no grad_fn "
                    "(did you compute it inside no_grad, or forget requires_grad?)");
  if (!root->grad_fn->backward)
    return md_error("backward: trying to backward through the graph a second time "
                    "(its saved tensors were freed by the first sweep)");
  if (grad_root) {
    if (grad_root->numel != root->numel)
      return md_error("backward: gradient has %lld elements, the tensor has %lld",
                      (long long)grad_root->numel, (long long)root->numel);
  } else if (root->numel != 1) {
    return md_error("backward: grad can be implicitly created only for a tensor of one "
                    "element, this one has %lld (pass a gradient)",
                    (long long)root->numel);
  }
  return MD_OK;
}

/* The root's gradient buffer: grad_root in the root's layout, or 1. */
static int seed_root(const md_tensor *root, const md_tensor *grad_root) {
  md_node *r = root->grad_fn;
  r->grad_buf = zeroed(r->out_numel);
  if (!r->grad_buf) return MD_ERR;
  if (!grad_root) r->grad_buf[0] = 1.0f;
  else if (md_is_blocked(root) != md_is_blocked(grad_root))
    (md_is_blocked(root) ? md_block_kernel : md_unblock_kernel)(md_data(grad_root), r->grad_buf, root->shape[0],
                                                                 root->shape[1], root->shape[2] * root->shape[3],
                                                                 false);
  else memcpy(r->grad_buf, md_data(grad_root), (size_t)r->out_numel * sizeof(float));
  return MD_OK;
}

/* Refuses a node whose inputs or saved tensors were written in place after
 * it was recorded: its gradient would be wrong. */
static int check_versions(const md_node *n) {
  if (!n->backward)
    return md_error("backward: trying to backward through the graph a second time "
                    "(its saved tensors were freed by the first sweep)");
  for (int i = 0; i < n->ninputs; i++)
    if (n->inputs[i] && n->inputs[i]->storage->version != n->input_version[i])
      return md_error("backward: an input of %s was modified in place after it was used; "
                      "its gradient would be wrong",
                      n->op);
  for (int i = 0; i < MD_NODE_MAX_SAVED; i++)
    if (n->saved[i] && n->saved[i]->storage->version != n->saved_version[i])
      return md_error("backward: a tensor saved by %s was modified in place; its gradient "
                      "would be wrong",
                      n->op);
  return MD_OK;
}

/* din[i]: where input i of n accumulates its gradient (a node's buffer, a
 * target's gradient or a leaf's .grad, created on first use), or NULL. */
static int input_buffers(md_node *n, int ntargets, md_tensor *const *targets, md_tensor **grads, float **din) {
  for (int i = 0; i < n->ninputs; i++) {
    md_tensor *in = n->inputs[i];
    n->fresh[i] = false;
    din[i] = NULL;
    if (!edge_needed(in, ntargets, targets)) continue;
    if (in->grad_fn) {
      if (!in->grad_fn->grad_buf && !(in->grad_fn->grad_buf = new_grad_buf(n, i, in->numel))) return MD_ERR;
      din[i] = in->grad_fn->grad_buf;
    } else if (targets) {
      int t = target_index(in, ntargets, targets);
      if (!grads[t] && !(grads[t] = new_grad_tensor(n, i, in))) return MD_ERR;
      din[i] = md_data(grads[t]);
    } else {
      if (!in->grad && !(in->grad = new_grad_tensor(n, i, in))) return MD_ERR;
      din[i] = md_data(in->grad);
    }
  }
  return MD_OK;
}

/* A non-leaf target's gradient is complete once its node is reached. */
static int collect_targets(const md_node *n, int ntargets, md_tensor *const *targets, md_tensor **grads) {
  for (int i = 0; i < ntargets; i++) {
    if (targets[i]->grad_fn != n || grads[i]) continue;
    grads[i] = md_tensor_empty_like(targets[i]); /* gradients are in their tensor's layout */
    if (!grads[i]) return MD_ERR;
    memcpy(md_data(grads[i]), n->grad_buf, (size_t)n->out_numel * sizeof(float));
  }
  return MD_OK;
}

/* Runs one node's backward into its inputs' buffers, then frees its own. */
static int step_node(md_node *n, int ntargets, md_tensor *const *targets, md_tensor **grads, bool retain_graph) {
  int rc = targets ? collect_targets(n, ntargets, targets, grads) : MD_OK;
  if (rc == MD_OK && n->needed) {
    float *din[MD_NODE_MAX_INPUTS];
    rc = check_versions(n);
    if (rc == MD_OK) rc = input_buffers(n, ntargets, targets, grads, din);
    if (rc == MD_OK) {
      double t0 = md_profile_enabled() ? md_profile_now() : 0, b0 = md_profile_booked();
      rc = n->backward(n, n->grad_buf, din);
      if (md_profile_enabled()) md_profile_add(n->op, true, md_profile_now() - t0 - (md_profile_booked() - b0));
    }
    if (rc == MD_OK) {
      md_free_floats(n->grad_buf, n->out_numel);
      n->grad_buf = NULL;
      if (!retain_graph) node_free_saved(n);
    }
  }
  return rc;
}

/* Marks which nodes carry gradient to a leaf or target (and checks targets). */
static int mark_needed(node_list *order, int ntargets, md_tensor *const *targets, md_tensor **grads) {
  for (int k = 0; k < order->n; k++) {
    md_node *n = order->v[k];
    n->needed = false;
    for (int i = 0; i < n->ninputs; i++) n->needed = n->needed || edge_needed(n->inputs[i], ntargets, targets);
  }
  for (int i = 0; targets && i < ntargets; i++)
    if (!md_needs_grad(targets[i])) return md_error("grad: target %d does not require grad", i + 1);
  return MD_OK;
}

static int sweep(md_tensor *root, const md_tensor *grad_root, int ntargets, md_tensor *const *targets,
                 md_tensor **grads, bool retain_graph) {
  for (int i = 0; targets && i < ntargets; i++) grads[i] = NULL;
  int rc = check_root(root, grad_root);
  if (rc != MD_OK) return rc;
  node_list order = {0};
  rc = topo_sort(root->grad_fn, &order);
  if (rc == MD_OK) rc = mark_needed(&order, ntargets, targets, grads);
  if (rc == MD_OK) rc = seed_root(root, grad_root);
  for (int k = order.n - 1; k >= 0 && rc == MD_OK; k--)
    if (order.v[k]->grad_buf) rc = step_node(order.v[k], ntargets, targets, grads, retain_graph);

  for (int k = 0; k < order.n; k++) { /* engine scratch, also after an error */
    md_node *n = order.v[k];
    md_free_floats(n->grad_buf, n->out_numel);
    n->grad_buf = NULL;
    n->mark = 0;
    n->needed = false;
  }
  for (int i = 0; rc == MD_OK && targets && i < ntargets; i++) /* a target no path reached has zero gradient */
    if (!grads[i] && !(grads[i] = md_tensor_zeros_like(targets[i]))) rc = MD_ERR;
  for (int i = 0; rc != MD_OK && targets && i < ntargets; i++) {
    md_tensor_release(grads[i]);
    grads[i] = NULL;
  }
  for (int k = 0; k < order.n; k++) md_node_release(order.v[k]);
  free(order.v);
  return rc;
}

int md_backward(md_tensor *root, const md_tensor *grad_root, bool retain_graph) {
  return sweep(root, grad_root, 0, NULL, NULL, retain_graph);
}

int md_grad(md_tensor *root, const md_tensor *grad_root, int ntargets, md_tensor *const *targets,
            md_tensor **grads, bool retain_graph) {
  if (ntargets <= 0) return md_error("grad: no targets given");
  return sweep(root, grad_root, ntargets, targets, grads, retain_graph);
}
