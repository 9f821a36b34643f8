/* Binding for the ops area. */
#include "binding.h"

const luaL_Reg mdl_ops_funcs[] = {
    {NULL, NULL},
};

const luaL_Reg mdl_ops_methods[] = {
    {NULL, NULL},
};
