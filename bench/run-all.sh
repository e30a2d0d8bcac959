#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# Runs every side-by-side benchmark with its defaults, one after another
# (they must not share the machine with each other).  Not part of the
# tests: each prints medians and ratios.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=${BUILD:-$here/../build}
for b in convert-vs-qemu-img nbd-vs-qsd nbd-tls acct-overhead thinp stream; do
  echo "=== bench/$b"
  "$here/$b" --build "$build"
done
