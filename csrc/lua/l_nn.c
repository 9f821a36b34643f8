/* Binding for the nn area. */
#include "binding.h"

const luaL_Reg mdl_nn_funcs[] = {
    {NULL, NULL},
};

const luaL_Reg mdl_nn_methods[] = {
    {NULL, NULL},
};
