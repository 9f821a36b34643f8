/* Helpers shared by the binding files. The binding is thin: check arguments,
 * call the C core, push the result or raise the core's message as a Lua error.
 *
 * Each area (l_tensor.c, l_autograd.c, l_runtime.c, l_ops.c, l_random.c, l_conv.c,
 * l_nn.c, l_io.c, l_image.c, l_json.c, l_optim.c, l_diffusion.c, l_dist.c)
 * exports two NULL-terminated luaL_Reg arrays that moondust.c registers:
 * module functions (md.core.xxx) and tensor methods (t:xxx()). */
#ifndef MD_BINDING_H
#define MD_BINDING_H

#include <lauxlib.h>
#include <lua.h>

#include "../tensor.h"

#define MDL_TENSOR "moondust.Tensor"

/* The tensor at idx, as it is; raises "bad argument #idx (moondust.Tensor
 * expected, got X)". Tensors may be in either layout (see tensor.h): the
 * ops decide what to do with a blocked one (ops/blocked.h), so the binding
 * passes tensors through unchanged. */
md_tensor *mdl_check(lua_State *L, int idx);
/* Like mdl_check, but NULL for nil or none. */
md_tensor *mdl_opt(lua_State *L, int idx);
/* For the few bindings that read a tensor's memory themselves (element
 * access, the float kernels of optim and diffusion): the values at idx in
 * plain layout (md_plain_values), left on the stack in its place so the
 * collector owns the copy. */
md_tensor *mdl_values(lua_State *L, int idx);
/* True when the value at idx is a tensor. */
int mdl_is(lua_State *L, int idx);

/* Pushes t as a Lua tensor, taking over the caller's reference. With
 * t == NULL it raises the core's error message instead. Returns 1. */
int mdl_push(lua_State *L, md_tensor *t);
/* Raises the core's error message when rc != MD_OK. */
void mdl_check_rc(lua_State *L, int rc);

/* A shape given as a table {2, 3} or as numbers from idx on; returns ndim. */
int mdl_shape(lua_State *L, int idx, int64_t *shape);
/* The same for a creation function's leading shape argument; *next is the
 * index of the first argument after it. */
int mdl_shape_arg(lua_State *L, int idx, int64_t *shape, int *next);
/* A new uninitialised plain tensor, or the core's error raised. */
md_tensor *mdl_new(lua_State *L, int ndim, const int64_t *shape);
/* A 1-based (or negative, -1 = last) Lua dimension at idx, as a 0-based C
 * dimension checked against ndim. */
int mdl_dim(lua_State *L, int idx, int ndim, const char *op);
/* Optional boolean argument. */
int mdl_optbool(lua_State *L, int idx, int def);

/* Areas. */
extern const luaL_Reg mdl_tensor_funcs[], mdl_tensor_methods[];
extern const luaL_Reg mdl_autograd_funcs[], mdl_autograd_methods[];
extern const luaL_Reg mdl_runtime_funcs[], mdl_runtime_methods[];
extern const luaL_Reg mdl_ops_funcs[], mdl_ops_methods[];
extern const luaL_Reg mdl_random_funcs[], mdl_random_methods[];
extern const luaL_Reg mdl_conv_funcs[], mdl_conv_methods[];
extern const luaL_Reg mdl_nn_funcs[], mdl_nn_methods[];
extern const luaL_Reg mdl_io_funcs[], mdl_io_methods[];
extern const luaL_Reg mdl_image_funcs[], mdl_image_methods[];
extern const luaL_Reg mdl_json_funcs[], mdl_json_methods[];
extern const luaL_Reg mdl_optim_funcs[], mdl_optim_methods[];
extern const luaL_Reg mdl_diffusion_funcs[], mdl_diffusion_methods[];
extern const luaL_Reg mdl_dist_funcs[], mdl_dist_methods[];
extern const luaL_Reg mdl_repl_funcs[], mdl_repl_methods[];

#endif
