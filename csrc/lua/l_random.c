/* Binding for the random area. */
#include "binding.h"

const luaL_Reg mdl_random_funcs[] = {
    {NULL, NULL},
};

const luaL_Reg mdl_random_methods[] = {
    {NULL, NULL},
};
