# SPDX-License-Identifier: BSD-3-Clause
"""qcow2 open policy and corruption handling: what strata refuses, what
it repairs, and how it stops a write that would overwrite metadata."""
import struct

import pytest

from img_util import qimg, same_stderr, simg
from qcow2_util import (header, l2_entry, qemu_check, qemu_img_create,
                        qemu_io, set_incompatible, strata_io)


def test_unknown_incompatible_bits(tmp_path):
    img = tmp_path / "t.qcow2"
    qemu_img_create(img, 1 << 20)
    set_incompatible(img, 1 << 40)
    proc = strata_io(img, "read 0 512 0", read_only=True, check=False)
    assert proc.returncode != 0
    assert ("Unsupported qcow2 feature(s): Unknown incompatible feature: "
            "10000000000") in proc.stderr


def test_corrupt_image_read_only_only(tmp_path):
    img = tmp_path / "t.qcow2"
    qemu_img_create(img, 1 << 20)
    qemu_io(img, "write -P 0x21 0 4k")
    set_incompatible(img, 2)
    proc = strata_io(img, "read 0 4096 0x21", check=False)
    assert proc.returncode != 0
    assert "qcow2: Image is corrupt; cannot be opened read/write" in proc.stderr
    strata_io(img, "read 0 4096 0x21", read_only=True)


def test_refuses_unsupported_features(tmp_path):
    img = tmp_path / "e.qcow2"
    qemu_img_create(img, 1 << 20)
    with open(img, "r+b") as f:
        f.seek(32)
        f.write(struct.pack(">I", 2))   # LUKS
    proc = strata_io(img, "read 0 512 0", read_only=True, check=False)
    assert proc.returncode != 0 and "Encryption is not supported" in proc.stderr


@pytest.mark.parametrize("extended_l2", ["off", "on"])
def test_snapshot_shared_clusters_copied_on_write(tmp_path, extended_l2):
    """Writes, zeroes and discards into clusters (and an L2 table) a
    snapshot shares change only the active layer's copies: the image
    stays clean and the snapshot, applied, reads as it was."""
    img = tmp_path / "s.qcow2"
    qemu_img_create(img, 1 << 20, extended_l2=extended_l2)
    qemu_io(img, "write -P 0x61 0 256k")
    qimg("snapshot", "-c", "snap1", img)
    # The discard comes first: it must not change the shared table.
    strata_io(img, "discard 192k 64k", "write 512 512 1", "write 64k 64k 2",
              "zero 128k 64k unmap", "writec 256k 64k 3", "flush")
    qemu_check(img)
    qemu_io(img, "read -P 0x61 0 512", "read -P 1 512 512",
            "read -P 0x61 1k 63k", "read -P 2 64k 64k", "read -P 0 128k 128k",
            "read -P 3 256k 64k")
    qimg("snapshot", "-a", "snap1", img)
    qemu_check(img)
    qemu_io(img, "read -P 0x61 0 256k", "read -P 0 256k 64k")


def test_autoclear_cleared_on_write_open(tmp_path):
    img = tmp_path / "a.qcow2"
    qemu_img_create(img, 1 << 20)
    with open(img, "r+b") as f:
        f.seek(88)
        f.write(struct.pack(">Q", (1 << 0) | (1 << 17)))
    strata_io(img, "read 0 512 0", read_only=True)
    assert header(img)["autoclear"] != 0
    strata_io(img, "write 0 512 5")
    assert header(img)["autoclear"] == 0
    qemu_check(img)


def test_lazy_refcounts_dirty_bit(tmp_path):
    img = tmp_path / "l.qcow2"
    qemu_img_create(img, 4 << 20, lazy_refcounts="on")
    strata_io(img, "write 0 1M 9", "flush", "write 2M 64k 8")
    assert header(img)["incompatible"] & 1 == 0
    qemu_check(img)
    strata_io(img, "read 0 1048576 9", "read 2097152 65536 8",
              read_only=True)


def test_dirty_image_repaired_on_write_open(tmp_path):
    img = tmp_path / "d.qcow2"
    qemu_img_create(img, 4 << 20, lazy_refcounts="on", cluster_size="64k")
    qemu_io(img, "write -P 0x4d 0 256k")
    # Simulate a crash with lazy refcounts: drop the data clusters'
    # refcounts and leave the dirty bit set.
    h = header(img)
    with open(img, "r+b") as f:
        f.seek(h["rt_offset"])
        rb = struct.unpack(">Q", f.read(8))[0]
        host = l2_entry(img, 0) & 0x00fffffffffffe00
        for i in range(4):
            f.seek(rb + 2 * ((host >> 16) + i))
            f.write(b"\0\0")
    set_incompatible(img, 1)
    # Read-only open of a dirty image works without repairing.
    strata_io(img, "read 0 262144 0x4d", read_only=True)
    assert header(img)["incompatible"] & 1
    strata_io(img, "read 0 262144 0x4d", "write 1M 64k 1")
    assert header(img)["incompatible"] & 1 == 0
    qemu_check(img)


def test_overlap_guard_marks_corrupt(tmp_path):
    img = tmp_path / "c.qcow2"
    qemu_img_create(img, 1 << 20, cluster_size="64k")
    qemu_io(img, "write -P 0x11 0 64k")
    h = header(img)
    # Point guest cluster 0 at the refcount table.
    with open(img, "r+b") as f:
        f.seek(h["l1_offset"])
        l2 = struct.unpack(">Q", f.read(8))[0] & 0x00fffffffffffe00
        f.seek(l2)
        f.write(struct.pack(">Q", h["rt_offset"] | (1 << 63)))
    proc = strata_io(img, "write 0 4096 0x22", check=False)
    assert proc.returncode != 0
    assert ("Preventing invalid write on metadata (overlaps with refcount "
            "table)") in proc.stderr
    assert "Input/output error" in proc.stderr
    assert header(img)["incompatible"] & 2
    # The refcount table is untouched: qemu-img can still repair it.
    proc = strata_io(img, "write 0 4096 0x22", check=False)
    assert "Image is corrupt; cannot be opened read/write" in proc.stderr


def test_misaligned_l2_offset_is_an_error(tmp_path):
    img = tmp_path / "m.qcow2"
    qemu_img_create(img, 1 << 20, cluster_size="64k")
    qemu_io(img, "write -P 0x11 0 64k")
    h = header(img)
    with open(img, "r+b") as f:
        f.seek(h["l1_offset"])
        l1e = struct.unpack(">Q", f.read(8))[0]
        f.seek(h["l1_offset"])
        f.write(struct.pack(">Q", l1e + 512))
    proc = strata_io(img, "read 0 512 0x11", read_only=True, check=False)
    assert proc.returncode != 0
    assert "L2 table offset" in proc.stderr and "unaligned" in proc.stderr


def test_corruption_event_over_qmp(tmp_path, stratad_bin):
    """A guest write that would hit metadata emits QEMU's
    BLOCK_IMAGE_CORRUPTED event and fails with EIO."""
    import os
    import subprocess
    from qmp_util import Daemon
    img = tmp_path / "c.qcow2"
    qemu_img_create(img, 1 << 20, cluster_size="64k")
    qemu_io(img, "write -P 0x11 0 64k")
    h = header(img)
    with open(img, "r+b") as f:
        f.seek(h["l1_offset"])
        l2 = struct.unpack(">Q", f.read(8))[0] & 0x00fffffffffffe00
        f.seek(l2)
        f.write(struct.pack(">Q", h["rt_offset"] | (1 << 63)))
    nbd_sock = os.path.join(str(tmp_path), "nbd.sock")
    d = Daemon(stratad_bin, tmp_path, [
        "--blockdev", f"driver=qcow2,node-name=cr,file.driver=file,"
                      f"file.filename={img}",
        "--nbd-server", f"addr.type=unix,addr.path={nbd_sock}",
        "--export", "type=nbd,id=e,node-name=cr,name=e,writable=on"])
    try:
        qmp = d.connect()
        proc = subprocess.run(
            ["qemu-io", "-f", "raw", "-c", "write -P 0x22 0 4k",
             f"nbd+unix:///e?socket={nbd_sock}"],
            capture_output=True, text=True, timeout=30)
        assert "Input/output error" in proc.stdout + proc.stderr
        ev = qmp.wait_event("BLOCK_IMAGE_CORRUPTED", timeout=10)
        assert ev["data"] == {
            "device": "", "node-name": "cr", "fatal": True,
            "msg": "Preventing invalid write on metadata (overlaps with "
                   "refcount table)",
            "offset": h["rt_offset"], "size": 4096}
    finally:
        d.stop()
    assert header(img)["incompatible"] & 2


FEATURE_TABLE = 0x6803F857


def replace_feature_table(path, payload):
    """Rewrites the header extensions of a fresh image (no backing file)
    with payload as its feature-name table (None: no table)."""
    with open(path, "r+b") as f:
        raw = f.read(65536)
        hlen = struct.unpack(">I", raw[100:104])[0]
        pos, exts = hlen, []
        while pos + 8 <= len(raw):
            magic, n = struct.unpack(">II", raw[pos:pos + 8])
            if magic == 0:
                break
            if magic != FEATURE_TABLE:
                exts.append((magic, raw[pos + 8:pos + 8 + n]))
            pos += 8 + (n + 7) // 8 * 8
        if payload is not None:
            exts.append((FEATURE_TABLE, payload))
        area = b"".join(struct.pack(">II", m, len(d)) + d +
                        b"\0" * (-len(d) % 8) for m, d in exts)
        f.seek(hlen)
        f.write(area + b"\0" * 8)


def feature(kind, bit, name, pad=True):
    entry = bytes([kind, bit]) + name
    return entry + b"\0" * (48 - len(entry)) if pad else entry


# iotest 036's cases: short entries, several bits, types other than
# incompatible, bits the table does not name.
@pytest.mark.parametrize("bits,table", [
    ([63], None),
    ([63], feature(0, 63, b"Test feature", pad=False)),
    ([61, 62, 63], feature(0, 63, b"Test feature", pad=False)),
    ([61, 62, 63], feature(0, 61, b"Test feature", pad=False)),
    ([61, 62, 63], feature(0, 61, b"test1") + feature(0, 62, b"test2")),
    ([61, 62, 63], feature(0, 61, b"test1") + feature(0, 62, b"test2") +
     feature(0, 63, b"test3")),
    ([61, 62, 63], feature(1, 61, b"test1") + feature(0, 62, b"test2") +
     feature(2, 63, b"test3") + feature(0, 60, b"test4")),
    ([62], feature(0, 62, b"first") + feature(0, 62, b"again")),
    ([62], feature(0, 62, b"") + feature(0, 62, b"after-empty")),
])
def test_unsupported_features_named_as_qemu_names_them(tmp_path, bits, table):
    img = tmp_path / "t.qcow2"
    qemu_img_create(img, 64 << 20)
    replace_feature_table(img, table)
    set_incompatible(img, sum(1 << b for b in bits))
    ours = simg("info", img, check=False)
    theirs = qimg("info", img, check=False)
    assert ours.returncode == theirs.returncode == 1
    assert same_stderr(ours.stderr, theirs.stderr), (ours.stderr,
                                                     theirs.stderr)
