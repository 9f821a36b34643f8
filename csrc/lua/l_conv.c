/* Binding for the conv area. */
#include "binding.h"

const luaL_Reg mdl_conv_funcs[] = {
    {NULL, NULL},
};

const luaL_Reg mdl_conv_methods[] = {
    {NULL, NULL},
};
