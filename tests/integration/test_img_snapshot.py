# SPDX-License-Identifier: BSD-3-Clause
"""strata-img snapshot against qemu-img snapshot (QEMU 7.2).

QEMU's tools judge: after every step `qemu-img check` must find nothing
(no leaks, no errors), the data must be what the step promises (qemu-img
compare against raw copies taken with qemu-img convert), and snapshots
made by one tool are applied and deleted by the other.  Listings and
error cases are compared byte for byte (stdout, stderr with the program
name made equal, exit code) with qemu-img on copies of the same image.
The image shapes cover compat 0.10 and 1.1, clusters of 512 bytes, 64k
and 2M, refcount widths 1, 16 and 64, compressed, zero (plain and
allocated) and discarded clusters, many snapshots and a snapshot table
that spans several clusters, and what QEMU's iotests 029, 062, 066, 080
and 103 check of qemu-img snapshot (080's and 261's corrupt tables
included)."""
import json
import os
import shutil
import signal
import struct
import subprocess

import pytest

from conftest import binary as binary_path, require
from img_util import (peek, poke, qcow2_header, qimg, qio,
                      qsd_factory,  # noqa: F401 (a fixture)
                      run_tool, same_stderr, simg, strata_img_path)

MiB = 1 << 20


def check_clean(img):
    proc = qimg("check", img, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "No errors were found on the image." in proc.stdout, proc.stdout
    assert "leaked" not in proc.stdout, proc.stdout


def snap_ref(img, path):
    """A raw copy of the image's current content (qemu-img's reading)."""
    qimg("convert", "-O", "raw", img, path)
    return path


def same_content(ref, img):
    proc = qimg("compare", "-f", "raw", "-F", "qcow2", ref, img, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def same_result(args, img_s, img_q):
    """Runs `snapshot ARGS` with both tools, each on its own copy, and
    compares what they print and return."""
    s = simg("snapshot", *args, img_s, check=False)
    q = qimg("snapshot", *args, img_q, check=False)
    s_err = s.stderr.replace(str(img_s), "IMG")
    q_err = q.stderr.replace(str(img_q), "IMG")
    assert s.returncode == q.returncode, (s.stderr, q.stderr)
    assert s.stdout == q.stdout
    assert same_stderr(s_err, q_err), (s.stderr, q.stderr)
    return s


def same_listing(img):
    s = simg("snapshot", "-l", img)
    q = qimg("snapshot", "-l", img)
    assert s.stdout == q.stdout
    assert s.stderr == q.stderr == ""
    return s.stdout


def same_info(img):
    for fmt in ("human", "json"):
        s = simg("info", f"--output={fmt}", img)
        q = qimg("info", f"--output={fmt}", img)
        if fmt == "json":
            # Disk usage depends on where each tool put clusters.
            sj, qj = json.loads(s.stdout), json.loads(q.stdout)
            sj.pop("actual-size", None)
            qj.pop("actual-size", None)
            assert sj == qj
            assert list(sj) == list(qj)
        else:
            strip = [ln for ln in s.stdout.splitlines()
                     if not ln.startswith("disk size:")]
            qstrip = [ln for ln in q.stdout.splitlines()
                      if not ln.startswith("disk size:")]
            assert strip == qstrip


CONFIGS = {
    "v3-64k": ["-o", "compat=1.1,cluster_size=64k"],
    "v2-64k": ["-o", "compat=0.10,cluster_size=64k"],
    "v3-512": ["-o", "compat=1.1,cluster_size=512"],
    "v3-2M": ["-o", "compat=1.1,cluster_size=2M"],
    "v3-rc64": ["-o", "compat=1.1,refcount_bits=64"],
    "v2-lazy-off-512": ["-o", "compat=0.10,cluster_size=512"],
}


@pytest.mark.parametrize("config", sorted(CONFIGS))
def test_sequence_both_ways(tmp_path, config):
    """Create, apply and delete with both tools in turns, with writes of
    every kind in between; check, data and listings after each step."""
    img = tmp_path / "img.qcow2"
    cs = 2 * MiB if "2M" in config else (512 if "512" in config else 65536)
    qimg("create", "-q", "-f", "qcow2", *CONFIGS[config], img, "64M")
    # State A: data, a compressed cluster, zeroes over data (ZERO_ALLOC
    # in v3, data in v2), plain zeroes and a discard.
    qio(img, "write -P 0x11 0 3M", f"write -c -P 0x12 8M {cs}",
        "write -z 1M 256k", "write -z -u 16M 1M", "write -P 0x13 20M 2M",
        "discard 20M 1M")
    ref_a = snap_ref(img, tmp_path / "a.raw")
    simg("snapshot", "-c", "A", img)
    check_clean(img)
    same_content(ref_a, img)

    # State B, then a snapshot by qemu-img.
    qio(img, "write -P 0x21 512k 1M", f"write -c -P 0x22 {12 * MiB} {cs}",
        "write -z 2M 512k", "discard 8M 64k", "write -P 0x23 40M 1M")
    ref_b = snap_ref(img, tmp_path / "b.raw")
    qimg("snapshot", "-c", "B", img)
    check_clean(img)
    same_listing(img)
    same_info(img)

    # State C (never snapshotted).
    qio(img, "write -P 0x31 0 4M", "write -z 40M 512k", "discard 12M 1M")
    check_clean(img)

    # strata-img applies qemu-img's snapshot, qemu-img strata-img's.
    simg("snapshot", "-a", "B", img)
    check_clean(img)
    same_content(ref_b, img)
    qimg("snapshot", "-a", "A", img)
    check_clean(img)
    same_content(ref_a, img)
    simg("snapshot", "-a", "2", img)     # by id
    check_clean(img)
    same_content(ref_b, img)

    # Writing after an apply must not reach the snapshots.
    qio(img, "write -P 0x41 0 2M", "write -z 8M 1M")
    check_clean(img)
    simg("snapshot", "-a", "A", img)
    same_content(ref_a, img)
    check_clean(img)

    # qemu-img deletes strata-img's snapshot, strata-img qemu-img's.
    qimg("snapshot", "-d", "A", img)
    check_clean(img)
    same_listing(img)
    simg("snapshot", "-a", "B", img)
    same_content(ref_b, img)
    simg("snapshot", "-d", "B", img)
    check_clean(img)
    assert same_listing(img) == ""
    same_content(ref_b, img)

    # No snapshot left: every cluster is the active state's alone again,
    # so QEMU writes in place and strata may open the image read-write.
    qio(img, "write -P 0x51 0 1M")
    simg("convert", "-O", "qcow2", img, tmp_path / "copy.qcow2")
    check_clean(img)


def test_strata_chain_checked_by_qemu(tmp_path):
    """Three snapshots by strata-img, data changing in between; qemu-img
    applies each one and finds its data, then deletes them in a mixed
    order."""
    img = tmp_path / "img.qcow2"
    qimg("create", "-q", "-f", "qcow2", img, "32M")
    refs = {}
    for i, name in enumerate(["one", "two", "three"]):
        qio(img, f"write -P {0x60 + i} {i * MiB} 2M",
            f"write -c -P {0x70 + i} {(16 + i) * MiB} 64k",
            f"write -z {(i + 1) * 512 * 1024} 64k")
        refs[name] = snap_ref(img, tmp_path / f"{name}.raw")
        simg("snapshot", "-c", name, img)
        check_clean(img)
    for name in ["two", "one", "three"]:
        qimg("snapshot", "-a", name, img)
        check_clean(img)
        same_content(refs[name], img)
    simg("snapshot", "-d", "two", img)
    check_clean(img)
    qimg("snapshot", "-a", "one", img)
    same_content(refs["one"], img)
    qimg("snapshot", "-d", "one", img)
    check_clean(img)
    simg("snapshot", "-a", "three", img)
    same_content(refs["three"], img)
    simg("snapshot", "-d", "three", img)
    check_clean(img)


def test_refcount_bits(tmp_path):
    """refcount_bits=1 cannot count a second reference: the same error
    as qemu-img.  An empty image has nothing to share, so it works."""
    for tool in ("s", "q"):
        img = tmp_path / f"{tool}.qcow2"
        qimg("create", "-q", "-f", "qcow2", "-o", "refcount_bits=1", img,
             "16M")
        qio(img, "write -P 1 0 1M")
    same_result(["-c", "x"], tmp_path / "s.qcow2", tmp_path / "q.qcow2")
    assert simg("snapshot", "-l", tmp_path / "s.qcow2").stdout == ""

    empty = tmp_path / "empty.qcow2"
    qimg("create", "-q", "-f", "qcow2", "-o", "refcount_bits=1", empty, "16M")
    simg("snapshot", "-c", "e", empty)
    check_clean(empty)
    same_listing(empty)
    qimg("snapshot", "-d", "e", empty)
    check_clean(empty)


def test_many_snapshots_table_spans_clusters(tmp_path):
    """50 snapshots with 512-byte clusters: the table (about 80 bytes an
    entry) spans several clusters and is rewritten at each change."""
    img = tmp_path / "img.qcow2"
    qimg("create", "-q", "-f", "qcow2", "-o", "cluster_size=512", img, "4M")
    for i in range(50):
        qio(img, f"write -P {i + 1} {i * 4096} 4k")
        tool = simg if i % 2 == 0 else qimg
        tool("snapshot", "-c", f"snapshot-number-{i:02d}", img)
    check_clean(img)
    listing = same_listing(img)
    assert len(listing.splitlines()) == 52
    same_info(img)
    # Deleting from the middle, with both tools.
    for i in range(10, 30):
        tool = simg if i % 2 else qimg
        tool("snapshot", "-d", f"snapshot-number-{i:02d}", img)
    check_clean(img)
    same_listing(img)
    ref = tmp_path / "ref.raw"
    qimg("snapshot", "-a", "snapshot-number-05", img)
    snap_ref(img, ref)
    qio(img, "write -P 0xee 0 1M")
    simg("snapshot", "-a", "snapshot-number-05", img)
    same_content(ref, img)
    check_clean(img)
    # A new id is one past the highest.
    simg("snapshot", "-c", "last", img)
    assert "51        last" in same_listing(img)


def test_apply_restores_disk_size(tmp_path):
    """A v3 image grown after a snapshot shrinks back when the snapshot
    is applied, as qemu-img does it (compared on two copies)."""
    img_s = tmp_path / "s.qcow2"
    qimg("create", "-q", "-f", "qcow2", img_s, "64M")
    qio(img_s, "write -P 1 0 1M")
    simg("snapshot", "-c", "small", img_s)
    qimg("resize", img_s, "256M")
    qio(img_s, "write -P 2 200M 1M")
    qimg("snapshot", "-c", "big", img_s)
    img_q = tmp_path / "q.qcow2"
    shutil.copy(img_s, img_q)
    same_result(["-a", "small"], img_s, img_q)
    check_clean(img_s)
    assert (json.loads(simg("info", "--output=json", img_s).stdout)
            ["virtual-size"] == 64 * MiB)
    qimg("compare", img_s, img_q)
    same_result(["-a", "big"], img_s, img_q)
    check_clean(img_s)
    qimg("compare", img_s, img_q)
    qio(img_s, "read -P 2 200M 1M", "read -P 1 0 1M")


def test_info_lists_snapshots(tmp_path):
    img = tmp_path / "img.qcow2"
    qimg("create", "-q", "-f", "qcow2", img, "64M")
    same_info(img)
    simg("snapshot", "-c", "first", img)
    qimg("snapshot", "-c", "second", img)
    same_info(img)
    over = tmp_path / "over.qcow2"
    qimg("create", "-q", "-f", "qcow2", "-b", "img.qcow2", "-F", "qcow2",
         over)
    simg("snapshot", "-c", "o", over)
    same_info(over)
    s = simg("info", "--backing-chain", over)
    q = qimg("info", "--backing-chain", over)
    drop = lambda t: [ln for ln in t.splitlines()
                      if not ln.startswith("disk size:")]
    assert drop(s.stdout) == drop(q.stdout)


# ---- errors, byte for byte ----

ERROR_CASES = [
    ["-a", "nope"],
    ["-d", "nope"],
    ["-d", "1"],              # qemu-img deletes by name only
    ["-l", "-c", "x"],
    ["-c", "x", "-d", "y"],
    ["-x"],
    ["-U", "-c", "u"],
    ["-U", "-l"],
    ["-q", "-c", "quiet"],
    [],                       # no action: opened, nothing done
    ["-a", "s1", "-q"],
    ["-c", "s1"],             # a second snapshot of the same name
]


@pytest.mark.parametrize("args", ERROR_CASES, ids=lambda a: " ".join(a) or
                         "none")
def test_errors_match(tmp_path, args):
    img_s = tmp_path / "s.qcow2"
    qimg("create", "-q", "-f", "qcow2", img_s, "16M")
    qio(img_s, "write -P 1 0 64k")
    qimg("snapshot", "-c", "s1", img_s)
    img_q = tmp_path / "q.qcow2"
    shutil.copy(img_s, img_q)
    same_result(args, img_s, img_q)
    check_clean(img_s)
    if "-c" not in args:
        assert qimg("snapshot", "-l", img_s).stdout == \
            qimg("snapshot", "-l", img_q).stdout


@pytest.mark.parametrize("args", [["-c", "x"], ["-l"], ["-a", "x"],
                                  ["-d", "x"], []])
def test_raw_and_missing(tmp_path, args):
    raw = tmp_path / "r.raw"
    raw.write_bytes(b"\0" * MiB)
    same_result(args, raw, raw)
    same_result(args, tmp_path / "missing.qcow2", tmp_path / "missing.qcow2")


@pytest.mark.parametrize("argv", [["snapshot"], ["snapshot", "-c"],
                                  ["snapshot", "a", "b"]])
def test_usage_errors(argv):
    s = simg(*argv, check=False)
    q = qimg(*argv, check=False)
    assert s.returncode == q.returncode == 1
    assert same_stderr(s.stderr, q.stderr)


def test_image_opts(tmp_path):
    img = tmp_path / "img.qcow2"
    qimg("create", "-q", "-f", "qcow2", img, "16M")
    opts = f"driver=qcow2,file.driver=file,file.filename={img}"
    simg("snapshot", "--image-opts", "-c", "viaopts", opts)
    s = simg("snapshot", "--image-opts", "-l", opts)
    assert s.stdout == qimg("snapshot", "--image-opts", "-l", opts).stdout
    assert "viaopts" in s.stdout
    check_clean(img)


def test_data_writes_copy_what_snapshots_share(tmp_path):
    """Writing into an image with a snapshot copies the L2 table and the
    data clusters the snapshot shares: the snapshot keeps its data, the
    refcounts stay right (qemu-img check), and qemu-img reads both."""
    img = tmp_path / "img.qcow2"
    qimg("create", "-q", "-f", "qcow2", img, "16M")
    qio(img, "write -P 5 0 1M", "write -P 6 8M 64k")
    simg("snapshot", "-c", "keep", img)
    src = tmp_path / "src.raw"
    src.write_bytes(b"\x07" * (512 * 1024))
    simg("convert", "-n", "-f", "raw", "-O", "qcow2", src, img)
    check_clean(img)
    qio(img, "read -P 7 0 512k", "read -P 5 512k 512k", "read -P 0 1M 7M",
        "read -P 6 8M 64k")
    simg("snapshot", "-a", "keep", img)
    check_clean(img)
    qio(img, "read -P 5 0 1M", "read -P 6 8M 64k")


def _resize_both(tmp_path, img, *args):
    """strata-img and qemu-img resize (ARGS) on copies of img: same
    output and exit code; returns the two copies."""
    img_s, img_q = tmp_path / "s.qcow2", tmp_path / "q.qcow2"
    shutil.copy(img, img_s)
    shutil.copy(img, img_q)
    s = simg("resize", *args[:-1], img_s, args[-1], check=False)
    q = qimg("resize", *args[:-1], img_q, args[-1], check=False)
    assert s.returncode == q.returncode, (s.stderr, q.stderr)
    assert s.stdout == q.stdout
    assert same_stderr(s.stderr.replace(str(img_s), "IMG"),
                       q.stderr.replace(str(img_q), "IMG")), \
        (s.stderr, q.stderr)
    return img_s, img_q


def _same_image(img_s, img_q):
    check_clean(img_s)
    assert (simg("snapshot", "-l", img_s).stdout ==
            qimg("snapshot", "-l", img_q).stdout)
    assert qcow2_header(img_s)["size"] == qcow2_header(img_q)["size"]
    assert (qimg("map", "--output=json", img_s).stdout ==
            qimg("map", "--output=json", img_q).stdout)


def test_resize_v2_with_snapshots_refused(tmp_path):
    img = tmp_path / "img.qcow2"
    qimg("create", "-q", "-f", "qcow2", "-o", "compat=0.10", img, "32M")
    qio(img, "write -P 0x2a 24M 64k")
    simg("snapshot", "-c", "foo", img)
    img_s, img_q = _resize_both(tmp_path, img, "64M")
    assert "Can't resize a v2 image which has snapshots" in \
        simg("resize", img_s, "64M", check=False).stderr
    _same_image(img_s, img_q)


def test_resize_v3_with_snapshots_as_qemu(tmp_path):
    """A v3 image with snapshots grows and shrinks; the snapshots keep
    their own sizes and data, applied by either tool."""
    img = tmp_path / "img.qcow2"
    qimg("create", "-q", "-f", "qcow2", img, "32M")
    qio(img, "write -P 0x2a 24M 64k", "write -z 0 128k")
    simg("snapshot", "-c", "foo", img)
    big_s, big_q = _resize_both(tmp_path, img, "128M")
    _same_image(big_s, big_q)
    qio(big_s, "read -P 0x2a 24M 64k", "read -P 0 32M 96M")
    shutil.copy(big_s, img)
    simg("snapshot", "-c", "bar", img)
    # Shrinking below the data: the active table's copy loses it, the
    # snapshots keep it.
    small_s, small_q = _resize_both(tmp_path, img, "--shrink", "16M")
    _same_image(small_s, small_q)
    for name, size in (("bar", 128 * MiB), ("foo", 32 * MiB)):
        simg("snapshot", "-a", name, small_s)
        qimg("snapshot", "-a", name, small_q)
        _same_image(small_s, small_q)
        assert qcow2_header(small_s)["size"] == size
        qio(small_s, "read -P 0x2a 24M 64k", "read -P 0 0 128k")


def test_amend_downgrade_with_snapshots(tmp_path):
    """compat=0.10 with a snapshot of another size is refused after the
    resize, as qemu-img does; with sizes equal, the zero clusters of the
    active table and of the snapshot's become data, with the same
    progress lines and result as qemu-img's."""
    img = tmp_path / "img.qcow2"
    qimg("create", "-q", "-f", "qcow2", img, "64M")
    simg("snapshot", "-c", "foo", img)
    qio(img, "write -P 1 0 64k")
    img_s, img_q = tmp_path / "s.qcow2", tmp_path / "q.qcow2"
    for tool, copy in ((simg, img_s), (qimg, img_q)):
        shutil.copy(img, copy)
        r = tool("amend", "-o", "compat=0.10,size=32M", copy, check=False)
        assert r.returncode == 1
        assert "Internal snapshots prevent downgrade of image" in r.stderr
        assert qcow2_header(copy)["size"] == 32 * MiB
        assert qcow2_header(copy)["version"] == 3
    _same_image(img_s, img_q)

    base = tmp_path / "base.qcow2"
    qimg("create", "-q", "-f", "qcow2", base, "4G")
    qio(base, "write -P 0x2a 1G 128k")
    qimg("create", "-q", "-f", "qcow2", "-b", base, "-F", "qcow2", img, "4G")
    qio(img, "write -z 0 64k", "write -z 1G 64k")
    simg("snapshot", "-c", "foo", img)
    qio(img, "write -P 0x42 0 64k", "write -z 3G 64k")
    outs = []
    for tool, copy in ((simg, img_s), (qimg, img_q)):
        shutil.copy(img, copy)
        outs.append(tool("amend", "-p", "-o", "compat=0.10", copy).stdout)
    assert outs[0] == outs[1]
    assert "(6.25/100%)" in outs[0]
    _same_image(img_s, img_q)
    assert qcow2_header(img_s)["version"] == 2
    qio(img_s, "read -P 0x42 0 64k", "read -P 0 1G 64k",
        "read -P 0x2a 1073807360 64k", "read -P 0 3G 64k")
    simg("snapshot", "-a", "foo", img_s)
    check_clean(img_s)
    qio(img_s, "read -P 0 0 64k", "read -P 0 1G 64k",
        "read -P 0x2a 1073807360 64k")


# ---- what QEMU's iotests check of qemu-img snapshot ----

def test_iotest_029_smaller_snapshot_l1(tmp_path):
    """Applying a snapshot whose L1 table is smaller than the active one
    (the VM state area grew it), and a huge VM state."""
    img = tmp_path / "img.qcow2"
    qimg("create", "-q", "-f", "qcow2", img, "64M")
    simg("snapshot", "-c", "foo", img)
    qio(img, "write -b 0 4k")
    simg("snapshot", "-a", "foo", img)
    check_clean(img)

    img = tmp_path / "img2.qcow2"
    qimg("create", "-q", "-f", "qcow2", "-o", "cluster_size=1k", img, "16M")
    simg("snapshot", "-c", "foo", img)
    qio(img, "write -b 0 4M")
    simg("snapshot", "-a", "foo", img)
    check_clean(img)

    img = tmp_path / "img3.qcow2"
    qimg("create", "-q", "-f", "qcow2", img, "64M")
    qio(img, "write -b -P 0x11 1T 4k")
    simg("snapshot", "-c", "foo", img)
    simg("snapshot", "-a", "foo", img)
    qio(img, "read -b -P 0x11 1T 4k")
    check_clean(img)


def test_iotest_062_066_zero_clusters(tmp_path):
    img = tmp_path / "img.qcow2"
    qimg("create", "-q", "-f", "qcow2", img, "64M")
    qio(img, "write -z 0 256k")
    simg("snapshot", "-c", "foo", img)
    check_clean(img)

    img = tmp_path / "pre.qcow2"
    qimg("create", "-q", "-f", "qcow2", img, "64k")
    qio(img, "write -P 42 0 64k", "write -z 0 64k")
    simg("snapshot", "-c", "foo", img)
    qio(img, "write -P 23 0 64k")
    check_clean(img)
    qio(img, "read -P 23 0 64k")
    simg("snapshot", "-a", "foo", img)
    qio(img, "read -P 0 0 64k")
    check_clean(img)


def test_iotest_103_cow_after_snapshot(tmp_path):
    """QEMU copies shared clusters on write, even with no cache room."""
    img = tmp_path / "img.qcow2"
    qimg("create", "-q", "-f", "qcow2", img, "64M")
    qio(img, "write -P 0x2b 0 128k")
    simg("snapshot", "-c", "foo", img)
    require("qemu-io")
    proc = run_tool(["qemu-io", "-c", f"open -o cache-size=0 {img}",
                     "-c", "write -P 0x2c 0 64k"])
    assert proc.returncode == 0 and "wrote" in proc.stdout, proc.stderr
    check_clean(img)
    qio(img, "read -P 0x2c 0 64k", "read -P 0x2b 64k 64k")
    simg("snapshot", "-a", "foo", img)
    qio(img, "read -P 0x2b 0 128k")
    check_clean(img)


def test_snapshot_then_amend_downgrade(tmp_path):
    img = tmp_path / "img.qcow2"
    qimg("create", "-q", "-f", "qcow2", "-o", "compat=1.1", img, "64M")
    qio(img, "write -P 0x2a 0 64k")
    simg("snapshot", "-c", "foo", img)
    qimg("amend", "-o", "compat=0.10", img)
    check_clean(img)
    same_listing(img)
    qio(img, "read -P 0x2a 0 64k")


def snap_entry_offset(img):
    """File offset of the first snapshot table entry."""
    return peek(img, 64, ">Q")[0]


def two_copies(tmp_path, setup):
    img_s = tmp_path / "s.qcow2"
    qimg("create", "-q", "-f", "qcow2", img_s, "64M")
    qio(img_s, "write 0 512")
    qimg("snapshot", "-c", "test", img_s)
    setup(img_s)
    img_q = tmp_path / "q.qcow2"
    shutil.copy(img_s, img_q)
    return img_s, img_q


@pytest.mark.parametrize("what,setup", [
    ("l1-offset", lambda p: poke(p, snap_entry_offset(p), ">Q", 0x400200)),
    ("l1-size", lambda p: poke(p, snap_entry_offset(p) + 8, ">I",
                               0x10000000)),
])
def test_iotest_080_bad_snapshot_l1(tmp_path, what, setup):
    img_s, img_q = two_copies(tmp_path, setup)
    for args in (["-a", "test"], ["-d", "test"], ["-l"]):
        same_result(args, img_s, img_q)
    # amend walks every snapshot's table too, and refuses the same way.
    s = simg("amend", "-o", "compat=0.10", img_s, check=False)
    q = qimg("amend", "-o", "compat=0.10", img_q, check=False)
    assert (s.returncode, s.stdout) == (q.returncode, q.stdout)
    assert same_stderr(s.stderr, q.stderr), (s.stderr, q.stderr)
    s = qimg("check", img_s, check=False)
    q = qimg("check", img_q, check=False)
    assert (s.returncode, s.stdout, s.stderr) == \
        (q.returncode, q.stdout, q.stderr)


@pytest.mark.parametrize("what,setup", [
    ("nb-huge", lambda p: poke(p, 60, ">I", 0xffffffff)),
    ("nb-large", lambda p: poke(p, 60, ">I", 0x7fffffff)),
    ("offset-huge", lambda p: (poke(p, 64, ">Q", 0xffffffffffff0000),
                               poke(p, 60, ">I", 0xffff))),
    ("offset-unaligned", lambda p: (poke(p, 64, ">Q", 0x1234567890abcdef),
                                    poke(p, 60, ">I", 0))),
    ("extra-too-big", lambda p: poke(p, snap_entry_offset(p) + 36, ">I",
                                     1025)),
])
def test_iotest_080_261_bad_snapshot_table(tmp_path, what, setup):
    """Broken tables: refused at open with QEMU's texts, by every
    subcommand that opens the image; never a crash."""
    img_s, img_q = two_copies(tmp_path, setup)
    for args in (["-l"], ["-c", "new"], ["-a", "test"], ["-d", "test"]):
        same_result(args, img_s, img_q)
    s = simg("info", img_s, check=False)
    q = qimg("info", img_q, check=False)
    assert s.returncode == q.returncode
    assert same_stderr(s.stderr.replace(str(img_s), "IMG"),
                       q.stderr.replace(str(img_q), "IMG")), \
        (s.stderr, q.stderr)


def test_iotest_080_huge_l2_offset(tmp_path):
    """An L2 entry pointing past any refcount table QEMU allows: the
    snapshot fails as in qemu-img, the image stays readable."""
    img_s = tmp_path / "s.qcow2"
    qimg("create", "-q", "-f", "qcow2", img_s, "64M")
    qio(img_s, "write 0 512")
    l1 = qcow2_header(img_s)["l1_off"]
    l2 = peek(img_s, l1, ">Q")[0] & 0x00fffffffffffe00
    poke(img_s, l2, ">Q", 0xbfffffffffff0000)
    img_q = tmp_path / "q.qcow2"
    shutil.copy(img_s, img_q)
    same_result(["-c", "test"], img_s, img_q)


# ---- a crash at every write ----

def traced_env():
    """LeakSanitizer cannot run under ptrace: off for traced runs of an
    ASan build (the same commands run untraced elsewhere)."""
    env = dict(os.environ)
    env["ASAN_OPTIONS"] = ":".join(
        filter(None, [env.get("ASAN_OPTIONS"), "detect_leaks=0"]))
    return env


def count_writes(cmd, out):
    """The pwrite64 calls cmd makes (strata's file driver writes with
    pwrite64 only: the test fails if it uses another write call)."""
    proc = subprocess.run(["strace", "-f", "-qq", "-o", str(out), "-e",
                           "trace=pwrite64,pwritev,pwritev2,write", *cmd],
                          capture_output=True, text=True, timeout=120,
                          env=traced_env())
    assert proc.returncode == 0, proc.stderr
    lines = out.read_text().splitlines()
    assert not [ln for ln in lines if "pwritev" in ln], lines
    return sum(1 for ln in lines if "pwrite64(" in ln)


def safe_after_crash(img):
    """What qemu-img check may find after an interrupted snapshot
    operation: leaked clusters (references counted that no table holds
    yet, or any more), and OFLAG_COPIED out of step with such counts --
    as after the same crash in QEMU, whose order strata follows.
    Anything else is a failure.  Whether a wrong flag could lose data is
    tried by the caller: it writes over the whole disk and reads every
    snapshot back."""
    proc = qimg("check", img, check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode in (0, 2, 3), out
    flags = 0
    for ln in out.splitlines():
        if ln.startswith("ERROR OFLAG_COPIED"):
            flags += 1
        elif ln.startswith("ERROR") or ln.startswith("Warning"):
            raise AssertionError(out)
    if proc.returncode == 2:
        assert f"\n{flags} errors were found" in out, out


def snapshot_names(img):
    lines = qimg("snapshot", "-l", img).stdout.splitlines()[2:]
    return [ln.split()[1] for ln in lines]


@pytest.mark.parametrize("how", ["kill", "eio"])
@pytest.mark.parametrize("op", [["-c", "new"], ["-a", "old"], ["-d", "old"],
                                ["-d", "mid"]])
def test_crash_at_every_write(tmp_path, op, how):
    """strata-img is killed before each of its writes in turn (or the
    write fails with EIO, and strata-img goes on as it can): the image
    must stay safe (see safe_after_crash), hold the snapshots of before
    or after the operation, and every one of them, and the active state,
    must read back as it should."""
    require("strace")
    base = tmp_path / "base.qcow2"
    qimg("create", "-q", "-f", "qcow2", "-o", "cluster_size=4k", base, "8M")
    qio(base, "write -P 0x11 0 256k", "write -c -P 0x12 1M 4k",
        "write -z 64k 8k")
    refs = {"old": snap_ref(base, tmp_path / "old.raw")}
    qimg("snapshot", "-c", "old", base)
    qio(base, "write -P 0x21 16k 64k", "write -P 0x22 4M 128k",
        "discard 1M 4k")
    refs["mid"] = snap_ref(base, tmp_path / "mid.raw")
    qimg("snapshot", "-c", "mid", base)
    qio(base, "write -P 0x31 32k 8k", "write -z 4M 4k")
    refs["active"] = snap_ref(base, tmp_path / "active.raw")
    refs["new"] = refs["active"]
    before = snapshot_names(base)
    done = tmp_path / "done.qcow2"
    shutil.copy(base, done)
    simg("snapshot", *op, done)
    after = snapshot_names(done)
    active_after = refs["old"] if op[0] == "-a" else refs["active"]

    redo = tmp_path / "redo.qcow2"
    shutil.copy(base, redo)
    n = count_writes([strata_img_path(), "snapshot", *op, str(redo)],
                     tmp_path / "trace.txt")
    assert n > 2
    img = tmp_path / "img.qcow2"
    for when in range(1, n + 1):
        shutil.copy(base, img)
        fault = "signal=SIGKILL" if how == "kill" else "error=EIO"
        proc = subprocess.run(
            ["strace", "-f", "-qq", "-o", "/dev/null", "-e", "trace=pwrite64",
             "-e", f"inject=pwrite64:{fault}:when={when}",
             strata_img_path(), "snapshot", *op, str(img)],
            capture_output=True, text=True, timeout=120, env=traced_env())
        if how == "kill":
            assert proc.returncode == -signal.SIGKILL, \
                f"write {when} of {n} was not reached: {proc.stderr}"
        else:
            # The operation fails, or it was done and only a write at
            # close failed: the image's close writes its tables back
            # again, and only when that fails too is anything (freeing
            # the old table's clusters) left leaked, which is said.
            assert proc.returncode in (0, 1), proc.stderr
            if proc.returncode == 0:
                assert snapshot_names(img) == after
                said = ("Failed to flush the", "could not mark the image")
                if not any(m in proc.stderr for m in said):
                    assert proc.stderr == ""
                    assert qimg("check", img, check=False).returncode == 0
            else:
                assert "Could not" in proc.stderr
        safe_after_crash(img)
        names = snapshot_names(img)
        assert names in (before, after), (when, names)
        # The active state: the old one, or (apply) the snapshot's.
        proc = qimg("compare", "-f", "raw", "-F", "qcow2", refs["active"],
                    img, check=False)
        if proc.returncode != 0:
            same_content(active_after, img)
        # QEMU writes over the whole disk: a cluster shared with a
        # snapshot but flagged as not shared would be overwritten in
        # place.  Then every snapshot still listed must read back as it
        # was taken.
        qio(img, "write -P 0x99 0 8M")
        for name in names:
            probe = tmp_path / "probe.qcow2"
            shutil.copy(img, probe)
            qimg("snapshot", "-a", name, probe)
            same_content(refs[name], probe)


# ---- entries with other amounts of extra data ----

def rewrite_only_entry(img, extra):
    """Rewrites the table's only entry in place with extra as its extra
    data (the table stays inside its cluster, so refcounts still hold)."""
    off = snap_entry_offset(img)
    with open(img, "rb") as f:
        f.seek(off)
        h = f.read(40)
        old_extra = struct.unpack(">I", h[36:40])[0]
        id_len, name_len = struct.unpack(">HH", h[12:16])
        f.seek(off + 40 + old_extra)
        names = f.read(id_len + name_len)
    with open(img, "r+b") as f:
        f.seek(off)
        f.write(h[:36] + struct.pack(">I", len(extra)) + extra + names +
                b"\0" * 64)


def entry_extra(img, index):
    off = snap_entry_offset(img)
    with open(img, "rb") as f:
        for _ in range(index + 1):
            off = (off + 7) & ~7
            f.seek(off)
            h = f.read(40)
            extra_len = struct.unpack(">I", h[36:40])[0]
            id_len, name_len = struct.unpack(">HH", h[12:16])
            f.seek(off + 40)
            extra = f.read(extra_len)
            off += 40 + extra_len + id_len + name_len
    return extra


def test_unknown_extra_data_kept(tmp_path):
    """Extra data past what QEMU knows is carried over when the table is
    rewritten, as QEMU does."""
    img = tmp_path / "img.qcow2"
    qimg("create", "-q", "-f", "qcow2", img, "16M")
    qio(img, "write -P 3 0 64k")
    qimg("snapshot", "-c", "first", img)
    known = entry_extra(img, 0)[:24]
    rewrite_only_entry(img, known + b"FUTURE!!")
    check_clean(img)
    same_listing(img)
    simg("snapshot", "-c", "second", img)
    check_clean(img)
    assert entry_extra(img, 0) == known + b"FUTURE!!"
    assert len(entry_extra(img, 1)) == 24
    simg("snapshot", "-a", "first", img)
    qio(img, "read -P 3 0 64k")
    check_clean(img)


def test_entry_without_extra_data(tmp_path):
    """Old v2 entries have no extra data: no instruction count (an empty
    ICOUNT column, no icount member), the disk size taken as the
    image's."""
    img = tmp_path / "img.qcow2"
    qimg("create", "-q", "-f", "qcow2", "-o", "compat=0.10", img, "16M")
    qio(img, "write -P 4 0 64k")
    qimg("snapshot", "-c", "old", img)
    rewrite_only_entry(img, b"")
    check_clean(img)
    listing = same_listing(img)
    assert listing.splitlines()[2].endswith("00:00:00.000           ")
    same_info(img)
    assert "icount" not in simg("info", "--output=json", img).stdout
    qio(img, "write -P 5 0 64k")
    simg("snapshot", "-c", "new", img)
    check_clean(img)
    simg("snapshot", "-a", "old", img)
    qio(img, "read -P 4 0 64k")
    check_clean(img)
    same_listing(img)
    # Rewritten by strata, the old entry gains the extra data QEMU
    # writes for every entry.
    assert len(entry_extra(img, 0)) == 24


def test_dirty_lazy_image_repaired_first(tmp_path):
    """An image left dirty (lazy refcounts) is repaired when opened, with
    qemu-img's messages, before the snapshot is taken."""
    img_s = tmp_path / "s.qcow2"
    qimg("create", "-q", "-f", "qcow2", "-o", "lazy_refcounts=on", img_s,
         "16M")
    require("qemu-io")
    proc = subprocess.run(["qemu-io", "-c", "write -P 1 0 64k", "-c",
                           "abort", str(img_s)], capture_output=True)
    assert proc.returncode != 0
    assert "cleanly shut down: no" in qimg("info", img_s).stdout
    img_q = tmp_path / "q.qcow2"
    shutil.copy(img_s, img_q)
    same_result(["-c", "x"], img_s, img_q)
    check_clean(img_s)
    assert "cleanly shut down" not in qimg("info", img_s).stdout
    qio(img_s, "write -P 2 0 64k")
    simg("snapshot", "-a", "x", img_s)
    qio(img_s, "read -P 1 0 64k")
    check_clean(img_s)


@pytest.mark.parametrize("args", [["-l"], ["-c", "x"], ["-a", "s"],
                                  ["-d", "s"], ["-U", "-l"]])
def test_image_in_use(tmp_path, qsd_factory, args):
    """An image qemu-storage-daemon has open for writing: the same lock
    errors as qemu-img, and -U -l reads it."""
    img = tmp_path / "img.qcow2"
    qimg("create", "-q", "-f", "qcow2", img, "16M")
    qimg("snapshot", "-c", "s", img)
    qsd = qsd_factory(img)
    try:
        same_result(args, img, img)
    finally:
        qsd.stop()
    check_clean(img)


@pytest.mark.parametrize("when", [2, 3, 5])
def test_check_repairs_interrupted_snapshot(tmp_path, when):
    """What an interrupted snapshot leaves, strata-img check -r all
    repairs as qemu-img does (same report, same result), on an image
    that keeps its snapshots."""
    require("strace")
    img_s = tmp_path / "s.qcow2"
    qimg("create", "-q", "-f", "qcow2", img_s, "16M")
    qio(img_s, "write -P 1 0 1M", "write -c -P 2 2M 64k")
    qimg("snapshot", "-c", "a", img_s)
    qio(img_s, "write -P 3 0 512k")
    proc = subprocess.run(
        ["strace", "-f", "-qq", "-o", "/dev/null", "-e", "trace=pwrite64",
         "-e", f"inject=pwrite64:signal=SIGKILL:when={when}",
         strata_img_path(), "snapshot", "-c", "b", str(img_s)],
        capture_output=True, text=True, timeout=120, env=traced_env())
    assert proc.returncode == -signal.SIGKILL
    img_q = tmp_path / "q.qcow2"
    shutil.copy(img_s, img_q)
    s = simg("check", "-r", "all", img_s, check=False)
    q = qimg("check", "-r", "all", img_q, check=False)
    assert (s.returncode, s.stdout) == (q.returncode, q.stdout)
    assert same_stderr(s.stderr, q.stderr)
    check_clean(img_s)
    qimg("compare", img_s, img_q)
    same_listing(img_s)


# ---- convert -l: copying a snapshot ----

@pytest.mark.parametrize("param", ["one", "1", "snapshot.name=one",
                                   "snapshot.id=1",
                                   "snapshot.id=1,snapshot.name=one",
                                   "two", "snapshot.id=2,snapshot.name=one",
                                   "nope", "snapshot.foo=1", "snapshot.id",
                                   "snapshot.id=1,bogus", "snapshot.id=1,",
                                   "nosnapshot.id"])
def test_convert_snapshot(tmp_path, param):
    """convert -l copies the snapshot, not the current state, with the
    messages of qemu-img; the target has the current size (qemu-img does
    not resize to the snapshot's)."""
    img = tmp_path / "img.qcow2"
    qimg("create", "-q", "-f", "qcow2", img, "16M")
    qio(img, "write -P 1 0 1M", "write -c -P 7 4M 64k")
    refs = {"one": snap_ref(img, tmp_path / "one.raw")}
    simg("snapshot", "-c", "one", img)
    qio(img, "write -P 2 0 512k", "write -z 4M 64k")
    refs["two"] = snap_ref(img, tmp_path / "two.raw")
    qimg("snapshot", "-c", "two", img)
    qimg("resize", img, "32M")
    qio(img, "write -P 3 512k 64k")
    out_s, out_q = tmp_path / "s.raw", tmp_path / "q.raw"
    s = simg("convert", "-l", param, "-O", "raw", img, out_s, check=False)
    q = qimg("convert", "-l", param, "-O", "raw", img, out_q, check=False)
    assert (s.returncode, s.stdout) == (q.returncode, q.stdout)
    assert same_stderr(s.stderr, q.stderr), (s.stderr, q.stderr)
    if q.returncode == 0:
        assert out_s.read_bytes() == out_q.read_bytes()
        assert out_s.stat().st_size == 32 * MiB
        want = refs["two" if param == "two" else "one"].read_bytes()
        assert out_s.read_bytes()[:16 * MiB] == want


def test_convert_snapshot_refused(tmp_path):
    raw = tmp_path / "r.raw"
    raw.write_bytes(b"\1" * MiB)
    img = tmp_path / "img.qcow2"
    qimg("create", "-q", "-f", "qcow2", img, "1M")
    qimg("snapshot", "-c", "x", img)
    for args in (["-f", "raw", raw], [img, img]):
        s = simg("convert", "-l", "x", "-O", "raw", *args,
                 tmp_path / "o.raw", check=False)
        q = qimg("convert", "-l", "x", "-O", "raw", *args,
                 tmp_path / "o2.raw", check=False)
        assert s.returncode == q.returncode == 1
        assert same_stderr(s.stderr, q.stderr), (s.stderr, q.stderr)


def test_iotest_080_far_l2_offset(tmp_path):
    """An L2 entry pointing far past the image, where no refcount block
    exists: refused as qemu-img refuses it (EAGAIN), nothing made up."""
    img_s = tmp_path / "s.qcow2"
    qimg("create", "-q", "-f", "qcow2", img_s, "64M")
    qio(img_s, "write 0 512")
    l1 = qcow2_header(img_s)["l1_off"]
    l2 = peek(img_s, l1, ">Q")[0] & 0x00fffffffffffe00
    poke(img_s, l2, ">Q", 0x800000ffffff0000)
    img_q = tmp_path / "q.qcow2"
    shutil.copy(img_s, img_q)
    same_result(["-c", "test"], img_s, img_q)
    assert snapshot_names(img_s) == []


def test_iotest_080_table_size_limit(tmp_path):
    """65536 entries placed past the end of the file read as empty ones,
    as in QEMU: the image opens, and one more snapshot is too many."""
    img_s = tmp_path / "s.qcow2"
    qimg("create", "-q", "-f", "qcow2", img_s, "64M")
    poke(img_s, 64, ">Q", 0x1000000)
    poke(img_s, 60, ">I", 0x10000)
    img_q = tmp_path / "q.qcow2"
    shutil.copy(img_s, img_q)
    same_result(["-c", "test"], img_s, img_q)
    s = simg("snapshot", "-l", img_s)
    assert s.stdout == qimg("snapshot", "-l", img_q).stdout
    assert len(s.stdout.splitlines()) == 65538
    qio(img_s, "read 0 512")


def test_qmp_image_info_lists_snapshots(tmp_path):
    """stratad serves an image with snapshots read-only, and its
    query-named-block-nodes shows them as qemu-storage-daemon does."""
    require("qemu-storage-daemon")
    from qmp_util import Daemon
    img = tmp_path / "img.qcow2"
    qimg("create", "-q", "-f", "qcow2", img, "16M")
    qio(img, "write -P 1 0 64k")
    simg("snapshot", "-c", "one", img)
    qimg("snapshot", "-c", "two", img)
    args = ["--blockdev", f"driver=file,node-name=f,filename={img},"
            "read-only=on",
            "--blockdev", "driver=qcow2,node-name=n,file=f,read-only=on"]
    images = []
    for binary, name in ((binary_path("stratad"), "s"),
                         ("qemu-storage-daemon", "q")):
        with Daemon(binary, tmp_path, args, name=name) as d:
            nodes = d.connect().cmd("query-named-block-nodes",
                                    {"flat": True})
            images.append(next(n for n in nodes
                               if n["node-name"] == "n")["image"])
    s, q = images
    assert json.dumps(s["snapshots"]) == json.dumps(q["snapshots"])
    assert [sn["name"] for sn in s["snapshots"]] == ["one", "two"]
    assert list(s)[0] == list(q)[0] == "snapshots"
