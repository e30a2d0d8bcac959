#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# strata's main job on a generated example: a thin qcow2 disk on a
# template, served over NBD by stratad, written by a real client,
# streamed away from its template while the client keeps writing, then
# inspected offline.  Run by `make demo`.
set -euo pipefail

BUILD=${BUILD:-$(cd "$(dirname "$0")/.." && pwd)/build}
SCRIPTS=$(cd "$(dirname "$0")" && pwd)
IMG="$BUILD/src/strata-img/strata-img"
DAEMON="$BUILD/src/stratad/stratad"
CTL="$BUILD/src/strata-ctl/strata-ctl"

work=$(mktemp -d /tmp/strata-demo.XXXXXX)
daemon_pid=""
cleanup() {
  if [ -n "$daemon_pid" ] && kill -0 "$daemon_pid" 2>/dev/null; then
    kill "$daemon_pid"; wait "$daemon_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
show() { printf '$ %s\n' "$*"; "$@"; }

cd "$work"
step "A 256 MiB template with some data in it (the golden image)"
/usr/bin/python3 - <<'PY'
import os
with open("template.raw", "wb") as f:
    f.truncate(256 << 20)
    for mib in range(0, 64, 4):            # 16 MiB of "OS" data, spread out
        f.seek(mib << 20)
        f.write(bytes([0x40 + mib]) * (1 << 20))
PY
show "$IMG" convert -f raw -O qcow2 template.raw template.qcow2
show "$IMG" create -f qcow2 -b template.qcow2 -F qcow2 thin.qcow2
show "$IMG" info --backing-chain thin.qcow2

step "Serve the thin disk over NBD with stratad (QMP on a unix socket)"
"$DAEMON" \
  --blockdev driver=file,node-name=proto0,filename=thin.qcow2 \
  --blockdev driver=qcow2,node-name=disk0,file=proto0 \
  --nbd-server addr.type=unix,addr.path="$work/nbd.sock" \
  --export type=nbd,id=vm1,node-name=disk0,name=vm1,writable=on,allocation-depth=on \
  --chardev socket,path="$work/qmp.sock",server=on,wait=off,id=mon0 \
  --monitor chardev=mon0 &
daemon_pid=$!
for _ in $(seq 100); do [ -S "$work/qmp.sock" ] && [ -S "$work/nbd.sock" ] && break; sleep 0.05; done
show "$CTL" -s "$work/qmp.sock" nodes
show "$CTL" -s "$work/qmp.sock" exports

step "A guest writes 8 MiB through NBD (qemu-io), then reads it back"
URI="nbd+unix:///vm1?socket=$work/nbd.sock"
show qemu-io -f raw -c "write -P 0xa5 32M 8M" -c "read -P 0xa5 32M 8M" -c "read -P 0x40 0 1M" "$URI"
show nbdinfo --map=qemu:allocation-depth "$URI"

step "Stream the disk away from its template while the guest keeps writing"
# The guest writes in the background; the stream yields to it
# (adaptive-speed) under an 8 MiB/s ceiling, and its copies never
# overwrite the guest's writes.
qemu-io -f raw -c "write -P 0x5a 40M 4M" -c "write -P 0x5b 2M 1M" "$URI" >/dev/null &
writer=$!
show "$CTL" -s "$work/qmp.sock" stream disk0 --job-id pull1 --speed 8M --adaptive
show "$CTL" -s "$work/qmp.sock" jobs --watch 0.5
wait "$writer"
show qemu-io -f raw -c "read -P 0x5a 40M 4M" -c "read -P 0x5b 2M 1M" -c "read -P 0x44 4M 1M" "$URI"
show "$CTL" -s "$work/qmp.sock" nodes

step "Shut the daemon down cleanly over QMP"
show "$CTL" -s "$work/qmp.sock" qmp quit
wait "$daemon_pid"; daemon_pid=""

step "Inspect the disk offline: it no longer needs the template"
show "$IMG" info --backing-chain thin.qcow2
show "$IMG" map thin.qcow2
show "$IMG" check thin.qcow2
show qemu-img check thin.qcow2
ls -ls thin.qcow2 template.qcow2

step "Provision three more VMs from the template in one command"
# Image parameters live in each image: every stratad that opens one
# applies them.  update refuses any image another process holds.
for vm in vm2 vm3 vm4; do
  "$IMG" create -q -f qcow2 -b template.qcow2 -F qcow2 "$vm.qcow2"
done
show "$IMG" update vm2.qcow2 vm3.qcow2 vm4.qcow2 copy-on-read=on \
  prefetch=on-open prefetch-rate=adaptive prefetch-delay=1
show "$IMG" info vm3.qcow2

step "Serve them: copy-on-read, and a prefetch job per disk that yields to the guests"
"$DAEMON" \
  --blockdev '{"driver": "qcow2", "node-name": "vm2", "file": {"driver": "file", "filename": "vm2.qcow2"}}' \
  --blockdev '{"driver": "qcow2", "node-name": "vm3", "file": {"driver": "file", "filename": "vm3.qcow2"}}' \
  --blockdev '{"driver": "qcow2", "node-name": "vm4", "file": {"driver": "file", "filename": "vm4.qcow2"}, "image-params": {"prefetch": "off"}}' \
  --nbd-server addr.type=unix,addr.path="$work/nbd2.sock" \
  --export type=nbd,id=e2,node-name=vm2,name=vm2,writable=on \
  --export type=nbd,id=e3,node-name=vm3,name=vm3,writable=on \
  --export type=nbd,id=e4,node-name=vm4,name=vm4,writable=on \
  --chardev socket,path="$work/qmp2.sock",server=on,wait=off,id=mon0 \
  --monitor chardev=mon0 &
daemon_pid=$!
for _ in $(seq 100); do [ -S "$work/qmp2.sock" ] && [ -S "$work/nbd2.sock" ] && break; sleep 0.05; done
show "$CTL" -s "$work/qmp2.sock" jobs
show "$CTL" -s "$work/qmp2.sock" params vm4
# vm4's reads copy what they touch (copy-on-read), no prefetch for it.
show qemu-io -f raw -r -c "read -P 0x44 4M 1M" "nbd+unix:///vm4?socket=$work/nbd2.sock"
show "$CTL" -s "$work/qmp2.sock" jobs --watch 0.5
show "$CTL" -s "$work/qmp2.sock" qmp quit
wait "$daemon_pid"; daemon_pid=""
show "$IMG" info --backing-chain vm2.qcow2
show "$IMG" map vm4.qcow2

# The thin-provisioning loop: thresholds fire, the agent extends, no write fails.
BUILD="$BUILD" "$SCRIPTS/demo-thinp.sh"
