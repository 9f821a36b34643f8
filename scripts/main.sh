#!/usr/bin/env bash
# The main job (make main): train the tiny class-conditional U-Net on
# Fashion-MNIST for a bounded time, then write a class-conditional sample
# grid (DDIM 50 steps, guidance 3, one row per class). Every EVAL_MINUTES of
# training (and at the end) it scores 500 EMA samples with md.metrics; the
# run folder out/ holds log.jsonl and the loss and metric plots.
#   MINUTES=10 (training time), EVAL_MINUTES=5, CHECKPOINT=checkpoints/ddpm_fashion.safetensors,
#   FRESH=1 to start over instead of resuming.
set -eu
cd "$(dirname "$0")/.."
minutes="${MINUTES:-10}"
eval_minutes="${EVAL_MINUTES:-5}"
checkpoint="${CHECKPOINT:-checkpoints/ddpm_fashion.safetensors}"
fresh=()
if [ "${FRESH:-0}" = 1 ]; then fresh=(--fresh); fi
scripts/md-lua scripts/real_grid.lua out/real.png
scripts/moondust train --minutes "$minutes" --eval-minutes "$eval_minutes" --checkpoint "$checkpoint" \
  --run-dir out "${fresh[@]}"
scripts/moondust sample --checkpoint "$checkpoint" --out out/samples.png --steps 50 --guidance 3
echo "real images: out/real.png   samples: out/samples.png   checkpoint: $checkpoint"
echo "run log: out/log.jsonl   plots: out/loss_minutes.png out/metrics_minutes.png"
