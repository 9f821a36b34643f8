#include "conv_dnnl.h"

#ifdef MD_HAVE_DNNL

#include <oneapi/dnnl/dnnl.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "../alloc.h"
#include "../error.h"

enum { PASS_FORWARD, PASS_FORWARD_NOBIAS, PASS_BACKWARD_DATA, PASS_BACKWARD_WEIGHTS, PASS_BACKWARD_WEIGHTS_NOBIAS };

/* One argument of a primitive: the caller's plain buffer (user) and the
 * layout the primitive wants. Inputs are reordered in when the two differ;
 * outputs are reordered out, and accumulating outputs always go through a
 * reorder with a sum post-op (dst = reorder(src) + dst). */
typedef struct {
  int arg;
  dnnl_memory_desc_t user, want;
  bool output, accumulate;
  dnnl_primitive_t reorder; /* NULL when the layouts agree and no sum is needed */
} operand;

typedef struct {
  md_conv_shape s;
  int kind;
  int nthreads; /* oneDNN splits the work at creation for this many threads */
  bool winograd_allowed;
  bool bf16; /* bf16 inputs (x, w, dy) with fp32 accumulation and outputs */
  bool assign; /* backward passes: outputs overwritten, not accumulated into */
  uint64_t last_used;
  dnnl_primitive_t prim;
  int nops;
  operand op[4];
} pass;

/* A training step of the reference U-Net uses about 70 passes, sampling
 * adds the forward passes at other batch sizes: the cache holds all of
 * them, and evicts the least recently used when full. */
#define CACHE_SIZE 256
static pass *cache[CACHE_SIZE];
static uint64_t uses;
static dnnl_engine_t engine;
static dnnl_stream_t stream;

static int fail(const char *what, dnnl_status_t st) {
  return md_error("conv2d (oneDNN): %s failed with status %d", what, (int)st);
}

static int init_engine(void) {
  if (engine) return MD_OK;
  dnnl_status_t st = dnnl_engine_create(&engine, dnnl_cpu, 0);
  if (st != dnnl_success) return fail("engine creation", st);
  st = dnnl_stream_create(&stream, engine, dnnl_stream_default_flags);
  if (st != dnnl_success) return fail("stream creation", st);
  return MD_OK;
}

static void pass_free(pass *p) {
  if (!p) return;
  if (p->prim) dnnl_primitive_destroy(p->prim);
  for (int i = 0; i < p->nops; i++)
    if (p->op[i].reorder) dnnl_primitive_destroy(p->op[i].reorder);
  free(p);
}

/* Weights reordered into a primitive's layout, kept while the weights do
 * not change (their storage id and version, see md_conv_shape): sampling
 * runs the same weights at every step, and at batch 1 reordering them
 * costs about as much as the convolution. */
typedef struct {
  uint64_t id;
  uint32_t version;
  dnnl_memory_desc_t want;
  float *buf;
  int64_t floats;
  uint64_t last_used;
} kept_weights;

#define KEPT_SIZE 128
static kept_weights kept[KEPT_SIZE];

static void kept_clear(void) {
  for (int i = 0; i < KEPT_SIZE; i++) {
    md_free_floats(kept[i].buf, kept[i].floats);
    kept[i] = (kept_weights){0};
  }
}

/* The kept copy of weights (id, version) in layout `want`, or a slot to
 * reorder them into (*fresh set): an older version's, else the least
 * recently used. NULL when out of memory. */
static float *kept_slot(uint64_t id, uint32_t version, const dnnl_memory_desc_t *want, bool *fresh) {
  int victim = 0;
  for (int i = 0; i < KEPT_SIZE; i++) {
    kept_weights *k = &kept[i];
    if (k->buf && k->id == id && dnnl_memory_desc_equal(&k->want, want)) {
      k->last_used = ++uses;
      *fresh = k->version != version;
      k->version = version;
      return k->buf;
    }
    if (!k->buf || (kept[victim].buf && k->last_used < kept[victim].last_used)) victim = i;
  }
  kept_weights *k = &kept[victim];
  md_free_floats(k->buf, k->floats);
  int64_t floats = (int64_t)(dnnl_memory_desc_get_size(want) + 3) / 4;
  *k = (kept_weights){.id = id, .version = version, .want = *want, .buf = md_alloc_floats(floats), .floats = floats,
                      .last_used = ++uses};
  if (!k->buf) *k = (kept_weights){0};
  *fresh = true;
  return k->buf;
}

void md_dnnl_conv_clear_cache(void) {
  for (int i = 0; i < CACHE_SIZE; i++) {
    pass_free(cache[i]);
    cache[i] = NULL;
  }
  kept_clear();
}

static void typed_md(dnnl_memory_desc_t *md, int nd, const int64_t *dims, dnnl_data_type_t type,
                     dnnl_format_tag_t tag) {
  dnnl_dims_t d;
  for (int i = 0; i < nd; i++) d[i] = dims[i];
  dnnl_memory_desc_init_by_tag(md, nd, d, type, tag);
}

static void plain_md(dnnl_memory_desc_t *md, int nd, const int64_t *dims, dnnl_format_tag_t tag) {
  typed_md(md, nd, dims, dnnl_f32, tag);
}

/* Fills in the operand and creates the reorder it needs. */
static int add_operand(pass *p, dnnl_primitive_desc_t pd, int arg, dnnl_query_t query, int index,
                       const dnnl_memory_desc_t *user, bool output, bool accumulate) {
  operand *o = &p->op[p->nops++];
  o->arg = arg;
  o->user = *user;
  o->want = *dnnl_primitive_desc_query_md(pd, query, index);
  o->output = output;
  o->accumulate = accumulate;
  o->reorder = NULL;
  if (!accumulate && dnnl_memory_desc_equal(&o->user, &o->want)) return MD_OK;
  dnnl_primitive_attr_t attr = NULL;
  dnnl_post_ops_t ops = NULL;
  if (accumulate) {
    dnnl_primitive_attr_create(&attr);
    dnnl_post_ops_create(&ops);
    dnnl_post_ops_append_sum(ops, 1.0f);
    dnnl_primitive_attr_set_post_ops(attr, ops);
  }
  dnnl_primitive_desc_t rpd;
  const dnnl_memory_desc_t *from = output ? &o->want : &o->user, *to = output ? &o->user : &o->want;
  dnnl_status_t st = dnnl_reorder_primitive_desc_create(&rpd, from, engine, to, engine, attr);
  if (ops) dnnl_post_ops_destroy(ops);
  if (attr) dnnl_primitive_attr_destroy(attr);
  if (st != dnnl_success) return fail("reorder", st);
  st = dnnl_primitive_create(&o->reorder, rpd);
  dnnl_primitive_desc_destroy(rpd);
  return st == dnnl_success ? MD_OK : fail("reorder creation", st);
}

/* Winograd F(4x4, 3x3) (oneDNN's jit_wino_4x3) does a quarter of the
 * multiplications of a direct 3x3 convolution; on the U-Net's layers at
 * batch 128 it runs 1.4-2.3x faster than the direct kernel in all three
 * passes. It needs 16-channel blocks, and pays only with enough output
 * positions: at batch 1 the direct kernel is as fast or faster. */
static bool winograd_applies(const md_conv_shape *s) {
  return s->k == 3 && s->stride == 1 && s->pad == 1 && s->c % 16 == 0 && s->o % 16 == 0 &&
         s->n * s->ho * s->wo >= 4096;
}

static bool same_shape(const md_conv_shape *a, const md_conv_shape *b) {
  return a->n == b->n && a->c == b->c && a->h == b->h && a->w == b->w && a->o == b->o && a->k == b->k &&
         a->stride == b->stride && a->pad == b->pad && a->x_layout == b->x_layout && a->y_layout == b->y_layout;
}

static dnnl_format_tag_t tag_of(md_layout layout) { return layout == MD_LAYOUT_BLOCKED ? dnnl_nChw16c : dnnl_nchw; }

/* Builds the primitive for one pass. The forward descriptor is always made:
 * it is the hint the backward passes need. Winograd falls back to the
 * direct algorithm when oneDNN has no Winograd kernel for this machine.
 * In bf16 the pass reads x, w and dy as bf16 (the input reorders convert
 * them) and writes y, dx, dw and db in fp32: products of bf16 pairs summed
 * in fp32 (vdpbf16ps), so only the inputs are rounded. */
static int build(pass *p) {
  const md_conv_shape *s = &p->s;
  int64_t xd[4] = {s->n, s->c, s->h, s->w}, wd[4] = {s->o, s->c, s->k, s->k}, yd[4] = {s->n, s->o, s->ho, s->wo};
  int64_t bd[1] = {s->o};
  /* *_in: as a pass reads it (bf16 in bf16), *_out: as it writes it (fp32) */
  dnnl_memory_desc_t x_in, x_out, w_in, w_out, b_any, y_in, y_out, x_user, w_user, b_user, y_user;
  dnnl_data_type_t in = p->bf16 ? dnnl_bf16 : dnnl_f32;
  dnnl_format_tag_t any = dnnl_format_tag_any;
  typed_md(&x_in, 4, xd, in, any), typed_md(&x_out, 4, xd, dnnl_f32, any);
  typed_md(&w_in, 4, wd, in, any), typed_md(&w_out, 4, wd, dnnl_f32, any);
  typed_md(&y_in, 4, yd, in, any), typed_md(&y_out, 4, yd, dnnl_f32, any);
  typed_md(&b_any, 1, bd, dnnl_f32, any);
  bool forward = p->kind == PASS_FORWARD || p->kind == PASS_FORWARD_NOBIAS;
  plain_md(&x_user, 4, xd, tag_of(s->x_layout)), plain_md(&w_user, 4, wd, dnnl_oihw);
  plain_md(&b_user, 1, bd, dnnl_x), plain_md(&y_user, 4, yd, tag_of(s->y_layout));
  dnnl_dims_t strides = {s->stride, s->stride}, pad = {s->pad, s->pad};
  bool bias = p->kind == PASS_FORWARD || p->kind == PASS_BACKWARD_WEIGHTS;

  dnnl_convolution_desc_t fd;
  dnnl_primitive_desc_t fpd = NULL, pd = NULL;
  dnnl_alg_kind_t alg = p->winograd_allowed && !p->bf16 && winograd_applies(s) ? dnnl_convolution_winograd
                                                                                : dnnl_convolution_direct;
  dnnl_status_t st;
  for (;;) {
    /* the backward passes' hint reads y as they read dy */
    st = dnnl_convolution_forward_desc_init(&fd, dnnl_forward_training, alg, &x_in, &w_in,
                                            p->kind == PASS_FORWARD ? &b_any : NULL, forward ? &y_out : &y_in,
                                            strides, pad, pad);
    if (st == dnnl_success) st = dnnl_primitive_desc_create(&fpd, &fd, NULL, engine, NULL);
    if (st == dnnl_success || alg == dnnl_convolution_direct) break;
    alg = dnnl_convolution_direct;
  }
  if (st != dnnl_success) return fail("forward descriptor", st);

  int rc = MD_OK;
  if (forward) {
    pd = fpd;
    fpd = NULL;
    rc = add_operand(p, pd, DNNL_ARG_SRC, dnnl_query_src_md, 0, &x_user, false, false);
    if (rc == MD_OK) rc = add_operand(p, pd, DNNL_ARG_WEIGHTS, dnnl_query_weights_md, 0, &w_user, false, false);
    if (rc == MD_OK && bias) rc = add_operand(p, pd, DNNL_ARG_BIAS, dnnl_query_weights_md, 1, &b_user, false, false);
    if (rc == MD_OK) rc = add_operand(p, pd, DNNL_ARG_DST, dnnl_query_dst_md, 0, &y_user, true, false);
  } else if (p->kind == PASS_BACKWARD_DATA) {
    dnnl_convolution_desc_t bdd;
    st = dnnl_convolution_backward_data_desc_init(&bdd, alg, &x_out, &w_in, &y_in, strides, pad, pad);
    if (st == dnnl_success) st = dnnl_primitive_desc_create(&pd, &bdd, NULL, engine, fpd);
    if (st != dnnl_success) rc = fail("backward-data descriptor", st);
    if (rc == MD_OK) rc = add_operand(p, pd, DNNL_ARG_DIFF_DST, dnnl_query_diff_dst_md, 0, &y_user, false, false);
    if (rc == MD_OK) rc = add_operand(p, pd, DNNL_ARG_WEIGHTS, dnnl_query_weights_md, 0, &w_user, false, false);
    if (rc == MD_OK)
      rc = add_operand(p, pd, DNNL_ARG_DIFF_SRC, dnnl_query_diff_src_md, 0, &x_user, true, !p->assign);
  } else {
    dnnl_convolution_desc_t bwd;
    st = dnnl_convolution_backward_weights_desc_init(&bwd, alg, &x_in, &w_out, bias ? &b_any : NULL, &y_in,
                                                     strides, pad, pad);
    if (st == dnnl_success) st = dnnl_primitive_desc_create(&pd, &bwd, NULL, engine, fpd);
    if (st != dnnl_success) rc = fail("backward-weights descriptor", st);
    if (rc == MD_OK) rc = add_operand(p, pd, DNNL_ARG_SRC, dnnl_query_src_md, 0, &x_user, false, false);
    if (rc == MD_OK) rc = add_operand(p, pd, DNNL_ARG_DIFF_DST, dnnl_query_diff_dst_md, 0, &y_user, false, false);
    if (rc == MD_OK)
      rc = add_operand(p, pd, DNNL_ARG_DIFF_WEIGHTS, dnnl_query_diff_weights_md, 0, &w_user, true, !p->assign);
    if (rc == MD_OK && bias)
      rc = add_operand(p, pd, DNNL_ARG_DIFF_BIAS, dnnl_query_diff_weights_md, 1, &b_user, true, !p->assign);
  }
  if (rc == MD_OK) {
    st = dnnl_primitive_create(&p->prim, pd);
    if (st != dnnl_success) rc = fail("primitive creation", st);
  }
  if (fpd) dnnl_primitive_desc_destroy(fpd);
  if (pd) dnnl_primitive_desc_destroy(pd);
  return rc;
}

static pass *lookup(const md_conv_shape *s, int kind, bool winograd, bool bf16, bool assign) {
  int nthreads = omp_get_max_threads(); /* md.set_num_threads must reach cached primitives too */
  int victim = 0;
  for (int i = 0; i < CACHE_SIZE; i++) {
    pass *c = cache[i];
    if (c && c->kind == kind && c->nthreads == nthreads && c->winograd_allowed == winograd && c->bf16 == bf16 &&
        c->assign == assign &&
        same_shape(&c->s, s)) {
      c->last_used = ++uses;
      return c;
    }
    if (!c || (cache[victim] && c->last_used < cache[victim]->last_used)) victim = i;
  }
  if (init_engine() != MD_OK) return NULL;
  pass *p = calloc(1, sizeof *p);
  if (!p) {
    md_error("conv2d (oneDNN): out of memory");
    return NULL;
  }
  p->s = *s;
  p->kind = kind;
  p->nthreads = nthreads;
  p->winograd_allowed = winograd;
  p->bf16 = bf16;
  p->assign = assign;
  p->last_used = ++uses;
  if (build(p) != MD_OK) {
    pass_free(p);
    return NULL;
  }
  pass_free(cache[victim]);
  cache[victim] = p;
  return p;
}

/* Runs a pass on the callers' buffers (in the order of p->op); s names the
 * weights of this call. */
static int run(pass *p, const md_conv_shape *s, void *const *ptrs) {
  dnnl_memory_t user[4] = {0}, mem[4] = {0};
  float *tmp[4] = {0};
  int64_t tmp_floats[4] = {0};
  dnnl_exec_arg_t args[4];
  int rc = MD_OK;
  dnnl_status_t st = dnnl_success;
  for (int i = 0; i < p->nops && rc == MD_OK; i++) {
    operand *o = &p->op[i];
    st = dnnl_memory_create(&user[i], &o->user, engine, ptrs[i]);
    bool need_reorder = o->reorder != NULL;
    if (st == dnnl_success && o->reorder && o->arg == DNNL_ARG_WEIGHTS && s->w_id) {
      float *buf = kept_slot(s->w_id, s->w_version, &o->want, &need_reorder);
      if (!buf) rc = md_error("conv2d (oneDNN): out of memory for reordered weights");
      else st = dnnl_memory_create(&mem[i], &o->want, engine, buf);
    } else if (st == dnnl_success && o->reorder) {
      tmp_floats[i] = (int64_t)(dnnl_memory_desc_get_size(&o->want) + 3) / 4;
      tmp[i] = md_alloc_floats(tmp_floats[i]);
      if (!tmp[i]) rc = md_error("conv2d (oneDNN): out of memory for a reorder buffer");
      else st = dnnl_memory_create(&mem[i], &o->want, engine, tmp[i]);
    }
    if (st != dnnl_success && rc == MD_OK) rc = fail("memory creation", st);
    if (rc != MD_OK) break;
    if (o->reorder && !o->output && need_reorder) {
      dnnl_exec_arg_t ra[2] = {{DNNL_ARG_FROM, user[i]}, {DNNL_ARG_TO, mem[i]}};
      st = dnnl_primitive_execute(o->reorder, stream, 2, ra);
      if (st != dnnl_success) rc = fail("input reorder", st);
    }
    args[i].arg = o->arg;
    args[i].memory = o->reorder ? mem[i] : user[i];
  }
  if (rc == MD_OK) {
    st = dnnl_primitive_execute(p->prim, stream, p->nops, args);
    if (st != dnnl_success) rc = fail("execution", st);
  }
  for (int i = 0; i < p->nops && rc == MD_OK; i++) {
    operand *o = &p->op[i];
    if (!o->output || !o->reorder) continue;
    dnnl_exec_arg_t ra[2] = {{DNNL_ARG_FROM, mem[i]}, {DNNL_ARG_TO, user[i]}};
    st = dnnl_primitive_execute(o->reorder, stream, 2, ra);
    if (st != dnnl_success) rc = fail("output reorder", st);
  }
  dnnl_stream_wait(stream);
  for (int i = 0; i < p->nops; i++) {
    if (user[i]) dnnl_memory_destroy(user[i]);
    if (mem[i]) dnnl_memory_destroy(mem[i]);
    md_free_floats(tmp[i], tmp_floats[i]);
  }
  return rc;
}

int md_dnnl_conv_forward(const md_conv_shape *s, bool winograd, bool bf16, const float *x, const float *w,
                         const float *b, float *y) {
  pass *p = lookup(s, b ? PASS_FORWARD : PASS_FORWARD_NOBIAS, winograd, bf16, true);
  if (!p) return MD_ERR;
  void *with_bias[4] = {(void *)x, (void *)w, (void *)b, y}, *without[3] = {(void *)x, (void *)w, y};
  return run(p, s, b ? with_bias : without);
}

const char *md_dnnl_conv_impl(const md_conv_shape *s, bool winograd, bool bf16) {
  pass *p = lookup(s, PASS_FORWARD, winograd, bf16, true);
  const_dnnl_primitive_desc_t pd;
  const char *impl = NULL;
  if (p && dnnl_primitive_get_primitive_desc(p->prim, &pd) == dnnl_success)
    dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl);
  return impl;
}

int md_dnnl_conv_backward(const md_conv_shape *s, bool winograd, bool bf16, const float *x, const float *w,
                          const float *dy, float *dx, float *dw, float *db, bool assign_dx, bool assign_dwb) {
  if (dx) {
    pass *p = lookup(s, PASS_BACKWARD_DATA, winograd, bf16, assign_dx);
    if (!p) return MD_ERR;
    void *ptrs[3] = {(void *)dy, (void *)w, dx};
    if (run(p, s, ptrs) != MD_OK) return MD_ERR;
  }
  if (dw || db) {
    float *dw_buf = dw, *db_buf = db;
    /* oneDNN computes both together; a missing one goes to scratch */
    if (!dw) dw_buf = calloc((size_t)(s->o * s->c * s->k * s->k), sizeof(float));
    if (!dw_buf) return md_error("conv2d (oneDNN): out of memory");
    pass *p = lookup(s, db ? PASS_BACKWARD_WEIGHTS : PASS_BACKWARD_WEIGHTS_NOBIAS, winograd, bf16, assign_dwb);
    int rc = MD_ERR;
    if (p) {
      void *ptrs[4] = {(void *)x, (void *)dy, dw_buf, db_buf};
      rc = run(p, s, ptrs);
    }
    if (!dw) free(dw_buf);
    if (rc != MD_OK) return MD_ERR;
  }
  return MD_OK;
}

#else

int md_dnnl_conv_forward(const md_conv_shape *s, bool winograd, bool bf16, const float *x, const float *w,
                         const float *b, float *y) {
  return md_error("conv2d: this build has no oneDNN");
}
int md_dnnl_conv_backward(const md_conv_shape *s, bool winograd, bool bf16, const float *x, const float *w,
                          const float *dy, float *dx, float *dw, float *db, bool assign_dx, bool assign_dwb) {
  return md_error("conv2d: this build has no oneDNN");
}
void md_dnnl_conv_clear_cache(void) {}
const char *md_dnnl_conv_impl(const md_conv_shape *s, bool winograd, bool bf16) { return NULL; }

#endif
