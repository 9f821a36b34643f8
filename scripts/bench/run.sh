#!/usr/bin/env bash
# make bench: installs the PyTorch reference when missing, then runs the
# side-by-side benchmark (scripts/bench/bench.lua). Never part of make test.
set -eu
cd "$(dirname "$0")/../.."
MOONDUST_BENCH=1 scripts/setup.sh
scripts/md-lua scripts/bench/bench.lua "$@"
