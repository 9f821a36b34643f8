# moondust build. `make` builds build/moondust/core.so; `make test` builds from
# clean and runs every suite; `make sanitize` runs them under ASan + UBSan.

LUA_VERSION ?= 5.4
BUILD       ?= build
PKGS        := lua$(LUA_VERSION) openblas libpng zlib
# pkg-config runs when a compile first needs the flags (after `make setup`),
# once, quietly; a missing package stops the build with one line naming the
# Debian package to install.
DEB_lua$(LUA_VERSION) := liblua$(LUA_VERSION)-dev
DEB_openblas := libopenblas-dev
DEB_libpng   := libpng-dev
DEB_zlib     := zlib1g-dev
DEB_check    := check
pkg_missing   = $(strip $(foreach p,$(1),$(if $(shell pkg-config --exists $(p) 2>/dev/null && echo y),,$(p))))
pkg_flags     = $(if $(call pkg_missing,$(2)),$(error pkg-config cannot find $(call pkg_missing,$(2)): \
                  run `make setup` or apt-get install $(foreach p,$(call pkg_missing,$(2)),$(DEB_$(p)))),$(shell pkg-config $(1) $(2) 2>/dev/null))
PKG_CFLAGS   = $(eval PKG_CFLAGS := $(call pkg_flags,--cflags,$(PKGS)))$(PKG_CFLAGS)
PKG_LIBS     = $(eval PKG_LIBS := $(call pkg_flags,--libs,openblas libpng zlib))$(PKG_LIBS)

CC      ?= cc
# 512-bit vectors in our own loops (GCC prefers 256 for -march=native here);
# a * b + c as one FMA instruction (ISO C mode does not contract by default;
# this is rounding once instead of twice, not -ffast-math's reordering);
# sqrtf without errno, so that loops calling it vectorise (nothing reads errno)
OPT     ?= -O3 -march=native -mprefer-vector-width=512 -ffp-contract=fast -fno-math-errno
CFLAGS  ?= -g
WARN    := -std=c11 -Wall -Wextra -Wshadow -Wno-unused-parameter -Wstrict-prototypes
# CFLAGS (LuaRocks passes its own) before OPT, so OPT's optimisation wins
ALL_CFLAGS = $(WARN) $(CFLAGS) $(OPT) -fPIC -fopenmp -D_GNU_SOURCE $(PKG_CFLAGS) $(EXTRA_CFLAGS)
LIBS     = $(PKG_LIBS) -lm -fopenmp $(EXTRA_LIBS)

# oneDNN is used for convolution when its headers are installed.
ifneq ($(wildcard /usr/include/oneapi/dnnl/dnnl.h),)
ALL_CFLAGS += -DMD_HAVE_DNNL
LIBS       += -ldnnl
endif

# MPI (data-parallel training, md.dist) when Debian's OpenMPI headers are installed.
MPI_DIR := $(firstword $(wildcard /usr/lib/*/openmpi))
ifneq ($(wildcard $(MPI_DIR)/include/mpi.h),)
ALL_CFLAGS += -DMD_HAVE_MPI -I$(MPI_DIR)/include
LIBS       += -L$(MPI_DIR)/lib -lmpi
endif

# GNU readline for the REPL's line editing and completion (libreadline-dev);
# without it moondust.repl reads plain lines.
ifneq ($(wildcard /usr/include/readline/readline.h),)
ALL_CFLAGS += -DMD_HAVE_READLINE
LIBS       += -lreadline
endif

# JPEG (md.image.load, md.data.image_folder) when libturbojpeg0-dev is installed.
ifneq ($(wildcard /usr/include/turbojpeg.h),)
ALL_CFLAGS += -DMD_HAVE_JPEG
LIBS       += -lturbojpeg
endif

CORE_SRC := $(wildcard csrc/*.c csrc/ops/*.c csrc/io/*.c csrc/backend/*.c)
LUA_SRC  := $(wildcard csrc/lua/*.c)
CORE_OBJ := $(CORE_SRC:%.c=$(BUILD)/obj/%.o)
LUA_OBJ  := $(LUA_SRC:%.c=$(BUILD)/obj/%.o)
HEADERS  := $(wildcard csrc/*.h csrc/*/*.h)

TEST_SRC := $(wildcard tests/c/test_*.c)
TEST_BIN := $(TEST_SRC:tests/c/%.c=$(BUILD)/tests/%)
CHECK_FLAGS = $(eval CHECK_FLAGS := $(call pkg_flags,--cflags,check))$(CHECK_FLAGS)
CHECK_LIBS  = $(eval CHECK_LIBS := $(call pkg_flags,--libs,check))$(CHECK_LIBS)

.PHONY: all setup test check-c check-lua sanitize fuzz install main bench clean

all: $(BUILD)/moondust/core.so

$(BUILD)/obj/%.o: %.c $(HEADERS)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -c $< -o $@

$(BUILD)/libmoondust.a: $(CORE_OBJ)
	@mkdir -p $(dir $@)
	ar rcs $@ $^

$(BUILD)/moondust/core.so: $(CORE_OBJ) $(LUA_OBJ)
	@mkdir -p $(dir $@)
	$(CC) -shared -o $@ $^ $(LIBS)

# Every suite links main.c and the naive references (naive.c).
TEST_COMMON := tests/c/main.c tests/c/naive.c
$(BUILD)/tests/%: tests/c/%.c $(TEST_COMMON) tests/c/testutil.h tests/c/naive.h $(BUILD)/libmoondust.a
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $(CHECK_FLAGS) -Icsrc -Itests/c -o $@ $< $(TEST_COMMON) $(BUILD)/libmoondust.a $(LIBS) $(CHECK_LIBS)

# Installs the Debian packages moondust needs when they are missing.
setup:
	@scripts/setup.sh

# The one test command: build from clean, run the C and Lua suites, end with
# "N passed, N failed".
test: setup
	rm -rf $(BUILD)
	$(MAKE) --no-print-directory all $(TEST_BIN)
	@BUILD=$(BUILD) tests/run.sh

sanitize: setup
	rm -rf build-san
	$(MAKE) --no-print-directory BUILD=build-san OPT="-O1 -fno-omit-frame-pointer" \
	  EXTRA_CFLAGS="-fsanitize=address,undefined -fno-sanitize-recover=undefined" \
	  EXTRA_LIBS="-fsanitize=address,undefined" all \
	  $(TEST_SRC:tests/c/%.c=build-san/tests/%)
	@BUILD=build-san SANITIZE=1 tests/run.sh

# Coverage-guided fuzzing of the loaders (libFuzzer, Debian's clang) under
# AddressSanitizer and UndefinedBehaviorSanitizer: FUZZ_RUNS executions of
# each target from the seed corpus in tests/fuzz/corpus/. A crash is saved
# under tests/fuzz/regressions/<target>/, which `make test` then loads.
FUZZ_RUNS    ?= 1000000
FUZZ_TARGETS := safetensors png jpeg idx json
FUZZ_CORE    := csrc/tensor.c csrc/layout.c csrc/alloc.c csrc/error.c csrc/io/png.c csrc/io/pixels.c csrc/io/jpeg.c \
                csrc/io/idx.c csrc/io/safetensors.c csrc/io/json.c
FUZZ_FLAGS   := -std=c11 -g -O1 -D_GNU_SOURCE -Icsrc -Wno-unknown-pragmas \
                -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined
FUZZ_JPEG      := $(if $(wildcard /usr/include/turbojpeg.h),-DMD_HAVE_JPEG)
FUZZ_JPEG_LIBS := $(if $(wildcard /usr/include/turbojpeg.h),-lturbojpeg)
fuzz:
	@command -v clang >/dev/null || { echo "fuzz: needs clang and libfuzzer-14-dev (apt-get install clang libfuzzer-14-dev)"; exit 1; }
	@mkdir -p build-fuzz
	@for t in $(FUZZ_TARGETS); do \
	  clang $(FUZZ_FLAGS) $(FUZZ_JPEG) $$(pkg-config --cflags libpng zlib) -o build-fuzz/fuzz_$$t tests/fuzz/fuzz_$$t.c \
	    $(FUZZ_CORE) $$(pkg-config --libs libpng zlib) $(FUZZ_JPEG_LIBS) -lm || exit 1; \
	done
	@for t in $(FUZZ_TARGETS); do \
	  mkdir -p build-fuzz/corpus/$$t tests/fuzz/regressions/$$t; \
	  build-fuzz/fuzz_$$t -runs=$(FUZZ_RUNS) -max_len=4096 -rss_limit_mb=1024 -timeout=10 \
	    -artifact_prefix=tests/fuzz/regressions/$$t/ build-fuzz/corpus/$$t tests/fuzz/corpus/$$t \
	    2>build-fuzz/$$t.log; rc=$$?; \
	  echo "fuzz_$$t: exit $$rc, $$(grep -o 'Done [0-9]* runs in [0-9]* second(s)' build-fuzz/$$t.log)"; \
	done

# Installs into Lua's module paths (or a LuaRocks tree: see the rockspec).
PREFIX  ?= /usr/local
LUADIR  ?= $(PREFIX)/share/lua/$(LUA_VERSION)
LIBDIR  ?= $(PREFIX)/lib/lua/$(LUA_VERSION)
install: all
	mkdir -p $(DESTDIR)$(LIBDIR)/moondust $(DESTDIR)$(LUADIR)
	cp $(BUILD)/moondust/core.so $(DESTDIR)$(LIBDIR)/moondust/
	cp -r lua/moondust $(DESTDIR)$(LUADIR)/

# The main job: train briefly on Fashion-MNIST and write a sample grid.
main: setup all
	scripts/main.sh

bench: setup all
	scripts/bench/run.sh

clean:
	rm -rf $(BUILD) build-san build-fuzz
