#include "pointwise.h"

#include <assert.h>
#include <math.h>
#include <string.h>

#include "../autograd.h"
#include "vmath.h"
#include "../backend/threads.h"
#include "blocked.h"

/* Below this many elements a parallel region costs more than it saves. */

/* ---- broadcasting ------------------------------------------------------------
 * A plan describes up to three operands in the output's index space: one
 * element stride per dimension, 0 where the operand is broadcast. Size-1
 * dimensions are dropped and dimensions that are contiguous for every
 * operand are merged, so [N,C,H,W] + [N,C,1,1] runs as [N*C, H*W] rows. */
typedef struct {
  int nd;
  int64_t shape[MD_MAX_DIMS];
  int64_t st[3][MD_MAX_DIMS];
} plan;

static void plan_init(plan *p, int ndim, const int64_t *shape, int nin, const md_tensor *const *in) {
  int64_t st[3][MD_MAX_DIMS];
  for (int k = 0; k < nin; k++) {
    int off = ndim - in[k]->ndim;
    int64_t s = 1;
    for (int d = ndim - 1; d >= 0; d--) {
      int64_t sz = d < off ? 1 : in[k]->shape[d - off];
      st[k][d] = sz == 1 ? 0 : s;
      s *= sz;
    }
  }
  p->nd = 0;
  for (int d = 0; d < ndim; d++) {
    if (shape[d] == 1) continue;
    int j = p->nd - 1;
    bool merge = j >= 0;
    for (int k = 0; k < nin && merge; k++) merge = p->st[k][j] == st[k][d] * shape[d];
    if (merge) {
      p->shape[j] *= shape[d];
      for (int k = 0; k < nin; k++) p->st[k][j] = st[k][d];
    } else {
      p->shape[p->nd] = shape[d];
      for (int k = 0; k < nin; k++) p->st[k][p->nd] = st[k][d];
      p->nd++;
    }
  }
  if (p->nd == 0) { /* a single element */
    p->nd = 1;
    p->shape[0] = 1;
    for (int k = 0; k < nin; k++) p->st[k][0] = 0;
  }
}

static inline int64_t plan_row_len(const plan *p) { return p->shape[p->nd - 1]; }

/* Rows are cut into pieces of at most PIECE elements, so that work spreads
 * over the threads even when the plan is one long row (same-shape operands
 * merge into a single row). */
#define PIECE 16384
static inline int64_t pieces_per_row(int64_t len) { return len > PIECE ? (len + PIECE - 1) / PIECE : 1; }

/* Offsets of operand k at the start of output row r. */
static inline int64_t row_offset(const plan *p, int k, int64_t r) {
  int64_t off = 0;
  for (int d = p->nd - 2; d >= 0; d--) {
    off += (r % p->shape[d]) * p->st[k][d];
    r /= p->shape[d];
  }
  return off;
}

int md_broadcast_shape(const char *op, const md_tensor *a, const md_tensor *b, int *ndim, int64_t *shape) {
  int nd = a->ndim > b->ndim ? a->ndim : b->ndim;
  for (int d = 0; d < nd; d++) {
    int da = d - (nd - a->ndim), db = d - (nd - b->ndim);
    int64_t sa = da >= 0 ? a->shape[da] : 1, sb = db >= 0 ? b->shape[db] : 1;
    if (sa != sb && sa != 1 && sb != 1) {
      char ba[MD_SHAPE_STR_LEN], bb[MD_SHAPE_STR_LEN];
      return md_error("%s: shapes %s and %s cannot broadcast", op, md_shape_str(a, ba, sizeof ba),
                      md_shape_str(b, bb, sizeof bb));
    }
    shape[d] = sa == 1 ? sb : sa;
  }
  *ndim = nd;
  return MD_OK;
}

/* ---- binary ops ------------------------------------------------------------------ */

/* each name tied to its enum value; the assert catches an op added to one and not the other */
static const char *const binary_names[] = {
    [MD_ADD] = "add", [MD_SUB] = "sub", [MD_MUL] = "mul", [MD_DIV] = "div", [MD_POW] = "pow",
    [MD_MAXIMUM] = "maximum", [MD_MINIMUM] = "minimum", [MD_EQ] = "eq", [MD_NE] = "ne",
    [MD_LT] = "lt", [MD_LE] = "le", [MD_GT] = "gt", [MD_GE] = "ge"};
static_assert(sizeof binary_names / sizeof *binary_names == MD_BINARY_COUNT, "a binary op without a name");
const char *md_binary_name(md_binary_op op) { return binary_names[op]; }

/* One row of o = a op b, with element strides sa, sb (0: broadcast). Called
 * through binary_row, which passes the common strides as constants so that
 * the compiler emits vector code for them. */
static inline void binary_row_strided(md_binary_op op, const float *a, int64_t sa, const float *b, int64_t sb,
                                      float *o, int64_t n) {
  switch (op) {
  case MD_ADD: for (int64_t i = 0; i < n; i++) o[i] = a[i * sa] + b[i * sb]; break;
  case MD_SUB: for (int64_t i = 0; i < n; i++) o[i] = a[i * sa] - b[i * sb]; break;
  case MD_MUL: for (int64_t i = 0; i < n; i++) o[i] = a[i * sa] * b[i * sb]; break;
  case MD_DIV: for (int64_t i = 0; i < n; i++) o[i] = a[i * sa] / b[i * sb]; break;
  case MD_POW: for (int64_t i = 0; i < n; i++) o[i] = powf(a[i * sa], b[i * sb]); break;
  case MD_MAXIMUM: for (int64_t i = 0; i < n; i++) o[i] = fmaxf(a[i * sa], b[i * sb]); break;
  case MD_MINIMUM: for (int64_t i = 0; i < n; i++) o[i] = fminf(a[i * sa], b[i * sb]); break;
  case MD_EQ: for (int64_t i = 0; i < n; i++) o[i] = a[i * sa] == b[i * sb]; break;
  case MD_NE: for (int64_t i = 0; i < n; i++) o[i] = a[i * sa] != b[i * sb]; break;
  case MD_LT: for (int64_t i = 0; i < n; i++) o[i] = a[i * sa] < b[i * sb]; break;
  case MD_LE: for (int64_t i = 0; i < n; i++) o[i] = a[i * sa] <= b[i * sb]; break;
  case MD_GT: for (int64_t i = 0; i < n; i++) o[i] = a[i * sa] > b[i * sb]; break;
  case MD_GE: for (int64_t i = 0; i < n; i++) o[i] = a[i * sa] >= b[i * sb]; break;
  case MD_BINARY_COUNT: break;
  }
}

static void binary_row(md_binary_op op, const float *a, int64_t sa, const float *b, int64_t sb, float *o,
                       int64_t n) {
  if (sa == 1 && sb == 1) binary_row_strided(op, a, 1, b, 1, o, n);
  else if (sa == 1 && sb == 0) binary_row_strided(op, a, 1, b, 0, o, n);
  else if (sa == 0 && sb == 1) binary_row_strided(op, a, 0, b, 1, o, n);
  else binary_row_strided(op, a, sa, b, sb, o, n);
}

/* d(a op b)/d(operand k) at element i */
static inline float binary_partial(md_binary_op op, int k, float ai, float bi) {
  switch (op) {
  case MD_ADD: return 1.0f;
  case MD_SUB: return k == 0 ? 1.0f : -1.0f;
  case MD_MUL: return k == 0 ? bi : ai;
  case MD_DIV: return k == 0 ? 1.0f / bi : -ai / (bi * bi);
  case MD_POW: return k == 0 ? bi * powf(ai, bi - 1.0f) : powf(ai, bi) * logf(ai);
  case MD_MAXIMUM:
  case MD_MINIMUM: {
    /* the larger (smaller) operand takes the gradient; a tie splits it */
    float mine = k == 0 ? ai : bi, other = k == 0 ? bi : ai;
    bool wins = op == MD_MAXIMUM ? mine > other : mine < other;
    return wins ? 1.0f : mine == other ? 0.5f : 0.0f;
  }
  default: return 0.0f; /* comparisons have no gradient */
  }
}

/* d[i*sd] += g[i] * d(a op b)/d(operand k), or = with assign. With sd == 0
 * the row reduces into d[0] (never assigned). Strides are passed as
 * constants by binary_grad_row. */
static inline void binary_grad_row_strided(md_binary_op op, int k, const float *a, int64_t sa, const float *b,
                                           int64_t sb, const float *g, float *d, int64_t sd, int64_t n,
                                           bool assign) {
  if (sd == 0) {
    float acc = 0;
#pragma omp simd reduction(+ : acc)
    for (int64_t i = 0; i < n; i++) acc += g[i] * binary_partial(op, k, a[i * sa], b[i * sb]);
    d[0] += acc;
  } else if (assign && (op == MD_ADD || (op == MD_SUB && k == 0))) {
    for (int64_t i = 0; i < n; i++) d[i * sd] = g[i];
  } else if (assign) {
    for (int64_t i = 0; i < n; i++) d[i * sd] = g[i] * binary_partial(op, k, a[i * sa], b[i * sb]);
  } else if (op == MD_ADD || (op == MD_SUB && k == 0)) {
    for (int64_t i = 0; i < n; i++) d[i * sd] += g[i];
  } else {
    for (int64_t i = 0; i < n; i++) d[i * sd] += g[i] * binary_partial(op, k, a[i * sa], b[i * sb]);
  }
}

static void binary_grad_row(md_binary_op op, int k, const float *a, int64_t sa, const float *b, int64_t sb,
                            const float *g, float *d, int64_t sd, int64_t n, bool assign) {
  if (sa == 1 && sb == 1 && sd == 1) binary_grad_row_strided(op, k, a, 1, b, 1, g, d, 1, n, assign);
  else if (sd == 0) binary_grad_row_strided(op, k, a, sa, b, sb, g, d, 0, n, false);
  else binary_grad_row_strided(op, k, a, sa, b, sb, g, d, sd, n, assign);
}

/* A fresh gradient (see md_backward_fn) is assigned where each element gets
 * one term, and zeroed first where rows reduce into it: the operand was
 * broadcast, or its row stride is 0 (a single element, 0-dim or not). */
static int binary_backward(md_node *n, const float *dout, float *const *din) {
  const md_tensor *ins[2] = {n->inputs[0], n->inputs[1]};
  plan p;
  plan_init(&p, n->out_ndim, n->out_shape, 2, ins);
  const float *a = md_data(ins[0]), *b = md_data(ins[1]);
  int64_t len = plan_row_len(&p), rows = n->out_numel / (len ? len : 1);
  for (int k = 0; k < 2; k++) {
    if (!din[k]) continue;
    float *d = din[k];
    bool broadcast = ins[k]->numel != n->out_numel, reduces = broadcast || p.st[k][p.nd - 1] == 0;
    if (n->fresh[k] && reduces) memset(d, 0, (size_t)ins[k]->numel * sizeof(float));
    bool assign = n->fresh[k] && !reduces;
    /* pieces write disjoint gradient elements only when operand k is not broadcast */
    bool par = !broadcast && n->out_numel > MD_PAR_MIN;
    int64_t per = par ? pieces_per_row(len) : 1, piece = par ? (len + per - 1) / per : len;
    int64_t sa = p.st[0][p.nd - 1], sb = p.st[1][p.nd - 1], sd = p.st[k][p.nd - 1];
#pragma omp parallel for if (par) schedule(static)
    for (int64_t u = 0; u < rows * per; u++) {
      int64_t r = u / per, at = (u % per) * piece, cnt = len - at < piece ? len - at : piece;
      binary_grad_row((md_binary_op)n->iarg[0], k, a + row_offset(&p, 0, r) + at * sa, sa,
                      b + row_offset(&p, 1, r) + at * sb, sb, dout + r * len + at, d + row_offset(&p, k, r) + at * sd,
                      sd, cnt, assign);
    }
  }
  return MD_OK;
}

static void binary_run(md_binary_op op, const plan *p, const float *a, const float *b, float *o,
                       int64_t numel) {
  int64_t len = plan_row_len(p), rows = len ? numel / len : 0;
  int64_t per = pieces_per_row(len), piece = (len + per - 1) / per;
  int64_t sa = p->st[0][p->nd - 1], sb = p->st[1][p->nd - 1];
#pragma omp parallel for if (numel > MD_PAR_MIN) schedule(static)
  for (int64_t u = 0; u < rows * per; u++) {
    int64_t r = u / per, at = (u % per) * piece, cnt = len - at < piece ? len - at : piece;
    binary_row(op, a + row_offset(p, 0, r) + at * sa, sa, b + row_offset(p, 1, r) + at * sb, sb, o + r * len + at, cnt);
  }
}

/* Two blocked tensors of one shape combine elementwise in their layout; any
 * other mix of layouts is combined in plain layout. */
static bool same_layout_elementwise(const md_tensor *a, const md_tensor *b) {
  return md_is_blocked(a) == md_is_blocked(b) && (!md_is_blocked(a) || md_same_shape(a, b));
}

static int binary_in_layout(md_tensor **out, md_binary_op op, md_tensor *a, md_tensor *b) {
  int nd;
  int64_t shape[MD_MAX_DIMS];
  if (md_broadcast_shape(binary_names[op], a, b, &nd, shape) != MD_OK) return MD_ERR;
  bool blocked = md_is_blocked(a); /* both or neither (same_layout_elementwise) */
  md_tensor *o = md_tensor_new_layout(nd, shape, blocked ? MD_LAYOUT_BLOCKED : MD_LAYOUT_PLAIN);
  if (!o) return MD_ERR;
  plan p;
  plan_init(&p, nd, shape, 2, (const md_tensor *[]){a, b});
  binary_run(op, &p, md_data(a), md_data(b), md_data(o), o->numel);
  if (op < MD_EQ) {
    md_node *n;
    if (md_record(&n, o, binary_names[op], binary_backward, 2, (md_tensor *[]){a, b}) != MD_OK) {
      md_tensor_release(o);
      return MD_ERR;
    }
    if (n) n->iarg[0] = op, n->assigns = true;
  }
  *out = o;
  return MD_OK;
}

int md_binary(md_tensor **out, md_binary_op op, md_tensor *a, md_tensor *b) {
  if (same_layout_elementwise(a, b)) return binary_in_layout(out, op, a, b);
  md_plain_scope plain;
  if (md_plain_inputs(&plain, 2, (md_tensor **const[]){&a, &b}) != MD_OK) return MD_ERR;
  int rc = binary_in_layout(out, op, a, b);
  md_plain_release(&plain);
  return rc;
}

int md_binary_(md_binary_op op, md_tensor *a, const md_tensor *b) {
  int nd;
  int64_t shape[MD_MAX_DIMS];
  if (md_broadcast_shape(binary_names[op], a, b, &nd, shape) != MD_OK) return MD_ERR;
  if (nd != a->ndim || md_shape_numel(nd, shape) != a->numel) {
    char ba[MD_SHAPE_STR_LEN], bb[MD_SHAPE_STR_LEN];
    return md_error("%s_: in-place result must keep the shape %s, but %s broadcasts it", binary_names[op],
                    md_shape_str(a, ba, sizeof ba), md_shape_str(b, bb, sizeof bb));
  }
  if (md_begin_inplace(a, binary_names[op]) != MD_OK) return MD_ERR;
  md_tensor *bp = NULL; /* b's values in a's layout */
  if (same_layout_elementwise(a, b)) md_tensor_retain(bp = (md_tensor *)b);
  else if (md_make_plain_inplace(a) != MD_OK || md_plain_values(&bp, b) != MD_OK) return MD_ERR;
  plan p;
  plan_init(&p, nd, shape, 2, (const md_tensor *[]){a, bp});
  binary_run(op, &p, md_data(a), md_data(bp), md_data(a), a->numel);
  md_tensor_release(bp);
  return MD_OK;
}

/* ---- unary ops ------------------------------------------------------------------ */

static const char *const unary_names[] = {
    [MD_NEG] = "neg", [MD_SQRT] = "sqrt", [MD_RSQRT] = "rsqrt", [MD_EXP] = "exp", [MD_LOG] = "log",
    [MD_ABS] = "abs", [MD_SIN] = "sin", [MD_COS] = "cos", [MD_SIGMOID] = "sigmoid", [MD_TANH] = "tanh",
    [MD_RELU] = "relu", [MD_SILU] = "silu", [MD_AFFINE] = "affine", [MD_RECIP] = "reciprocal",
    [MD_POWS] = "pow", [MD_CLAMP] = "clamp"};
static_assert(sizeof unary_names / sizeof *unary_names == MD_UNARY_COUNT, "a unary op without a name");
const char *md_unary_name(md_unary_op op) { return unary_names[op]; }


static void unary_forward(md_unary_op op, const float *x, float *y, int64_t n, float p0, float p1) {
  switch (op) {
#define PAR _Pragma("omp parallel for if (n > MD_PAR_MIN) schedule(static)")
  case MD_NEG: PAR for (int64_t i = 0; i < n; i++) y[i] = -x[i]; break;
  case MD_SQRT: PAR for (int64_t i = 0; i < n; i++) y[i] = sqrtf(x[i]); break;
  case MD_RSQRT: PAR for (int64_t i = 0; i < n; i++) y[i] = 1.0f / sqrtf(x[i]); break;
  case MD_EXP: PAR for (int64_t i = 0; i < n; i++) y[i] = expf(x[i]); break;
  case MD_LOG: PAR for (int64_t i = 0; i < n; i++) y[i] = logf(x[i]); break;
  case MD_ABS: PAR for (int64_t i = 0; i < n; i++) y[i] = fabsf(x[i]); break;
  case MD_SIN: PAR for (int64_t i = 0; i < n; i++) y[i] = sinf(x[i]); break;
  case MD_COS: PAR for (int64_t i = 0; i < n; i++) y[i] = cosf(x[i]); break;
  case MD_SIGMOID: PAR for (int64_t i = 0; i < n; i++) y[i] = md_sigmoidf(x[i]); break;
  case MD_TANH: PAR for (int64_t i = 0; i < n; i++) y[i] = tanhf(x[i]); break;
  case MD_RELU: PAR for (int64_t i = 0; i < n; i++) y[i] = x[i] > 0 ? x[i] : 0.0f; break;
  case MD_SILU: PAR for (int64_t i = 0; i < n; i++) y[i] = x[i] * md_sigmoidf(x[i]); break;
  case MD_AFFINE: PAR for (int64_t i = 0; i < n; i++) y[i] = p0 * x[i] + p1; break;
  case MD_RECIP: PAR for (int64_t i = 0; i < n; i++) y[i] = p0 / x[i]; break;
  case MD_POWS:
    if (p0 == 2.0f) { PAR for (int64_t i = 0; i < n; i++) y[i] = x[i] * x[i]; }
    else { PAR for (int64_t i = 0; i < n; i++) y[i] = powf(x[i], p0); }
    break;
  case MD_CLAMP: PAR for (int64_t i = 0; i < n; i++) y[i] = fminf(fmaxf(x[i], p0), p1); break;
#undef PAR
  default: break;
  }
}

/* dx += g * dy/dx, from the input x and the output y. */
static void unary_backward_kernel(md_unary_op op, const float *x, const float *y, const float *g,
                                  float *dx, int64_t n, float p0, float p1) {
#pragma omp parallel for if (n > MD_PAR_MIN) schedule(static)
  for (int64_t i = 0; i < n; i++) {
    float d;
    switch (op) {
    case MD_NEG: d = -1.0f; break;
    case MD_SQRT: d = 0.5f / y[i]; break;
    case MD_RSQRT: d = -0.5f * y[i] * y[i] * y[i]; break;
    case MD_EXP: d = y[i]; break;
    case MD_LOG: d = 1.0f / x[i]; break;
    case MD_ABS: d = x[i] > 0 ? 1.0f : x[i] < 0 ? -1.0f : 0.0f; break;
    case MD_SIN: d = cosf(x[i]); break;
    case MD_COS: d = -sinf(x[i]); break;
    case MD_SIGMOID: d = y[i] * (1.0f - y[i]); break;
    case MD_TANH: d = 1.0f - y[i] * y[i]; break;
    case MD_RELU: d = x[i] > 0 ? 1.0f : 0.0f; break;
    case MD_SILU: {
      float s = md_sigmoidf(x[i]);
      d = s * (1.0f + x[i] * (1.0f - s));
      break;
    }
    case MD_AFFINE: d = p0; break;
    case MD_RECIP: d = -y[i] / x[i]; break;
    case MD_POWS: d = p0 == 2.0f ? 2.0f * x[i] : p0 * powf(x[i], p0 - 1.0f); break;
    case MD_CLAMP: d = x[i] >= p0 && x[i] <= p1 ? 1.0f : 0.0f; break;
    default: d = 0.0f; break;
    }
    dx[i] += g[i] * d;
  }
}

static int unary_backward(md_node *n, const float *dout, float *const *din) {
  if (!din[0]) return MD_OK;
  unary_backward_kernel((md_unary_op)n->iarg[0], md_data(n->inputs[0]), md_data(n->saved[0]), dout,
                        din[0], n->out_numel, n->farg[0], n->farg[1]);
  return MD_OK;
}

int md_unary(md_tensor **out, md_unary_op op, md_tensor *x, float p0, float p1) {
  md_tensor *y = md_tensor_empty_like(x);
  if (!y) return MD_ERR;
  unary_forward(op, md_data(x), md_data(y), x->numel, p0, p1);
  md_node *n;
  if (md_record(&n, y, unary_names[op], unary_backward, 1, &x) != MD_OK ||
      (n && md_node_save(n, 0, y) != MD_OK)) {
    md_tensor_release(y);
    return MD_ERR;
  }
  if (n) {
    n->iarg[0] = op;
    n->farg[0] = p0;
    n->farg[1] = p1;
  }
  *out = y;
  return MD_OK;
}

int md_unary_(md_unary_op op, md_tensor *x, float p0, float p1) {
  if (md_begin_inplace(x, unary_names[op]) != MD_OK) return MD_ERR;
  unary_forward(op, md_data(x), md_data(x), x->numel, p0, p1);
  return MD_OK;
}

/* ---- where ------------------------------------------------------------------------ */

static int where_backward(md_node *n, const float *dout, float *const *din) {
  const md_tensor *ins[3] = {n->inputs[0], n->inputs[1], n->inputs[2]};
  plan p;
  plan_init(&p, n->out_ndim, n->out_shape, 3, ins);
  const float *c = md_data(ins[0]);
  int64_t len = plan_row_len(&p), rows = n->out_numel / (len ? len : 1);
  for (int k = 1; k <= 2; k++) {
    if (!din[k]) continue;
    for (int64_t r = 0; r < rows; r++) {
      const float *cr = c + row_offset(&p, 0, r), *g = dout + r * len;
      float *d = din[k] + row_offset(&p, k, r);
      int64_t sc = p.st[0][p.nd - 1], sd = p.st[k][p.nd - 1];
      for (int64_t i = 0; i < len; i++)
        if ((cr[i * sc] != 0) == (k == 1)) d[i * sd] += g[i];
    }
  }
  return MD_OK;
}

static int where_plain(md_tensor **out, md_tensor *cond, md_tensor *a, md_tensor *b) {
  int nd, nd2;
  int64_t s1[MD_MAX_DIMS], shape[MD_MAX_DIMS];
  if (md_broadcast_shape("where", a, b, &nd, s1) != MD_OK) return MD_ERR;
  md_tensor ab = {.ndim = nd, .numel = md_shape_numel(nd, s1)};
  memcpy(ab.shape, s1, sizeof s1);
  if (md_broadcast_shape("where", cond, &ab, &nd2, shape) != MD_OK) return MD_ERR;
  md_tensor *o = md_tensor_new(nd2, shape);
  if (!o) return MD_ERR;
  plan p;
  plan_init(&p, nd2, shape, 3, (const md_tensor *[]){cond, a, b});
  int64_t len = plan_row_len(&p), rows = len ? o->numel / len : 0;
  const float *c = md_data(cond), *pa = md_data(a), *pb = md_data(b);
  float *po = md_data(o);
  for (int64_t r = 0; r < rows; r++) {
    const float *cr = c + row_offset(&p, 0, r), *ar = pa + row_offset(&p, 1, r), *br = pb + row_offset(&p, 2, r);
    int64_t sc = p.st[0][p.nd - 1], sa = p.st[1][p.nd - 1], sb = p.st[2][p.nd - 1];
    for (int64_t i = 0; i < len; i++) po[r * len + i] = cr[i * sc] != 0 ? ar[i * sa] : br[i * sb];
  }
  md_node *n;
  if (md_record(&n, o, "where", where_backward, 3, (md_tensor *[]){cond, a, b}) != MD_OK) {
    md_tensor_release(o);
    return MD_ERR;
  }
  *out = o;
  return MD_OK;
}

int md_where(md_tensor **out, md_tensor *cond, md_tensor *a, md_tensor *b) {
  md_tensor *cond_ = cond, *a_ = a, *b_ = b;
  md_plain_scope plain;
  if (md_plain_inputs(&plain, 3, (md_tensor **const[]){&cond_, &a_, &b_}) != MD_OK) return MD_ERR;
  int rc = where_plain(out, cond_, a_, b_);
  md_plain_release(&plain);
  return rc;
}
