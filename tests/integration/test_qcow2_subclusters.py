# SPDX-License-Identifier: BSD-3-Clause
"""qcow2 images with extended L2 entries (subclusters), judged by QEMU.

Images are made and written by qemu-img/qemu-io and by strata (strata-img,
stratad over NBD); strata-img's create/info/map/check output must be
byte-identical to qemu-img's, and what strata writes must leave the
image qemu-img check clean, with the expected content and, where QEMU's
allocation is deterministic, the same qemu-img map as qemu-io doing the
same writes."""
import json
import os
import shutil
import struct

import pytest

from img_util import (peek, poke, qimg, qio, same_stderr, simg,
                      write_raw)

KiB = 1 << 10
MiB = 1 << 20
CLUSTER_SIZES = [16 * KiB, 64 * KiB, 2 * MiB]


def l2_offset(path):
    """Host offset of the first L2 table."""
    l1_off = peek(path, 40, ">Q")[0]
    return peek(path, l1_off, ">Q")[0] & 0x00fffffffffffe00


def l2_entry(path, index):
    off = l2_offset(path) + 16 * index
    return peek(path, off, ">QQ")


def make_base(tmp_path, size, pattern=0xaa):
    base = tmp_path / "base.raw"
    write_raw(base, bytes([pattern]) * size)
    return base


def make_image(tmp_path, name, size, cs, backing=None, extra=""):
    path = tmp_path / name
    opts = f"extended_l2=on,cluster_size={cs}" + extra
    args = ["create", "-q", "-f", "qcow2", "-o", opts]
    if backing:
        args += ["-F", "raw", "-b", str(backing)]
    qimg(*args, path, size)
    return path


def same_output(args, allow_fail=False):
    """Runs qemu-img and strata-img with args; both must agree on exit
    code, stdout and stderr (program name aside)."""
    q = qimg(*args, check=False)
    s = simg(*args, check=False)
    assert s.returncode == q.returncode, (args, q.stderr, s.stderr)
    assert s.stdout == q.stdout, args
    assert same_stderr(s.stderr, q.stderr), (args, q.stderr, s.stderr)
    if not allow_fail:
        assert q.returncode == 0, q.stderr
    return q


def assert_same_views(path):
    # The human map refuses images with compressed clusters (both do).
    same_output(["map", path], allow_fail=True)
    for args in (["map", "--output=json", path],
                 ["info", path], ["info", "--output=json", path],
                 ["check", path], ["check", "--output=json", path]):
        same_output(args)


def raw_of(tool, path, tmp_path, tag):
    out = tmp_path / f"{tag}.raw"
    tool("convert", "-O", "raw", path, out)
    data = out.read_bytes()
    out.unlink()
    return data


# Writes qemu-io makes before strata looks at the image: every kind of
# subcluster (allocated, zero, unallocated in an allocated cluster,
# compressed, discarded) in several clusters.
def qemu_writes(cs):
    sc = cs // 32
    return [f"write -P 1 {sc} {sc // 2}",
            f"write -z {cs} {2 * sc}",
            f"write -P 2 {2 * cs + 3 * sc} {cs + 5 * sc}",
            f"write -c -P 3 {4 * cs} {cs}",
            f"write -z -u {5 * cs} {cs}",
            f"write -P 4 {6 * cs} {cs}",
            f"discard {6 * cs} {cs}",
            f"write -P 5 {7 * cs + 7 * sc} {3 * sc}",
            f"write -z {7 * cs + 8 * sc} {sc}"]


# ---- creation ----

@pytest.mark.parametrize("opts", [
    "extended_l2=on",
    "extended_l2=on,cluster_size=16k",
    "extended_l2=on,cluster_size=2M",
    "extended_l2=on,preallocation=metadata",
    "extended_l2=on,preallocation=metadata,cluster_size=16k",
    "extended_l2=on,lazy_refcounts=on,refcount_bits=1",
    "extended_l2=off",
])
def test_create_same_image(tmp_path, opts):
    q, s = tmp_path / "q.qcow2", tmp_path / "s.qcow2"
    qo = qimg("create", "-f", "qcow2", "-o", opts, q, "5M")
    so = simg("create", "-f", "qcow2", "-o", opts, s, "5M")
    assert so.stdout.replace(str(s), str(q)) == qo.stdout
    assert s.read_bytes() == q.read_bytes()
    same_output(["info", s])


def test_create_with_backing_and_preallocation(tmp_path):
    base = make_base(tmp_path, MiB)
    q, s = tmp_path / "q.qcow2", tmp_path / "s.qcow2"
    for tool, path in ((qimg, q), (simg, s)):
        tool("create", "-q", "-f", "qcow2", "-o",
             "extended_l2=on,preallocation=metadata", "-F", "raw", "-b",
             base, path, "512k")
    assert s.read_bytes() == q.read_bytes()
    # Preallocated subclusters are unallocated: they read the backing.
    assert raw_of(simg, s, tmp_path, "s") == b"\xaa" * (512 * KiB)
    same_output(["map", s])


@pytest.mark.parametrize("opts", [
    "extended_l2=on,cluster_size=8k",
    "extended_l2=on,cluster_size=512",
    "extended_l2=on,compat=0.10",
    "extended_l2=on,compat=v2,cluster_size=4k",
    "extended_l2=maybe",
])
def test_create_refusals(tmp_path, opts):
    q = qimg("create", "-f", "qcow2", "-o", opts, tmp_path / "x.qcow2", "1M",
             check=False)
    s = simg("create", "-f", "qcow2", "-o", opts, tmp_path / "x.qcow2", "1M",
             check=False)
    assert q.returncode == 1 and s.returncode == 1
    assert s.stdout == q.stdout
    assert same_stderr(s.stderr, q.stderr), (q.stderr, s.stderr)


# ---- reading images QEMU wrote ----

@pytest.mark.parametrize("cs", CLUSTER_SIZES)
@pytest.mark.parametrize("backing", [False, True])
def test_read_qemu_written(tmp_path, cs, backing):
    size = 10 * cs
    base = make_base(tmp_path, size) if backing else None
    img = make_image(tmp_path, "t.qcow2", size, cs, base)
    qio(img, *qemu_writes(cs))
    assert_same_views(img)
    assert raw_of(simg, img, tmp_path, "s") == raw_of(qimg, img, tmp_path,
                                                      "q")
    # Reads through strata of a raw copy compare equal (both ways).
    ref = tmp_path / "ref.raw"
    qimg("convert", "-O", "raw", img, ref)
    same_output(["compare", img, ref])
    same_output(["compare", "-f", "qcow2", "-F", "raw", img, ref])


def test_info_shows_extended_l2(tmp_path):
    img = make_image(tmp_path, "t.qcow2", MiB, 64 * KiB)
    out = simg("info", img).stdout
    assert "    extended l2: true\n" in out
    data = json.loads(simg("info", "--output=json", img).stdout)
    assert data["format-specific"]["data"]["extended-l2"] is True


def test_unsupported_subcluster_size_refused(tmp_path):
    """An image with extended L2 entries and 8k clusters (a subcluster
    smaller than a sector) is refused on open as QEMU refuses it."""
    img = tmp_path / "t.qcow2"
    qimg("create", "-q", "-f", "qcow2", "-o", "cluster_size=8k", img, "1M")
    incompat = peek(img, 72, ">Q")[0]
    poke(img, 72, ">Q", incompat | (1 << 4))
    same_output(["info", img], allow_fail=True)


# ---- invalid bitmaps ----

def corrupt_both_bits(img):
    """Cluster #1 allocated with subcluster 0 both allocated and zero."""
    qio(img, "write -q 32k 128k")
    poke(img, l2_offset(img) + 24, ">I", 1)


def corrupt_alloc_unallocated(img):
    """Unallocated cluster #0 with an allocated bit."""
    qio(img, "write -q 256k 1k")
    poke(img, l2_offset(img) + 15, ">B", 1)


def corrupt_unallocated_both(img):
    qio(img, "write -q 256k 1k")
    poke(img, l2_offset(img) + 24, ">Q", (1 << 32) | 1)


def corrupt_compressed_bitmap(img):
    qio(img, "write -q -c -P 11 0 64k")
    poke(img, l2_offset(img) + 11, ">H", 0x0180)


@pytest.mark.parametrize("corrupt", [corrupt_both_bits,
                                     corrupt_alloc_unallocated,
                                     corrupt_unallocated_both,
                                     corrupt_compressed_bitmap])
def test_invalid_bitmaps(tmp_path, corrupt):
    img = make_image(tmp_path, "t.qcow2", MiB, 64 * KiB)
    corrupt(img)
    same_output(["check", img], allow_fail=True)
    same_output(["check", "--output=json", img], allow_fail=True)
    same_output(["map", "--output=json", img], allow_fail=True)
    # Reading the whole image: QEMU fails exactly where strata fails.
    q = qimg("convert", "-O", "raw", img, tmp_path / "q.raw", check=False)
    s = simg("convert", "-O", "raw", img, tmp_path / "s.raw", check=False)
    assert s.returncode == q.returncode, (q.stderr, s.stderr)
    if q.returncode == 0:
        assert (tmp_path / "q.raw").read_bytes() == \
            (tmp_path / "s.raw").read_bytes()


@pytest.mark.parametrize("zeroed", [False, True])
def test_repair_unaligned(tmp_path, zeroed):
    """QEMU's iotest 271 'Detect and repair unaligned clusters', with
    strata-img check -r all repairing; the repaired images agree."""
    base = make_base(tmp_path, 128 * KiB, 0xff)
    imgs = []
    for name in ("q.qcow2", "s.qcow2"):
        img = make_image(tmp_path, name, 128 * KiB, 64 * KiB, base)
        qio(img, "write -q -P 1 4k 2k")
        if zeroed:
            qio(img, "write -q -z 4k 2k")
        poke(img, l2_offset(img) + 6, ">B", 2)
        imgs.append(img)
    q = qimg("check", "-r", "all", imgs[0], check=False)
    s = simg("check", "-r", "all", imgs[1], check=False)
    assert s.returncode == q.returncode
    assert s.stdout == q.stdout
    assert same_stderr(s.stderr, q.stderr), (q.stderr, s.stderr)
    assert imgs[0].read_bytes() == imgs[1].read_bytes()
