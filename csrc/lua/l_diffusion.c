/* Binding for the diffusion area. */
#include "binding.h"

const luaL_Reg mdl_diffusion_funcs[] = {
    {NULL, NULL},
};

const luaL_Reg mdl_diffusion_methods[] = {
    {NULL, NULL},
};
