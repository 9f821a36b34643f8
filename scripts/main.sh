#!/usr/bin/env bash
# The main job (make main): load Fashion-MNIST and write a grid of real images.
set -eu
cd "$(dirname "$0")/.."
scripts/md-lua scripts/real_grid.lua out/real.png
