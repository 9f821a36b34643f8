/* Reverse-mode autograd: a define-by-run graph.
 *
 * Every op that runs in grad mode with an input that requires grad records a
 * node on its output (out->grad_fn). The node holds references to the op's
 * inputs and to anything else backward needs (saved tensors, scalar params),
 * never to its own output, so the graph is freed when the last tensor that
 * can reach it is. md_backward walks the graph from a root in reverse
 * topological order and calls each node's backward function, which
 * ACCUMULATES (+=) into the gradient buffers of the inputs that need one.
 *
 * Writing a differentiable op (see ops/view.c):
 *
 *   md_tensor *out = ...compute forward...;
 *   md_node *n;
 *   if (md_record(&n, out, "relu", relu_backward, 1, (md_tensor *[]){x}) != MD_OK) {...}
 *   if (n) { ...md_node_save(n, 0, out)...; n->iarg[0] = ...; }
 *
 * and a backward function
 *
 *   static int relu_backward(md_node *n, const float *dout, float *const *din) {
 *     if (din[0]) ...din[0][i] += ...;   // din[i] is NULL when input i needs no grad
 *     return MD_OK;
 *   }
 */
#ifndef MD_AUTOGRAD_H
#define MD_AUTOGRAD_H

#include "tensor.h"

#define MD_NODE_MAX_INPUTS 4
#define MD_NODE_MAX_SAVED 4

/* dout: gradient of the node's output (contiguous, n->out_numel floats, in
 * the output's layout). din[i]: gradient buffer of input i to accumulate
 * into (in input i's layout), or NULL. When the op set n->assigns, the
 * engine may hand it a buffer nobody has written yet, uninitialised, with
 * n->fresh[i] set: the function must then write every element of din[i]
 * (assign, not add). This spares zeroing and re-reading the largest
 * buffers of a step. */
typedef int (*md_backward_fn)(md_node *n, const float *dout, float *const *din);

struct md_node {
  md_node_ref ref; /* first: tensors release nodes through it (tensor.h) */
  const char *op; /* op name, for error messages */
  md_backward_fn backward;

  int ninputs;
  md_tensor *inputs[MD_NODE_MAX_INPUTS]; /* retained; may be NULL (optional input) */
  uint32_t input_version[MD_NODE_MAX_INPUTS];

  md_tensor *saved[MD_NODE_MAX_SAVED]; /* retained aliases without grad_fn */
  uint32_t saved_version[MD_NODE_MAX_SAVED];

  int out_ndim;
  int64_t out_shape[MD_MAX_DIMS];
  int64_t out_numel;

  /* Scalar parameters of the op (stride, padding, eps, dims, ...). */
  int64_t iarg[8];
  float farg[4];
  /* Op-specific memory; freed with ctx_free when the node dies. */
  void *ctx;
  void (*ctx_free)(void *ctx);

  /* set by the op when its backward honours fresh[] (see md_backward_fn) */
  bool assigns;

  /* engine scratch, valid only during one md_backward call */
  float *grad_buf;
  int mark;
  bool needed;
  bool fresh[MD_NODE_MAX_INPUTS];
};

/* Grad mode (per thread). md.no_grad switches it off around a function. */
bool md_grad_enabled(void);
void md_set_grad_enabled(bool on);

/* True when t takes part in autograd: a leaf with requires_grad, or the
 * result of a recorded op. */
static inline bool md_needs_grad(const md_tensor *t) {
  return t && (t->requires_grad || t->grad_fn);
}

/* Records a node on `out` when grad mode is on and any input needs grad;
 * otherwise sets *node to NULL and records nothing. Inputs may contain NULLs
 * (an absent bias). Returns MD_ERR only when out of memory. */
int md_record(md_node **node, md_tensor *out, const char *op, md_backward_fn backward,
              int ninputs, md_tensor *const *inputs);

/* Keeps what backward needs: a tensor (typically the output or a
 * normalised intermediate). Stores an alias, so saving the output makes no
 * reference cycle. */
int md_node_save(md_node *n, int slot, const md_tensor *t);

/* Tests: fill the uninitialised gradient buffers handed to assigning ops
 * with NaN (see md_backward_fn), so that an element left unwritten shows. */
void md_autograd_poison_fresh(bool on);

/* In-place writes: refuse when autograd would need the old values, and bump
 * the storage version so saved tensors modified later are caught. */
int md_begin_inplace(md_tensor *t, const char *op);

void md_node_retain(md_node *n);
void md_node_release(md_node *n);

/* Backpropagates from root. grad_root may be NULL when root has one element
 * (the gradient is then 1). Gradients accumulate into the .grad of leaves
 * that require grad. Unless retain_graph, the sweep frees what each node
 * held as soon as the node is done (activations die during backward), and
 * a second sweep of the same graph is an error. */
int md_backward(md_tensor *root, const md_tensor *grad_root, bool retain_graph);

/* Like torch.autograd.grad: puts in grads[i] (a new reference) the gradient
 * of root with respect to targets[i], touching no .grad anywhere; only the
 * part of the graph that leads to a target is swept. Targets must take part
 * in autograd. */
int md_grad(md_tensor *root, const md_tensor *grad_root, int ntargets, md_tensor *const *targets,
            md_tensor **grads, bool retain_graph);

#endif
