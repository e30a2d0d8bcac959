#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# Runs every built libFuzzer target over its seed corpus, then for
# FUZZ_SECONDS more on new inputs (kept in a temporary directory so the
# checked-in corpus does not change).
set -euo pipefail
top=$(cd "$(dirname "$0")/../.." && pwd)
build=$(cd "${FUZZ_BUILD:-build-fuzz}" && pwd)
secs=${FUZZ_SECONDS:-15}
shopt -s nullglob
targets=("$build"/tests/fuzz/fuzz-*)
if [ ${#targets[@]} -eq 0 ]; then
  echo "no fuzz targets built in $build" >&2
  exit 1
fi
passed=0 failed=0
for t in "${targets[@]}"; do
  [ -f "$t" ] && [ -x "$t" ] || continue
  name=$(basename "$t"); name=${name#fuzz-}
  corpus="$top/tests/fuzz/corpus/$name"
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  echo "fuzz: $name (corpus $corpus, ${secs}s)"
  if (cd "$work" && "$t" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 \
        -print_final_stats=0 "$work" "$corpus" >"$work/log" 2>&1); then
    passed=$((passed + 1))
  else
    failed=$((failed + 1))
    tail -50 "$work/log"
    # Keep the input that failed, so it can be replayed (fuzz-X FILE)
    # and added to the corpus once fixed.
    mkdir -p "$build/fuzz-crashes"
    cp "$work"/crash-* "$work"/oom-* "$work"/timeout-* \
       "$build/fuzz-crashes/" 2>/dev/null || true
    echo "fuzz: failing inputs kept in $build/fuzz-crashes"
  fi
  rm -rf "$work"
  trap - EXIT
done
echo "fuzz: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
