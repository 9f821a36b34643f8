rockspec_format = "3.0"
package = "moondust"
version = "scm-1"
source = { url = "git+file:///dev/null" }
description = {
  summary = "Diffusion models in Lua 5.4 over a fast C11 core",
  detailed = [[Tensors, reverse-mode autograd, U-Net layers, DDPM/DDIM sampling,
guidance, VAEs and latent diffusion, with the heavy lifting in C (OpenBLAS, oneDNN).]],
  license = "MIT",
}
dependencies = { "lua >= 5.4, < 5.5" }
build = {
  type = "make",
  -- LuaRocks' CFLAGS come first on the compiler's line; the Makefile's OPT
  -- (-O3 -march=native ...) follows them, so it wins
  build_variables = { LUA_VERSION = "5.4", CFLAGS = "$(CFLAGS)" },
  install_variables = {
    PREFIX = "$(PREFIX)",
    LUADIR = "$(LUADIR)",
    LIBDIR = "$(LIBDIR)",
  },
  install = {
    bin = { moondust = "bin/moondust", ["moondust-repl"] = "bin/moondust-repl" },
  },
}
