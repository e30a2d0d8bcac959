#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# Fails when C sources call a function that cannot bound what it writes
# (strcpy, strcat, sprintf, vsprintf, gets) or keeps hidden state across
# calls (strtok).  Use snprintf, memcpy with a checked length, strtok_r.
set -euo pipefail
cd "$(dirname "$0")/.."
banned='strcpy|strcat|sprintf|vsprintf|gets|strtok'
# Word boundary on the left keeps snprintf, fgets and strtok_r legal.
if hits=$(git ls-files -- 'src/*.c' 'src/*.h' 'tests/*.c' 'tests/*.h' |
          xargs grep -nE "(^|[^A-Za-z0-9_])($banned)[[:space:]]*\(" --); then
  echo "Banned functions in use:" >&2
  echo "$hits" >&2
  exit 1
fi
echo "check-banned: no banned function in use."
