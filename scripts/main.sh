#!/usr/bin/env bash
# The main job (make main): train the tiny class-conditional U-Net on
# Fashion-MNIST for a bounded time, then write a class-conditional sample
# grid (DDIM 50 steps, guidance 3, one row per class).
#   MINUTES=10 (training time), CHECKPOINT=checkpoints/ddpm_fashion.safetensors,
#   FRESH=1 to start over instead of resuming.
set -eu
cd "$(dirname "$0")/.."
minutes="${MINUTES:-10}"
checkpoint="${CHECKPOINT:-checkpoints/ddpm_fashion.safetensors}"
fresh=()
if [ "${FRESH:-0}" = 1 ]; then fresh=(--fresh); fi
scripts/md-lua scripts/real_grid.lua out/real.png
scripts/moondust train --minutes "$minutes" --checkpoint "$checkpoint" "${fresh[@]}"
scripts/moondust sample --checkpoint "$checkpoint" --out out/samples.png --steps 50 --guidance 3
echo "real images: out/real.png   samples: out/samples.png   checkpoint: $checkpoint"
