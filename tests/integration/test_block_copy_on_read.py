# SPDX-License-Identifier: BSD-3-Clause
"""The copy-on-read filter: reads through it copy what they read from the
backing chain into the overlay (qemu-img map shows it), "bottom" limits
what is copied, concurrent writes are never overwritten by a copy, and
bad options give qemu-storage-daemon's errors."""
import json
import os
import random
import subprocess
import threading

import nbd
import pytest

from conftest import binary
from qcow2_util import qemu_check, qemu_img_create, qemu_io
from qmp_util import Daemon, QmpError, wait_for_path

MiB = 1 << 20
SIZE = 16 * MiB


def chain(tmp_path):
    """base (data at 0-2M and 8-9M) <- mid (data at 4-5M) <- top (empty)."""
    base = tmp_path / "base.qcow2"
    mid = tmp_path / "mid.qcow2"
    top = tmp_path / "top.qcow2"
    qemu_img_create(base, SIZE)
    qemu_io(base, "write -P 0x11 0 2M", "write -P 0x12 8M 1M")
    qemu_img_create(mid, SIZE, b=base, F="qcow2")
    qemu_io(mid, "write -P 0x21 4M 1M")
    qemu_img_create(top, SIZE, b=mid, F="qcow2")
    return base, mid, top


def allocated_in_top(top):
    """[(start, length)] of runs allocated in top itself (depth 0)."""
    out = subprocess.run(["qemu-img", "map", "--output=json", "-U", str(top)],
                         check=True, capture_output=True, text=True).stdout
    return [(e["start"], e["length"]) for e in json.loads(out)
            if e["depth"] == 0 and e["data"]]


def covered(runs, start, length):
    pos = start
    for s, n in sorted(runs):
        if s <= pos < s + n:
            pos = s + n
        if pos >= start + length:
            return True
    return pos >= start + length


def serve(tmp_path, top, cor_opts=""):
    """stratad with the chain as named nodes base <- mid <- top, the
    filter "cor" on top, exported as "disk"."""
    sock = str(tmp_path / "nbd.sock")
    blockdevs = []
    for name, backing in (("base", None), ("mid", "base"), ("top", "mid")):
        spec = {"driver": "qcow2", "node-name": name, "backing": backing,
                "read-only": name != "top",
                "file": {"driver": "file",
                         "filename": str(tmp_path / (name + ".qcow2"))}}
        blockdevs += ["--blockdev", json.dumps(spec)]
    d = Daemon(binary("stratad"), tmp_path, blockdevs + [
        "--blockdev", f"driver=copy-on-read,node-name=cor,file=top{cor_opts}",
        "--nbd-server", f"addr.type=unix,addr.path={sock}",
        "--export", "type=nbd,id=e0,node-name=cor,name=disk,writable=on",
    ])
    wait_for_path(sock, d.proc)
    d.uri = f"nbd+unix:///disk?socket={sock}"
    return d


def connect(uri):
    h = nbd.NBD()
    h.connect_uri(uri)
    return h


def test_reads_populate_the_overlay(tmp_path):
    base, mid, top = chain(tmp_path)
    assert allocated_in_top(top) == []
    d = serve(tmp_path, top)
    try:
        h = connect(d.uri)
        assert h.pread(4096, 0) == b"\x11" * 4096
        assert h.pread(MiB, 4 * MiB) == b"\x21" * MiB
        h.shutdown()
    finally:
        d.stop()
    runs = allocated_in_top(top)
    # Whole clusters around what was read came from base and mid.
    assert covered(runs, 0, 4096)
    assert covered(runs, 4 * MiB, MiB)
    assert not covered(runs, 8 * MiB, MiB)   # never read
    qemu_check(top)
    # The overlay still reads the same as the chain, and the copied
    # clusters no longer need it.
    assert subprocess.run(["qemu-img", "compare", "-U", str(top),
                           str(base)], capture_output=True).returncode == 1
    out = subprocess.run(["qemu-io", "-f", "qcow2", "-c", "read -P 0x11 0 4k",
                          "-c", "read -P 0x21 4M 1M",
                          "-c", "read -P 0x12 8M 1M", str(top)],
                         capture_output=True, text=True, check=True).stdout
    assert "Pattern verification failed" not in out


def test_bottom_limits_the_copy(tmp_path):
    base, mid, top = chain(tmp_path)
    d = serve(tmp_path, top, ",bottom=mid")
    try:
        h = connect(d.uri)
        assert h.pread(MiB, 0) == b"\x11" * MiB          # from base
        assert h.pread(MiB, 4 * MiB) == b"\x21" * MiB    # from mid
        h.shutdown()
    finally:
        d.stop()
    runs = allocated_in_top(top)
    assert covered(runs, 4 * MiB, MiB)
    assert not any(s < MiB for s, _ in runs), runs   # base's data stays
    qemu_check(top)


def test_writes_during_copy_on_read_reads_all_land(tmp_path):
    """Load, not the race itself: a writer and two readers through the
    filter at once; every write reads back and the image checks clean.
    The exact interleaving (a write arriving while a copy of the same
    cluster is between its read and its write) cannot be forced from
    outside; tests/unit/block/test-block-cor.c holds a copy there and
    fails without the serialisation."""
    base, mid, top = chain(tmp_path)
    d = serve(tmp_path, top)
    rng = random.Random(7)
    block = 4096
    nblocks = SIZE // block
    expected = {}
    lock = threading.Lock()
    errors = []

    def writer():
        try:
            h = connect(d.uri)
            for i in range(1500):
                b = rng.randrange(nblocks)
                data = bytes([(i % 250) + 1]) * block
                with lock:
                    expected[b] = data
                    h.pwrite(data, b * block)
            h.shutdown()
        except Exception as e:   # reported below
            errors.append(e)

    def reader():
        try:
            h = connect(d.uri)
            for _ in range(3):
                for off in range(0, SIZE, 256 * 1024):
                    h.pread(256 * 1024, off)
            h.shutdown()
        except Exception as e:
            errors.append(e)

    try:
        threads = [threading.Thread(target=writer),
                   threading.Thread(target=reader),
                   threading.Thread(target=reader)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert not errors, errors
        h = connect(d.uri)
        for b, data in expected.items():
            assert h.pread(block, b * block) == data, f"block {b} lost"
        h.shutdown()
    finally:
        d.stop()
    qemu_check(top)


@pytest.mark.parametrize("kind", ["strata", "qsd"])
def test_bad_bottom_errors_match_qsd(tmp_path, kind):
    base, mid, top = chain(tmp_path)
    prog = binary("stratad") if kind == "strata" else "qemu-storage-daemon"
    d = Daemon(prog, tmp_path, [
        "--blockdev", f"driver=qcow2,node-name=top,file.driver=file,"
                      f"file.filename={top}"], name=kind)
    try:
        q = d.connect()
        with pytest.raises(QmpError) as e:
            q.cmd("blockdev-add", {"driver": "copy-on-read", "node-name": "c",
                                   "file": "top", "bottom": "nosuch"})
        assert (e.value.cls, e.value.desc) == \
            ("GenericError", "Bottom node 'nosuch' not found")
        # A working one: the node appears with its child.
        q.cmd("blockdev-add", {"driver": "copy-on-read", "node-name": "c",
                               "file": "top"})
        nodes = {n["node-name"]: n for n in q.cmd("query-named-block-nodes")}
        assert nodes["c"]["drv"] == "copy-on-read"
    finally:
        d.stop()
