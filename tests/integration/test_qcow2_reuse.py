# SPDX-License-Identifier: BSD-3-Clause
"""Clusters freed by discard or by zeroing are reused, as QEMU does: a
guest that discards (fstrim) and rewrites ten times its disk's size
leaves an image no larger than qemu-storage-daemon leaves with the same
client, same requests; both images check clean and hold the same
data."""
import os
import random

import nbd

from conftest import binary
from qcow2_util import qemu_check, qemu_img_create
from qmp_util import Daemon, wait_for_path

MiB = 1 << 20
SIZE = 16 * MiB


def run_workload(kind, tmp_path):
    d = tmp_path / kind
    d.mkdir()
    img = d / "disk.qcow2"
    qemu_img_create(img, SIZE)
    sock = str(d / "nbd.sock")
    prog = binary("stratad") if kind == "strata" else "qemu-storage-daemon"
    dm = Daemon(prog, d, [
        "--blockdev", f"driver=file,node-name=f,filename={img},discard=unmap",
        "--blockdev", "driver=qcow2,node-name=n,file=f,discard=unmap",
        "--nbd-server", f"addr.type=unix,addr.path={sock}",
        "--export", "type=nbd,id=e,node-name=n,name=n,writable=on"],
        name=kind)
    try:
        wait_for_path(sock, dm.proc)
        h = nbd.NBD()
        h.connect_uri(f"nbd+unix:///n?socket={sock}")
        rng = random.Random(42)
        written = 0
        rnd = 0
        while written < 10 * SIZE:
            rnd += 1
            # The guest fills its disk in pieces, flushes, then trims
            # (fstrim) much of it and zeroes some, and flushes.
            for _ in range(64):
                off = rng.randrange(0, SIZE // 65536) * 65536
                n = rng.choice([65536, 131072, 262144])
                n = min(n, SIZE - off)
                h.pwrite(bytes([rnd % 250 + 1]) * n, off)
                written += n
            h.flush()
            for _ in range(16):
                off = rng.randrange(0, SIZE // MiB) * MiB
                h.trim(MiB, off)
            off = rng.randrange(0, SIZE // MiB) * MiB
            h.zero(MiB, off)
            h.flush()
        h.pwrite(b"\x5a" * MiB, 3 * MiB)
        h.flush()
        h.shutdown()
    finally:
        dm.stop()
    return img


def test_discard_and_rewrite_reuses_clusters(tmp_path):
    ours = run_workload("strata", tmp_path)
    theirs = run_workload("qsd", tmp_path)
    qemu_check(ours)
    qemu_check(theirs)
    import subprocess
    assert subprocess.run(["qemu-img", "compare", "-q", str(ours),
                           str(theirs)]).returncode == 0
    size_ours, size_theirs = os.path.getsize(ours), os.path.getsize(theirs)
    print(f"image file after 10x rewrites: strata {size_ours}, "
          f"qsd {size_theirs}")
    assert size_ours <= size_theirs
    # Far below what ten disks' worth of appends would take.
    assert size_ours < 3 * SIZE
