# SPDX-License-Identifier: BSD-3-Clause
"""strata-img convert and the qcow2 interop matrix: images made by
strata-img and by qemu-img, v2/v3, cluster sizes, refcount widths,
backing files and compression, checked with qemu-img check/compare."""
import json
import os
import subprocess

import pytest

from img_util import (MiB, map_json, pattern_bytes, qimg, qio, same_stderr,
                      simg, strata_img_path, write_raw)

SIZE = 3 * MiB


@pytest.fixture
def pattern(tmp_path):
    path = tmp_path / "pattern.raw"
    write_raw(path, pattern_bytes(SIZE))
    return path


def assert_same(a, b, fmt_a=None, fmt_b=None):
    args = ["compare"]
    if fmt_a:
        args += ["-f", fmt_a]
    if fmt_b:
        args += ["-F", fmt_b]
    r = qimg(*args, a, b, check=False)
    assert r.returncode == 0, r.stdout + r.stderr


MATRIX = [
    ("v3 64k", "compat=1.1"),
    ("v2 64k", "compat=0.10"),
    ("v3 4k", "cluster_size=4k"),
    ("v3 2M", "cluster_size=2M"),
    ("refcount 1", "refcount_bits=1"),
    ("refcount 64", "refcount_bits=64"),
    ("v2 4k", "compat=0.10,cluster_size=4k"),
]


@pytest.mark.parametrize("maker", ["strata", "qemu"])
@pytest.mark.parametrize("name,opts", MATRIX, ids=[m[0] for m in MATRIX])
def test_matrix_write_with_strata(tmp_path, pattern, maker, name, opts):
    img = tmp_path / "t.qcow2"
    tool = simg if maker == "strata" else qimg
    tool("create", "-q", "-f", "qcow2", "-o", opts, img, SIZE)
    simg("convert", "-n", "-f", "raw", "-O", "qcow2", pattern, img)
    assert qimg("check", img, check=False).returncode == 0
    assert_same(pattern, img, "raw", "qcow2")
    ours = json.loads(simg("check", "--output=json", img).stdout)
    theirs = json.loads(qimg("check", "--output=json", img).stdout)
    assert ours == theirs
    # And back out again with strata-img.
    out = tmp_path / "out.raw"
    simg("convert", "-O", "raw", img, out)
    assert out.read_bytes() == pattern.read_bytes()


def test_convert_raw_to_qcow2_sparse(tmp_path, pattern):
    dst = tmp_path / "d.qcow2"
    simg("convert", "-f", "raw", "-O", "qcow2", pattern, dst)
    assert_same(pattern, dst, "raw", "qcow2")
    assert qimg("check", dst, check=False).returncode == 0
    # Zero blocks of the pattern were not allocated.
    ours = map_json(simg, dst)
    theirs_dst = tmp_path / "q.qcow2"
    qimg("convert", "-f", "raw", "-O", "qcow2", pattern, theirs_dst)
    strip = lambda m: [{k: v for k, v in e.items() if k != "offset"} for e in m]
    assert strip(ours) == strip(map_json(qimg, theirs_dst))


def test_convert_chain_to_raw_and_qcow2(tmp_path):
    base = tmp_path / "base.qcow2"
    top = tmp_path / "top.qcow2"
    qimg("create", "-f", "qcow2", base, 4 * MiB)
    qio(base, "write -P 0xaa 0 2M")
    qimg("create", "-f", "qcow2", "-b", "base.qcow2", "-F", "qcow2", top)
    qio(top, "write -P 0xbb 1M 1M", "write -z 0 64k")
    out_raw = tmp_path / "o.raw"
    simg("convert", "-O", "raw", top, out_raw)
    assert_same(top, out_raw, "qcow2", "raw")
    out_q = tmp_path / "o.qcow2"
    simg("convert", "-W", "-m", "4", "-O", "qcow2", top, out_q)
    assert_same(top, out_q)
    assert qimg("check", out_q, check=False).returncode == 0


def test_convert_with_backing(tmp_path):
    base = tmp_path / "base.qcow2"
    top = tmp_path / "top.qcow2"
    qimg("create", "-f", "qcow2", base, 4 * MiB)
    qio(base, "write -P 0xaa 0 2M")
    qimg("create", "-f", "qcow2", "-b", "base.qcow2", "-F", "qcow2", top)
    qio(top, "write -P 0xbb 1M 100k", "write -z 3M 64k")
    out = tmp_path / "o.qcow2"
    simg("convert", "-O", "qcow2", "-B", "base.qcow2", "-F", "qcow2", top, out)
    assert_same(top, out)
    assert qimg("check", out, check=False).returncode == 0
    info = json.loads(qimg("info", "--output=json", out).stdout)
    assert info["backing-filename"] == "base.qcow2"
    # Only what the top defines was copied.
    assert map_json(simg, out) == map_json(qimg, out)
    depths = {e["depth"] for e in map_json(qimg, out) if e["data"]}
    assert depths == {0, 1}


def test_convert_compressed(tmp_path, pattern):
    out = tmp_path / "c.qcow2"
    simg("convert", "-c", "-f", "raw", "-O", "qcow2", pattern, out)
    assert_same(pattern, out, "raw", "qcow2")
    check = json.loads(qimg("check", "--output=json", out).stdout)
    assert check.get("compressed-clusters", 0) > 0
    ours = json.loads(simg("check", "--output=json", out).stdout)
    assert ours == check


def test_read_qemu_compressed(tmp_path, pattern):
    comp = tmp_path / "qc.qcow2"
    qimg("convert", "-c", "-f", "raw", "-O", "qcow2", pattern, comp)
    out = tmp_path / "o.raw"
    simg("convert", "-O", "raw", comp, out)
    assert out.read_bytes() == pattern.read_bytes()


def test_convert_sparse_size_zero_allocates(tmp_path):
    src = tmp_path / "z.raw"
    write_raw(src, bytes(1 * MiB))
    out = tmp_path / "o.qcow2"
    simg("convert", "-S", "0", "-f", "raw", "-O", "qcow2", src, out)
    assert_same(src, out, "raw", "qcow2")
    assert qimg("check", out, check=False).returncode == 0


def test_convert_multiple_sources(tmp_path):
    a = tmp_path / "a.raw"
    b = tmp_path / "b.raw"
    write_raw(a, b"\x01" * MiB)
    write_raw(b, b"\x02" * MiB)
    out = tmp_path / "o.raw"
    simg("convert", "-f", "raw", "-O", "raw", a, b, out)
    assert out.read_bytes() == b"\x01" * MiB + b"\x02" * MiB


def test_convert_progress(tmp_path, pattern):
    out = tmp_path / "o.raw"
    # Bytes, not text: universal newlines would turn \r into \n.
    r = subprocess.run([strata_img_path(), "convert", "-p", "-f", "raw",
                        "-O", "raw", str(pattern), str(out)],
                       capture_output=True, check=True)
    assert r.stdout.startswith(b"    (0.00/100%)\r")
    assert r.stdout.endswith(b"    (100.00/100%)\r\n")
    assert b"\n" not in r.stdout[:-1]


@pytest.mark.parametrize("fmt", ["raw", "qcow2"])
@pytest.mark.parametrize("extra", [[], ["-S", "0"]])
def test_convert_progress_steps_match_qemu(tmp_path, fmt, extra):
    """iotest 086: the meter moves with the data copied, not with the
    disk's size, so four 1 MiB extents of a 128 MiB disk are 25 % each."""
    src = tmp_path / f"src.{fmt}"
    qimg("create", "-q", "-f", fmt, src, 128 * MiB)
    for off in ("0", "2M", "4M", "32M"):
        qio(src, f"write {off} 1M", fmt=fmt)
    qio(src, "write -z 8M 1M", fmt=fmt)
    outs = []
    for tool in (strata_img_path(), "qemu-img"):
        out = tmp_path / f"out-{os.path.basename(tool)}.{fmt}"
        r = subprocess.run([tool, "convert", "-p", *extra, "-O", fmt,
                            "-f", fmt, str(src), str(out)],
                           capture_output=True, check=True)
        outs.append(r.stdout)
    assert outs[0] == outs[1]


@pytest.mark.parametrize("args,msg", [
    (["-O", "foo"], "Unknown file format 'foo'"),
    (["-c", "-O", "raw"], "Compression not supported for this file format"),
    (["-m", "17"], "Invalid number of coroutines"),
    (["-S", "abc"], "Invalid buffer size for sparse output"),
    (["-O", "raw", "-o", "bogus=1"], "Invalid parameter 'bogus'"),
    (["-O", "raw", "-r", "fast"], "Invalid rate limit specified"),
    (["-O", "raw", "-r", "-5"], "Invalid rate limit specified"),
])
def test_convert_errors_match_qemu(tmp_path, pattern, args, msg):
    out = tmp_path / "o.img"
    ours = simg("convert", "-f", "raw", *args, pattern, out, check=False)
    theirs = qimg("convert", "-f", "raw", *args, pattern, out, check=False)
    assert ours.returncode == theirs.returncode == 1
    assert msg in ours.stderr and msg in theirs.stderr


def test_convert_target_too_small(tmp_path, pattern):
    small = tmp_path / "s.raw"
    write_raw(small, bytes(4096))
    r = simg("convert", "-n", "-f", "raw", "-O", "raw", pattern, small,
             check=False)
    assert r.returncode == 1
    assert "output file is smaller than input file" in r.stderr


def test_convert_missing_source(tmp_path):
    r = simg("convert", "-O", "raw", tmp_path / "nope", tmp_path / "o",
             check=False)
    assert r.returncode == 1
    assert "Could not open" in r.stderr and "nope" in r.stderr
    assert not os.path.exists(tmp_path / "o")


@pytest.mark.parametrize("cluster", ["4k", "64k"])
def test_partial_writes_into_strata_overlay(tmp_path, cluster):
    """Writes that cover only part of a cluster of a strata-made overlay
    must keep the rest of the cluster from the backing file (COW)."""
    base = tmp_path / "base.qcow2"
    src = tmp_path / "src.qcow2"
    dst = tmp_path / "dst.qcow2"
    qimg("create", "-f", "qcow2", base, 2 * MiB)
    qio(base, "write -P 0xaa 0 2M")
    qimg("create", "-f", "qcow2", "-b", "base.qcow2", "-F", "qcow2", src)
    qio(src, "write -P 0xbb 4608 1024", "write -P 0xcc 70000 5000",
        "write -z 1M 4096")
    simg("create", "-q", "-f", "qcow2", "-o", f"cluster_size={cluster}",
         "-b", "base.qcow2", "-F", "qcow2", dst)
    simg("convert", "-n", "-B", "base.qcow2", "-O", "qcow2", src, dst)
    assert_same(src, dst)
    assert qimg("check", dst, check=False).returncode == 0


def test_commit_into_deeper_base(tmp_path):
    base = tmp_path / "base.qcow2"
    mid = tmp_path / "mid.qcow2"
    top = tmp_path / "top.qcow2"
    qimg("create", "-f", "qcow2", base, 2 * MiB)
    qio(base, "write -P 1 0 2M")
    qimg("create", "-f", "qcow2", "-b", "base.qcow2", "-F", "qcow2", mid)
    qio(mid, "write -P 2 0 512k")
    qimg("create", "-f", "qcow2", "-b", "mid.qcow2", "-F", "qcow2", top)
    qio(top, "write -P 3 256k 512k")
    before = tmp_path / "before.raw"
    qimg("convert", "-O", "raw", top, before)
    simg("commit", "-b", base, top)
    assert_same(base, before, "qcow2", "raw")
    assert qimg("check", base, check=False).returncode == 0


def test_convert_rate_limit(tmp_path):
    """-r paces the copy: 8 MiB of data at 8 MiB/s cannot finish in much
    under a second (the first 2 MiB chunk goes at once, so at least
    0.75 s), and the copy is still exact.  Only a lower bound is checked:
    a loaded machine can make it slower, never faster."""
    import time
    src = tmp_path / "src.raw"
    src.write_bytes(os.urandom(8 * MiB))
    out = tmp_path / "o.qcow2"
    t0 = time.monotonic()
    simg("convert", "-f", "raw", "-O", "qcow2", "-r", "8M", src, out)
    assert time.monotonic() - t0 >= 0.7
    assert qimg("compare", "-f", "raw", "-F", "qcow2", src, out).returncode == 0


def salvage_source(tmp_path, status_fail, read_fail, fmt="qcow2"):
    """iotest 251's source: blkdebug over an image, failing block status
    and reads at the given byte offsets."""
    orig = tmp_path / f"orig.{fmt}"
    qimg("create", "-q", "-f", fmt, orig, 64 * MiB)
    qio(orig, "write -P 42 0 64M", fmt=fmt)
    rules = ([{"event": "none", "iotype": "block-status", "errno": 5,
               "sector": o // 512} for o in status_fail] +
             [{"event": "none", "iotype": "read", "errno": 5,
               "sector": o // 512} for o in read_fail])
    return orig, "json:" + json.dumps({
        "driver": "blkdebug",
        "image": {"driver": fmt, "file": {"driver": "file",
                                          "filename": str(orig)}},
        "inject-error": rules})


@pytest.mark.parametrize("fmt", ["qcow2", "raw"])
@pytest.mark.parametrize("extra", [[], ["-m", "1"], ["-p"]])
def test_convert_salvage_matches_qemu_img(tmp_path, fmt, extra):
    """--salvage: unreadable sectors become zeroes and warnings, in
    qemu-img's order (its first pass over the block status included);
    without it the same source fails."""
    status_fail = [16 * MiB + 8192, 33 * MiB + 512]
    read_fail = ([32 * MiB - 65536, 33 * MiB + 512] +
                 list(range(34 * MiB, 34 * MiB + 4096, 512)))
    orig, src = salvage_source(tmp_path, status_fail, read_fail, fmt)
    runs = []
    for tool, name in ((simg, "s.img"), (qimg, "q.img")):
        runs.append(tool("convert", "--salvage", *extra, "-O", "qcow2", src,
                         tmp_path / name, check=False))
    ours, theirs = runs
    assert ours.returncode == theirs.returncode == 0
    assert ours.stdout == theirs.stdout
    assert ours.stderr.replace("strata-img", "qemu-img") == theirs.stderr
    assert "error while reading offset" in theirs.stderr
    assert_same(tmp_path / "s.img", tmp_path / "q.img")
    # The failed sectors are the only difference from the source.
    for off in read_fail:
        qio(orig, f"write -z {off} 512", fmt=fmt)
    assert_same(orig, tmp_path / "s.img", fmt, "qcow2")
    without = simg("convert", src, tmp_path / "n.img", check=False)
    theirs = qimg("convert", src, tmp_path / "m.img", check=False)
    assert without.returncode == theirs.returncode == 1
    assert same_stderr(without.stderr, theirs.stderr)


def test_convert_copy_offload_refusals_match_qemu_img(tmp_path, pattern):
    for args in (["-C", "-c", "-O", "qcow2"], ["-C", "-S", "8k"],
                 ["-C", "--salvage"]):
        ours = simg("convert", *args, pattern, tmp_path / "o", check=False)
        theirs = qimg("convert", *args, pattern, tmp_path / "o", check=False)
        assert ours.returncode == theirs.returncode == 1
        assert same_stderr(ours.stderr, theirs.stderr)
