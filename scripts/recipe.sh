#!/usr/bin/env bash
# One point of the recipe search (issue 12): train the main job's U-Net with
# the given `scripts/moondust train` flags into out/recipe/NAME, then score
# 1,000 samples (DDIM-50, guidance 3; EVAL_N and EVAL_STEPS to change them)
# and append the figures, with NAME, the flags and the steps trained, to
# docs/figures/recipe.jsonl (RECIPE_LOG to change it).
#   scripts/recipe.sh NAME --minutes 30 --lr 1e-3 --lr-decay cosine ...
# Run alone on the machine when the budget is --minutes: the steps it gets
# are the figure. With --steps, runs may share the CPU (--threads 1 each).
set -eu
cd "$(dirname "$0")/.."
[ $# -ge 1 ] || { echo "usage: scripts/recipe.sh NAME [train flags...]" >&2; exit 2; }
name=$1; shift
dir=out/recipe/$name
log=${RECIPE_LOG:-docs/figures/recipe.jsonl}
threads=() # evaluation runs on the threads training had
args=("$@")
for ((i = 0; i + 1 < ${#args[@]}; i++)); do
  [ "${args[i]}" = --threads ] && threads=(--threads "${args[i + 1]}")
done
scripts/moondust train --fresh --sample-every 0 --checkpoint "$dir/model.safetensors" --run-dir "$dir" "$@"
steps=$(grep -o '"step":[0-9]*' "$dir/log.jsonl" | tail -1 | cut -d: -f2)
scripts/moondust eval --checkpoint "$dir/model.safetensors" --n "${EVAL_N:-1000}" --steps "${EVAL_STEPS:-50}" "${threads[@]}" --json "$dir/eval.jsonl"
# the eval line with the run's name, flags and steps
sed "s|^{|{\"name\":\"$name\",\"flags\":\"$*\",\"steps\":$steps,|" "$dir/eval.jsonl" >> "$log"
echo "recipe $name: $(tail -1 "$log")"
