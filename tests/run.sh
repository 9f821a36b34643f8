#!/usr/bin/env bash
# Runs every Check suite (build/tests/test_*) and every Lua test file
# (tests/lua/test_*.lua), then prints one closing line "N passed, N failed".
# A suite that crashes or prints no summary counts as one failure.
set -u
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
export LUA_PATH_5_4="$PWD/lua/?.lua;$PWD/lua/?/init.lua;$PWD/tests/lua/?.lua;;"
export LUA_CPATH_5_4="$PWD/$BUILD/?.so;;"
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
preload=""
if [ -n "${SANITIZE:-}" ]; then
  # lua5.4 itself is not instrumented: preload the runtimes for the module.
  preload="$(gcc -print-file-name=libasan.so):$(gcc -print-file-name=libubsan.so)"
  export ASAN_OPTIONS=detect_leaks=0:abort_on_error=0
  export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
fi
passed=0 failed=0
log=$(mktemp)
trap 'rm -f "$log"' EXIT

for bin in "$BUILD"/tests/test_*; do
  [ -x "$bin" ] || continue
  name=$(basename "$bin")
  if [ -n "${SANITIZE:-}" ]; then ASAN_OPTIONS=detect_leaks=1 "$bin" >"$log" 2>&1; else "$bin" >"$log" 2>&1; fi
  rc=$?
  summary=$(grep -E '^[0-9]+%: Checks: [0-9]+, Failures: [0-9]+, Errors: [0-9]+' "$log" | tail -n 1)
  if [ -z "$summary" ]; then
    echo "FAIL $name: no summary (exit $rc)"; tail -n 20 "$log"; failed=$((failed + 1)); continue
  fi
  n=$(sed -E 's/.*Checks: ([0-9]+).*/\1/' <<<"$summary")
  f=$(sed -E 's/.*Failures: ([0-9]+), Errors: ([0-9]+).*/\1+\2/' <<<"$summary")
  f=$((f))
  if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then f=1; fi
  grep -E ':[EF]:' "$log" | sed 's/^/  /'
  grep -E 'runtime error|AddressSanitizer' "$log" | head -n 5 | sed 's/^/  /'
  echo "$name: $((n - f)) passed, $f failed"
  passed=$((passed + n - f)); failed=$((failed + f))
done

for t in tests/lua/test_*.lua; do
  [ -f "$t" ] || continue
  name=$(basename "$t" .lua)
  LD_PRELOAD="$preload" lua5.4 "$t" >"$log" 2>&1
  rc=$?
  summary=$(grep -E '^RESULT [0-9]+ [0-9]+$' "$log" | tail -n 1)
  grep -vE '^(RESULT|ok) ' "$log" | sed 's/^/  /'
  if [ -z "$summary" ]; then
    echo "FAIL $name: no summary (exit $rc)"; failed=$((failed + 1)); continue
  fi
  read -r _ p f <<<"$summary"
  if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then f=1; fi
  echo "$name: $p passed, $f failed"
  passed=$((passed + p)); failed=$((failed + f))
done

if [ $((passed + failed)) -eq 0 ]; then echo "no tests found"; failed=1; fi
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
