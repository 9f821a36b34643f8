/* Binding for the io area. */
#include "binding.h"

const luaL_Reg mdl_io_funcs[] = {
    {NULL, NULL},
};

const luaL_Reg mdl_io_methods[] = {
    {NULL, NULL},
};
