/* Binding for the optim area. */
#include "binding.h"

const luaL_Reg mdl_optim_funcs[] = {
    {NULL, NULL},
};

const luaL_Reg mdl_optim_methods[] = {
    {NULL, NULL},
};
