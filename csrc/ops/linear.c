#include "linear.h"

#include <string.h>

#include "../autograd.h"
#include "../backend/blas.h"
#include "blocked.h"

void md_linear_forward(const float *x, const float *w, const float *b, float *y, int64_t rows, int64_t in,
                       int64_t out) {
  if (b)
    for (int64_t r = 0; r < rows; r++) memcpy(y + r * out, b, (size_t)out * sizeof(float));
  else
    memset(y, 0, (size_t)(rows * out) * sizeof(float));
  /* with no input features y is just the bias; skip GEMM's k = 0 corner */
  if (in > 0) md_sgemm(false, true, rows, out, in, 1.0f, x, in, w, in, 1.0f, y, out);
}

void md_linear_backward(const float *x, const float *w, const float *dy, float *dx, float *dw, float *db,
                        int64_t rows, int64_t in, int64_t out) {
  if (rows == 0) return;
  if (dx && out > 0) md_sgemm(false, false, rows, in, out, 1.0f, dy, out, w, in, 1.0f, dx, in);
  if (dw) md_sgemm(true, false, out, in, rows, 1.0f, dy, out, x, in, 1.0f, dw, in);
  if (db)
    for (int64_t r = 0; r < rows; r++)
      for (int64_t j = 0; j < out; j++) db[j] += dy[r * out + j];
}

/* iarg: rows, in, out */
static int linear_backward(md_node *n, const float *dout, float *const *din) {
  md_linear_backward(md_data(n->inputs[0]), md_data(n->inputs[1]), dout, din[0], din[1],
                     n->ninputs > 2 ? din[2] : NULL, n->iarg[0], n->iarg[1], n->iarg[2]);
  return MD_OK;
}

static int linear_plain(md_tensor **out, md_tensor *x, md_tensor *w, md_tensor *bias) {
  char sx[MD_SHAPE_STR_LEN], sw[MD_SHAPE_STR_LEN];
  if (w->ndim != 2) return md_error("linear: weight must be [out, in], got %s", md_shape_str(w, sw, sizeof sw));
  int64_t outf = w->shape[0], in = w->shape[1];
  if (x->ndim < 1 || x->shape[x->ndim - 1] != in)
    return md_error("linear: weight expects %lld input features, input has shape %s", (long long)in,
                    md_shape_str(x, sx, sizeof sx));
  if (bias && (bias->ndim != 1 || bias->shape[0] != outf))
    return md_error("linear: bias must have %lld elements, got shape %s", (long long)outf,
                    md_shape_str(bias, sx, sizeof sx));
  int64_t shape[MD_MAX_DIMS];
  memcpy(shape, x->shape, sizeof shape);
  shape[x->ndim - 1] = outf;
  md_tensor *y = md_tensor_new(x->ndim, shape);
  if (!y) return MD_ERR;
  int64_t rows = md_shape_numel(x->ndim - 1, x->shape); /* not numel / in: in may be 0 */
  md_linear_forward(md_data(x), md_data(w), bias ? md_data(bias) : NULL, md_data(y), rows, in, outf);
  md_node *n;
  md_tensor *ins[3] = {x, w, bias};
  if (md_record(&n, y, "linear", linear_backward, bias ? 3 : 2, ins) != MD_OK) {
    md_tensor_release(y);
    return MD_ERR;
  }
  if (n) n->iarg[0] = rows, n->iarg[1] = in, n->iarg[2] = outf;
  *out = y;
  return MD_OK;
}

int md_linear(md_tensor **out, md_tensor *x, md_tensor *w, md_tensor *bias) {
  md_tensor *x_ = x, *w_ = w, *bias_ = bias;
  md_plain_scope plain;
  if (md_plain_inputs(&plain, 3, (md_tensor **const[]){&x_, &w_, &bias_}) != MD_OK) return MD_ERR;
  int rc = linear_plain(out, x_, w_, bias_);
  md_plain_release(&plain);
  return rc;
}
