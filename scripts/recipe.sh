#!/usr/bin/env bash
# One point of the recipe search (issue 12): train the main job's U-Net with
# the given `scripts/moondust train` flags into out/recipe/NAME, then score
# 1,000 samples (DDIM-50, guidance 3; EVAL_N and EVAL_STEPS to change them)
# and append the figures, with NAME, the flags and the steps trained, to
# docs/figures/recipe.jsonl (RECIPE_LOG to change it).
#   scripts/recipe.sh NAME --minutes 30 --lr 1e-3 --lr-decay cosine ...
#   scripts/recipe.sh --torch NAME --minutes 30 --jit ...   (the PyTorch reference,
#     scripts/bench/torch_train.py, in the benchmark's configuration: 2 threads,
#     OPENBLAS_NUM_THREADS=1, tcmalloc; sampled and scored by moondust the same way)
# Run alone on the machine when the budget is --minutes: the steps it gets
# are the figure. With --steps, runs may share the CPU (--threads 1 each).
set -eu
cd "$(dirname "$0")/.."
torch=0
if [ "${1:-}" = --torch ]; then torch=1; shift; fi
[ $# -ge 1 ] || { echo "usage: scripts/recipe.sh [--torch] NAME [train flags...]" >&2; exit 2; }
name=$1; shift
# NAME and the flags go into a JSON line as they are
case "$name $*" in *[\"\\\|]*) echo "recipe.sh: NAME and flags must not hold \", \\ or |" >&2; exit 2 ;; esac
dir=out/recipe/$name
log=${RECIPE_LOG:-docs/figures/recipe.jsonl}
threads=() # evaluation runs on the threads training had
args=("$@")
for ((i = 0; i + 1 < ${#args[@]}; i++)); do
  [ "${args[i]}" = --threads ] && threads=(--threads "${args[i + 1]}")
done
if [ $torch = 1 ]; then
  MOONDUST_BENCH=1 scripts/setup.sh
  OPENBLAS_NUM_THREADS=1 LD_PRELOAD=libtcmalloc_minimal.so.4 /usr/bin/python3 scripts/bench/torch_train.py --out "$dir" "$@"
else
  scripts/moondust train --fresh --sample-every 0 --checkpoint "$dir/model.safetensors" --run-dir "$dir" "$@"
fi
rm -f "$dir/eval.jsonl"
scripts/moondust eval --checkpoint "$dir/model.safetensors" --n "${EVAL_N:-1000}" --steps "${EVAL_STEPS:-50}" "${threads[@]}" --json "$dir/eval.jsonl"
# the eval line (with the steps trained, from the checkpoint) and the run's name and flags
trainer=$([ $torch = 1 ] && echo pytorch || echo moondust)
sed "s|^{|{\"name\":\"$name\",\"trainer\":\"$trainer\",\"flags\":\"$*\",|" "$dir/eval.jsonl" >> "$log"
echo "recipe $name: $(tail -1 "$log")"
