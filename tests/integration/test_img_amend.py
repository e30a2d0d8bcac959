# SPDX-License-Identifier: BSD-3-Clause
"""strata-img amend against qemu-img amend: the same images (plain, with
zero clusters of every kind, on a backing file, with internal snapshots,
lazy refcounts, other refcount widths, compat=0.10, extended L2) and
the same -o options; exit code, stdout and stderr (program name made
equal) must match, and so must the result: qemu-img info JSON (but the
disk usage), qemu-img check clean, and the content (qemu-img compare of
the two results, and with the image before)."""
import json
import shutil

import pytest

from img_util import qimg, qio, simg

MiB = 1 << 20


def setup_plain(d):
    qimg("create", "-q", "-f", "qcow2", d / "img.qcow2", "64M")
    qio(d / "img.qcow2", "write -P 0x11 0 2M", "write -P 0x12 40M 1M")


def setup_zeroes(d, extra=()):
    img = d / "img.qcow2"
    qimg("create", "-q", "-f", "qcow2", *extra, img, "64M")
    # ZERO_PLAIN (-z -u on nothing), ZERO_ALLOC (-z over data, no unmap)
    # and data, side by side.
    qio(img, "write -P 0x21 0 1M", "write -z 0 512k",
        "write -z -u 4M 1M", "write -P 0x22 8M 1M", "write -P 0x23 20M 64k")


def setup_backing(d):
    base = d / "base.qcow2"
    qimg("create", "-q", "-f", "qcow2", base, "64M")
    qio(base, "write -P 0x31 0 16M")
    img = d / "img.qcow2"
    qimg("create", "-q", "-f", "qcow2", "-b", "base.qcow2", "-F", "qcow2",
         img)
    # Zeroes over the base's data: v2 must keep them zero.
    qio(img, "write -z 1M 1M", "write -z -u 4M 64k", "write -P 0x32 8M 1M")


def setup_snapshots(d):
    img = d / "img.qcow2"
    qimg("create", "-q", "-f", "qcow2", img, "64M")
    qio(img, "write -P 0x41 0 2M", "write -z 4M 1M")
    qimg("snapshot", "-c", "s1", img)
    qio(img, "write -z 0 1M", "write -P 0x42 10M 1M")
    qimg("snapshot", "-c", "s2", img)
    qio(img, "write -z -u 10M 64k")


SETUPS = {
    "plain": setup_plain,
    "zeroes": setup_zeroes,
    "lazy": lambda d: setup_zeroes(d, ["-o", "lazy_refcounts=on"]),
    "refcount64": lambda d: setup_zeroes(d, ["-o", "refcount_bits=64"]),
    "v2": lambda d: setup_zeroes(d, ["-o", "compat=0.10"]),
    "backing": setup_backing,
    "snapshots": setup_snapshots,
}

OPTIONS = [
    ["-o", "compat=0.10"],
    ["-p", "-o", "compat=0.10"],
    ["-o", "compat=1.1"],
    ["-p", "-o", "compat=v3"],
    ["-o", "lazy_refcounts=on"],
    ["-o", "lazy_refcounts=off"],
    ["-o", "compat=0.10,lazy_refcounts=on"],
    ["-o", "refcount_bits=1"],
    ["-o", "refcount_bits=8"],
    ["-o", "refcount_bits=64"],
    ["-o", "compat=0.10,refcount_bits=16"],
    ["-o", "compat=0.10,refcount_bits=8"],
    ["-o", "size=128M"],
    ["-p", "-o", "size=96M", "-o", "lazy_refcounts=on"],
    ["-o", "backing_file=base.qcow2,backing_fmt=qcow2"],
    ["-o", "backing_fmt=raw"],
]

# Whole-matrix cases that need something the image does not have, or
# that QEMU itself cannot do, still compare errors; none are skipped.
CASES = [(s, o) for s in SETUPS for o in OPTIONS]


def info_without_usage(path):
    info = json.loads(qimg("info", "--output=json", "-U", path).stdout)
    for k in ("actual-size", "filename", "full-backing-filename"):
        info.pop(k, None)
    return info


@pytest.mark.parametrize("setup,opts", CASES,
                         ids=[f"{s}-{'_'.join(o)}" for s, o in CASES])
def test_amend_like_qemu_img(tmp_path, setup, opts):
    ref = tmp_path / "orig"
    ref.mkdir()
    SETUPS[setup](ref)
    shutil.copytree(ref, tmp_path / "before")
    before = tmp_path / "before" / "img.qcow2"   # with its backing file
    results = {}
    for tool, run in (("qemu", qimg), ("strata", simg)):
        d = tmp_path / tool
        shutil.copytree(ref, d)
        proc = run("amend", *opts, d / "img.qcow2", check=False)
        results[tool] = (proc.returncode, proc.stdout,
                         proc.stderr.replace("strata-img", "qemu-img"))
    assert results["strata"] == results["qemu"]
    q, s = tmp_path / "qemu" / "img.qcow2", tmp_path / "strata" / "img.qcow2"
    assert info_without_usage(s) == info_without_usage(q)
    check = qimg("check", s, check=False)
    assert check.returncode == 0, check.stdout + check.stderr
    assert qimg("compare", "-q", q, s, check=False).returncode == 0
    # The content never changes (a bigger size reads zeroes at the end).
    assert qimg("compare", "-q", before, s, check=False).returncode == 0
    if results["strata"][0] == 0 and setup == "snapshots":
        # Every snapshot still reads as before.  (Not compared with
        # qemu-img's result: 7.2 writes the zeroes of a downgrade into
        # clusters a snapshot shares, and damages the snapshot.)
        for sn in ("s1", "s2"):
            a = tmp_path / f"{sn}-before.raw"
            b = tmp_path / f"{sn}-s.raw"
            qimg("convert", "-O", "raw", "-l", sn, before, a)
            qimg("convert", "-O", "raw", "-l", sn, s, b)
            old, new = a.read_bytes(), b.read_bytes()
            # A bigger image reads its snapshots with zeroes after them.
            assert new[:len(old)] == old, sn
            assert new[len(old):].count(0) == len(new) - len(old), sn


def test_amend_help_and_usage(tmp_path):
    img = tmp_path / "a.qcow2"
    qimg("create", "-q", "-f", "qcow2", img, "1M")
    for args in (["-f", "qcow2", "-o", "help"], ["-o", "help", img],
                 ["-o", "help"], [img], ["-o", "compat=1.1", img, img],
                 ["-f", "raw", "-o", "size=2M", img],
                 ["-o", "compat=1.1,,x", img]):
        q = qimg("amend", *args, check=False)
        s = simg("amend", *args, check=False)
        assert (s.returncode, s.stdout,
                s.stderr.replace("strata-img", "qemu-img")) == \
            (q.returncode, q.stdout, q.stderr), args


def test_zstd_downgrade_refused(tmp_path):
    """qemu-img 7.2 turns a zstd image into compat=0.10, where its
    compressed clusters can no longer be read; strata refuses."""
    img = tmp_path / "z.qcow2"
    qimg("create", "-q", "-f", "qcow2", "-o", "compression_type=zstd", img,
         "4M")
    qio(img, "write -c -P 0x51 0 64k")
    head = img.read_bytes()[:4096]
    proc = simg("amend", "-o", "compat=0.10", img, check=False)
    assert proc.returncode == 1
    assert "Cannot downgrade an image with compression type 'zstd'" in \
        proc.stderr
    assert img.read_bytes()[:4096] == head
    qio(img, "read -P 0x51 0 64k")


def test_amend_keeps_strata_parameters(tmp_path):
    img = tmp_path / "p.qcow2"
    qimg("create", "-q", "-f", "qcow2", img, "64M")
    qio(img, "write -P 0x61 0 1M", "write -z 2M 1M")
    simg("update", img, "copy-on-read=on", "prefetch=on-open")
    for opts in ("compat=0.10", "compat=1.1", "refcount_bits=8",
                 "size=80M", "lazy_refcounts=on"):
        simg("amend", "-o", opts, img)
        info = json.loads(simg("info", "--output=json", img).stdout)
        assert info["format-specific"]["data"]["strata-parameters"] == \
            {"copy-on-read": True, "prefetch": "on-open"}, opts
        assert qimg("check", img, check=False).returncode == 0
    qio(img, "read -P 0x61 0 1M", "read -P 0 2M 1M")


@pytest.mark.parametrize("case", ["shrink-into-data", "grow-over-backing",
                                  "shrink-with-snapshot"])
def test_amend_size_writes_its_zeroes(tmp_path, case):
    """amend size= writes the zeroes a resize needs (past an unaligned
    new end, over the head of an area a backing file reaches into), as
    qemu-img's does, although amend opens the image for metadata changes
    only."""
    ref = tmp_path / "orig"
    ref.mkdir()
    img = ref / "img.qcow2"
    if case == "grow-over-backing":
        qimg("create", "-q", "-f", "qcow2", ref / "base.qcow2", "2M")
        qio(ref / "base.qcow2", "write -P 2 0 2M")
        qimg("create", "-q", "-f", "qcow2", "-b", "base.qcow2", "-F",
             "qcow2", img, "503k")
        size = "1M"
    else:
        qimg("create", "-q", "-f", "qcow2", img, "1M")
        qio(img, "write -P 1 0 1M")
        if case == "shrink-with-snapshot":
            qimg("snapshot", "-c", "snap", img)
        size = "600k"
    results = {}
    for tool, run in (("qemu", qimg), ("strata", simg)):
        d = tmp_path / tool
        shutil.copytree(ref, d)
        proc = run("amend", "-o", f"size={size}", d / "img.qcow2",
                   check=False)
        results[tool] = (proc.returncode, proc.stdout,
                         proc.stderr.replace("strata-img", "qemu-img"))
    assert results["strata"] == results["qemu"]
    assert results["strata"][0] == 0
    q, s = tmp_path / "qemu" / "img.qcow2", tmp_path / "strata" / "img.qcow2"
    check = qimg("check", s, check=False)
    assert check.returncode == 0, check.stdout + check.stderr
    assert qimg("compare", "-q", q, s, check=False).returncode == 0
    if case != "shrink-with-snapshot":
        assert (qimg("map", "--output=json", s).stdout ==
                qimg("map", "--output=json", q).stdout)
    # (With the snapshot, the bytes past the new end in the last cluster
    # are zeroed as strata always does, so they cannot come back if the
    # image grows; the cluster is the snapshot's too, so the zeroing
    # copies it, where qemu-img leaves the old bytes in place.)
    if case == "grow-over-backing":
        qio(s, "read -P 2 0 503k", "read -P 0 503k 521k")
    else:
        qio(s, "read -P 1 0 600k")
    if case == "shrink-with-snapshot":
        qimg("snapshot", "-a", "snap", s)
        qio(s, "read -P 1 0 1M")
