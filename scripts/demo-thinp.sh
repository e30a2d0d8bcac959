#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# The thin-provisioning loop, live (part of `make demo`): a guest fills a
# thin disk whose volume starts at 16 MiB; stratad fires write-threshold
# events, strata-thinp extends the volume by 8 MiB chunks and re-arms, and
# no write fails.  The volume is a regular file marked with --volume, so
# no root or loop device is needed.
set -euo pipefail

BUILD=${BUILD:-$(cd "$(dirname "$0")/.." && pwd)/build}
DAEMON="$BUILD/src/stratad/stratad"
CTL="$BUILD/src/strata-ctl/strata-ctl"
THINP="$BUILD/src/strata-thinp/strata-thinp"

work=$(mktemp -d /tmp/strata-thinp-demo.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do
    kill "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
  done
  rm -rf "$work"
}
trap cleanup EXIT

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
show() { printf '$ %s\n' "$*"; "$@"; }
size_mib() { echo "$(( $(stat -c %s "$1") / 1048576 )) MiB"; }

cd "$work"
step "Thin provisioning: a 1 GiB qcow2 disk on a 16 MiB volume"
qemu-img create -q -f qcow2 vol.qcow2 1G
truncate -s 16M vol.qcow2
echo "volume: $(size_mib vol.qcow2)"
"$DAEMON" \
  --blockdev driver=file,node-name=proto0,filename=vol.qcow2 \
  --blockdev driver=qcow2,node-name=disk0,file=proto0 \
  --nbd-server addr.type=unix,addr.path="$work/nbd.sock" \
  --export type=nbd,id=vm1,node-name=disk0,name=vm1,writable=on \
  --chardev socket,path="$work/qmp.sock",server=on,wait=off,id=mon0 \
  --monitor chardev=mon0 &
pids+=($!)
for _ in $(seq 100); do [ -S "$work/qmp.sock" ] && [ -S "$work/nbd.sock" ] && break; sleep 0.05; done

step "strata-thinp watches it: 8 MiB chunks, extend when under 4 MiB free"
printf '$ %s\n' "strata-thinp -s qmp.sock --volume disk0 --chunk 8M"
"$THINP" -s "$work/qmp.sock" --volume disk0 --chunk 8M --poll-interval 30 \
  > thinp.log 2>&1 &
pids+=($!)
for _ in $(seq 100); do grep -q 'action=arm' thinp.log && break; sleep 0.05; done
show "$CTL" -s "$work/qmp.sock" alloc

step "A guest writes 96 MiB as fast as it can (qemu-io: three 32 MiB writes in flight)"
URI="nbd+unix:///vm1?socket=$work/nbd.sock"
show qemu-io -f raw -c "aio_write -P 0x5a 0 32M" -c "aio_write -P 0x5b 32M 32M" \
  -c "aio_write -P 0x5c 64M 32M" -c aio_flush -c "read -P 0x5b 32M 32M" "$URI"
sleep 1    # the last crossing's extension
echo "volume: $(size_mib vol.qcow2)"

step "What the agent did (one key=value line per action)"
grep -E 'action=(arm|exceeded|extend|extended)' thinp.log | head -12
echo "... $(grep -c 'action=extended' thinp.log) extensions in all, \
$(grep -c 'action=extend-failed' thinp.log || true) failed"
show "$CTL" -s "$work/qmp.sock" alloc
show "$CTL" -s "$work/qmp.sock" exports

step "What the guest saw: strata-ctl stats for the export (no failed writes)"
show "$CTL" -s "$work/qmp.sock" stats --interval 0.5
echo "Since the export started (query-blockstats, 1-minute window):"
"$CTL" -s "$work/qmp.sock" --json stats --interval 0.1 | /usr/bin/python3 -c '
import json, sys
for e in json.load(sys.stdin):
    st = e["stats"]
    win = [t for t in st.get("timed_stats", []) if t["interval_length"] == 60]
    lat = ""
    if win and "p50_wr_latency_ns" in win[0]:
        lat = ", write latency p50 %.2f ms p99 %.2f ms" % (
            win[0]["p50_wr_latency_ns"] / 1e6, win[0]["p99_wr_latency_ns"] / 1e6)
    print("  %s %s: %d writes, %d MiB written, %d failed%s" % (
        e["level"], e["name"], st["wr_operations"], st["wr_bytes"] >> 20,
        st["failed_wr_operations"], lat))
'
show "$CTL" -s "$work/qmp.sock" qmp quit
wait "${pids[0]}" || true
show qemu-img check vol.qcow2
