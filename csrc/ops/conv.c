#include "conv.h"

#include <stdlib.h>
#include <string.h>

#include "../autograd.h"
#include "blocked.h"
#include "../backend/blas.h"
#include "../backend/conv_dnnl.h"
#include "../backend/conv_im2col.h"

#define MAX_STRIDE_PAD 65536

/* ---- engine choice ----------------------------------------------------------------------- */

#ifdef MD_HAVE_DNNL
static md_conv_backend backend = MD_CONV_DNNL;
#else
static md_conv_backend backend = MD_CONV_IM2COL;
#endif

int md_set_conv_backend(md_conv_backend b) {
#ifndef MD_HAVE_DNNL
  if (b != MD_CONV_IM2COL)
    return md_error("conv backend: this build has no oneDNN (install libdnnl-dev and rebuild)");
#endif
  backend = b;
  return MD_OK;
}

md_conv_backend md_get_conv_backend(void) { return backend; }

/* An empty batch, no input channels or no output channels: no engine is
 * needed (oneDNN rejects zero dims, GEMM's k = 0 corner is best avoided).
 * The output is the bias alone, and only the bias has a gradient. */
static bool is_empty(const md_conv_shape *s) { return s->n == 0 || s->c == 0 || s->o == 0; }

static void empty_forward(const md_conv_shape *s, const float *b, float *y) {
  int64_t hw = s->ho * s->wo;
  for (int64_t i = 0; i < s->n * s->o; i++)
    for (int64_t j = 0; j < hw; j++) y[i * hw + j] = b ? b[i % s->o] : 0.0f;
}

static void empty_backward(const md_conv_shape *s, const float *dy, float *db) {
  int64_t hw = s->ho * s->wo;
  if (db)
    for (int64_t i = 0; i < s->n * s->o; i++)
      for (int64_t j = 0; j < hw; j++) db[i % s->o] += dy[i * hw + j];
}

static int run_forward(md_conv_backend engine, const md_conv_shape *s, const float *x, const float *w,
                       const float *b, float *y) {
  if (is_empty(s)) {
    empty_forward(s, b, y);
    return MD_OK;
  }
  if (engine != MD_CONV_IM2COL)
    return md_dnnl_conv_forward(s, engine == MD_CONV_DNNL, engine == MD_CONV_DNNL_BF16, x, w, b, y);
  return md_conv2d_im2col_forward(s, x, w, b, y);
}

static void zero(float *p, int64_t n) {
  if (p) memset(p, 0, (size_t)n * sizeof(float));
}

/* On the engine the forward pass ran on, whatever the switch says now: the
 * layouts of the saved tensors are that engine's. fresh_* mark gradient
 * buffers nobody has written yet (see md_backward_fn): oneDNN writes them
 * directly; the other paths zero them and accumulate. */
static int run_backward(md_conv_backend engine, const md_conv_shape *s, const float *x, const float *w,
                        const float *dy, float *dx, float *dw, float *db, bool fresh_dx, bool fresh_dw,
                        bool fresh_db) {
  int64_t nx = s->n * s->c * s->h * s->w, nw = s->o * s->c * s->k * s->k;
  if (engine != MD_CONV_IM2COL && !is_empty(s)) {
    /* oneDNN computes dw and db together: overwritten together, or both
     * accumulated into (a fresh one zeroed first) */
    bool assign_wb = (!dw || fresh_dw) && (!db || fresh_db);
    if (!assign_wb) {
      if (fresh_dw) zero(dw, nw);
      if (fresh_db) zero(db, s->o);
    }
    return md_dnnl_conv_backward(s, engine == MD_CONV_DNNL, engine == MD_CONV_DNNL_BF16, x, w, dy, dx, dw, db,
                                 fresh_dx, assign_wb);
  }
  if (fresh_dx) zero(dx, nx);
  if (fresh_dw) zero(dw, nw);
  if (fresh_db) zero(db, s->o);
  if (is_empty(s)) {
    empty_backward(s, dy, db);
    return MD_OK;
  }
  return md_conv2d_im2col_backward(s, x, w, dy, dx, dw, db);
}

/* ---- the differentiable op ----------------------------------------------------------------- */

static void shape_from_node(const md_node *n, md_conv_shape *s) {
  const md_tensor *x = n->inputs[0], *w = n->inputs[1];
  *s = (md_conv_shape){.n = x->shape[0], .c = x->shape[1], .h = x->shape[2], .w = x->shape[3],
                       .o = w->shape[0], .k = w->shape[2], .stride = n->iarg[0], .pad = n->iarg[1],
                       .ho = n->out_shape[2], .wo = n->out_shape[3], .x_layout = x->storage->layout,
                       .y_layout = (md_layout)n->iarg[2], .w_id = w->storage->id, .w_version = w->storage->version};
}

static int conv_backward(md_node *n, const float *dout, float *const *din) {
  md_conv_shape s;
  shape_from_node(n, &s);
  bool bias = n->ninputs > 2;
  return run_backward((md_conv_backend)n->iarg[3], &s, md_data(n->inputs[0]), md_data(n->inputs[1]), dout, din[0],
                      din[1], bias ? din[2] : NULL, n->fresh[0], n->fresh[1], bias && n->fresh[2]);
}

static int conv2d_in_layout(md_tensor **out, md_tensor *x, md_tensor *w, md_tensor *bias, int64_t stride,
                            int64_t pad) {
  char sx[MD_SHAPE_STR_LEN], sw[MD_SHAPE_STR_LEN];
  if (x->ndim != 4) return md_error("conv2d: input must be N x C x H x W, got %s", md_shape_str(x, sx, sizeof sx));
  if (w->ndim != 4 || w->shape[2] != w->shape[3])
    return md_error("conv2d: weight must be out x in x k x k, got %s", md_shape_str(w, sw, sizeof sw));
  if (w->shape[1] != x->shape[1])
    return md_error("conv2d: weight expects %lld input channels, input has %lld (input %s, weight %s)",
                    (long long)w->shape[1], (long long)x->shape[1], md_shape_str(x, sx, sizeof sx),
                    md_shape_str(w, sw, sizeof sw));
  if (bias && (bias->ndim != 1 || bias->shape[0] != w->shape[0]))
    return md_error("conv2d: bias must have %lld elements, got %s", (long long)w->shape[0],
                    md_shape_str(bias, sx, sizeof sx));
  /* the bounds keep the size arithmetic far from overflow; no useful
   * convolution comes near them */
  if (stride < 1 || stride > MAX_STRIDE_PAD)
    return md_error("conv2d: stride must be in 1..%d, got %lld", MAX_STRIDE_PAD, (long long)stride);
  if (pad < 0 || pad > MAX_STRIDE_PAD)
    return md_error("conv2d: padding must be in 0..%d, got %lld", MAX_STRIDE_PAD, (long long)pad);
  if (w->shape[2] < 1) return md_error("conv2d: kernel size must be at least 1, got %s", md_shape_str(w, sw, sizeof sw));
  md_conv_shape s = {.n = x->shape[0], .c = x->shape[1], .h = x->shape[2], .w = x->shape[3],
                     .o = w->shape[0], .k = w->shape[2], .stride = stride, .pad = pad};
  if (s.h + 2 * pad < s.k || s.w + 2 * pad < s.k)
    return md_error("conv2d: kernel %lld is larger than the padded input %lld x %lld", (long long)s.k,
                    (long long)(s.h + 2 * pad), (long long)(s.w + 2 * pad));
  s.ho = (s.h + 2 * pad - s.k) / stride + 1;
  s.wo = (s.w + 2 * pad - s.k) / stride + 1;
  int64_t shape[4] = {s.n, s.o, s.ho, s.wo};
  /* oneDNN reads and writes the blocked layout natively: outputs stay in it
   * for the next layer (see tensor.h) */
  s.x_layout = x->storage->layout;
  s.w_id = w->storage->id, s.w_version = w->storage->version;
  s.y_layout = backend != MD_CONV_IM2COL && !is_empty(&s) && md_blockable(4, shape) ? MD_LAYOUT_BLOCKED : MD_LAYOUT_PLAIN;
  md_tensor *y = md_tensor_new_layout(4, shape, s.y_layout);
  if (!y) return MD_ERR;
  if (run_forward(backend, &s, md_data(x), md_data(w), bias ? md_data(bias) : NULL, md_data(y)) != MD_OK) {
    md_tensor_release(y);
    return MD_ERR;
  }
  md_node *n;
  md_tensor *ins[3] = {x, w, bias};
  if (md_record(&n, y, "conv2d", conv_backward, bias ? 3 : 2, ins) != MD_OK) {
    md_tensor_release(y);
    return MD_ERR;
  }
  if (n) n->iarg[0] = stride, n->iarg[1] = pad, n->iarg[2] = s.y_layout, n->iarg[3] = backend, n->assigns = true;
  *out = y;
  return MD_OK;
}

/* oneDNN takes a blocked input as it is; im2col and the weights are plain */
int md_conv2d(md_tensor **out, md_tensor *x, md_tensor *w, md_tensor *bias, int64_t stride, int64_t pad) {
  md_plain_scope plain;
  md_tensor **xs[3] = {&w, &bias, &x};
  if (md_plain_inputs(&plain, backend == MD_CONV_IM2COL ? 3 : 2, xs) != MD_OK) return MD_ERR;
  int rc = conv2d_in_layout(out, x, w, bias, stride, pad);
  md_plain_release(&plain);
  return rc;
}
