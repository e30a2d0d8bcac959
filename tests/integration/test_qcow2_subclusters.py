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
    # Repair (QEMU leaves invalid bitmaps alone): same texts, same bytes.
    rq, rs = tmp_path / "rq.qcow2", tmp_path / "rs.qcow2"
    shutil.copy(img, rq)
    shutil.copy(img, rs)
    q = qimg("check", "-r", "all", rq, check=False)
    s = simg("check", "-r", "all", rs, check=False)
    assert (s.returncode, s.stdout) == (q.returncode, q.stdout)
    assert same_stderr(s.stderr, q.stderr), (q.stderr, s.stderr)
    # Known difference: where the freed cluster ends the file inside a
    # sector, strata's file layer zeroes up to the sector's end.
    a, b = rq.read_bytes(), rs.read_bytes()
    assert b[:len(a)] == a and b[len(a):] == bytes(len(b) - len(a))
    assert len(b) - len(a) < 512
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


# ---- writes through stratad (NBD), judged against qemu-io ----

def nbd_ops(tmp_path, img, ops, backing_fmt=None):
    """Applies ops through stratad serving img over NBD."""
    import nbd
    from nbd_util import qcow2_blockdev, start_server
    bd = qcow2_blockdev(str(img))
    bd["discard"] = "unmap"  # as qemu-io, so zeroes may free clusters
    srv = start_server("strata", tmp_path, [bd],
                       [{"type": "nbd", "id": "e", "node-name": "disk",
                         "name": "disk", "writable": True}])
    try:
        h = nbd.NBD()
        h.connect_uri(srv.uri("disk"))
        for op in ops:
            kind, off, ln = op[0], op[1], op[2]
            if kind == "write":
                h.pwrite(bytes([op[3]]) * ln, off)
            elif kind == "zero":
                h.zero(ln, off, nbd.CMD_FLAG_NO_HOLE)
            elif kind == "unmap":
                h.zero(ln, off)
            elif kind == "discard":
                h.trim(ln, off)
        h.flush()
        h.shutdown()
    finally:
        srv.stop()


def qio_cmds(ops):
    cmds = []
    for op in ops:
        kind, off, ln = op[0], op[1], op[2]
        cmds.append({"write": f"write -P {op[3] if kind == 'write' else 0} "
                              f"{off} {ln}",
                     "zero": f"write -z {off} {ln}",
                     "unmap": f"write -z -u {off} {ln}",
                     "discard": f"discard {off} {ln}"}[kind])
    return cmds


def image_layout(path):
    """qemu-img map of path without what only the host file system
    decides: "zero" on a data extent comes from a hole in the image file
    under an allocated cluster, and whether a run of zeroes written there
    stays a hole depends on the order in which qemu-img convert's
    parallel requests reach the file.  Adjacent extents that then agree
    are merged."""
    out = []
    for e in json.loads(qimg("map", "--output=json", path).stdout):
        if e["data"]:
            e["zero"] = False
        last = out[-1] if out else None
        if (last and all(last[k] == e[k] for k in e
                         if k not in ("start", "length", "offset"))
                and last["start"] + last["length"] == e["start"]
                and ("offset" not in e or
                     last.get("offset", -1) + last["length"] == e["offset"])):
            last["length"] += e["length"]
        else:
            out.append(e)
    return out


def assert_same_result(tmp_path, ref, img):
    """img (written by strata) is clean and equal to ref (written by
    qemu-io) in content and qemu-img map."""
    a = qimg("check", ref, check=False)
    b = qimg("check", img, check=False)
    assert b.returncode == 0, b.stdout + b.stderr
    assert b.stdout.replace(str(img), "X") == a.stdout.replace(str(ref), "X")
    assert image_layout(img) == image_layout(ref)
    c = qimg("compare", ref, img, check=False)
    assert c.returncode == 0, c.stdout + c.stderr


K = KiB
WRITE_CASES = {
    "sub-subcluster": [("write", 2 * K, 1 * K, 1)],
    "aligned-4k": [("write", 4 * K, 4 * K, 1)],
    "across-clusters": [("write", 3 * K, 70 * K, 2), ("write", 200 * K, 4 * K, 3),
                        ("write", 201 * K, 1 * K, 4)],
    "rewrite": [("write", 0, 1024 * K, 5), ("write", 10 * K, 1 * K, 6)],
    "zeroes": [("zero", 2 * K, 4 * K), ("zero", 64 * K, 64 * K),
               ("unmap", 128 * K, 200 * K), ("zero", 333 * K, 1 * K)],
    "mixed": [("write", 0, 300 * K, 7), ("zero", 2 * K, 4 * K),
              ("unmap", 64 * K, 64 * K), ("zero", 130 * K, 3 * K),
              ("discard", 192 * K, 64 * K), ("write", 131 * K, 1 * K, 8),
              ("discard", 0, 64 * K)],
    "fill-subclusters": [("write", 1 * K, 1 * K, 1), ("write", 6 * K, 9 * K, 2),
                         ("write", 0, 64 * K, 3)],
}


@pytest.mark.parametrize("cs", CLUSTER_SIZES)
@pytest.mark.parametrize("backing", [False, True])
@pytest.mark.parametrize("case", sorted(WRITE_CASES))
def test_nbd_writes_match_qemu_io(tmp_path, cs, backing, case):
    ops = WRITE_CASES[case]
    size = max(1024 * K, 4 * cs)
    if cs == 2 * MiB:
        # Scale the offsets so the pieces land in several clusters.
        ops = [(o[0], o[1] * 32, o[2] * (32 if o[2] >= 64 * K else 1),
                *o[3:]) for o in ops]
        size = 40 * MiB
    base = make_base(tmp_path, size) if backing else None
    ref = make_image(tmp_path, "ref.qcow2", size, cs, base)
    qio(ref, "write -P 9 0 %d" % (cs // 2), "write -z %d %d" % (cs, cs // 4))
    img = tmp_path / "img.qcow2"
    shutil.copy(ref, img)
    qio(ref, *qio_cmds(ops))
    nbd_ops(tmp_path, img, ops)
    assert_same_result(tmp_path, ref, img)


def test_small_write_copies_no_backing(tmp_path):
    """The point of subclusters: 4k written into a 64k cluster over a
    backing file allocates the cluster but copies nothing from the
    backing file; only the written subclusters are allocated."""
    base = make_base(tmp_path, MiB)
    img = make_image(tmp_path, "t.qcow2", MiB, 64 * KiB, base)
    nbd_ops(tmp_path, img, [("write", 8 * K, 4 * K, 0x55)])
    m = json.loads(qimg("map", "--output=json", img).stdout)
    top = [e for e in m if e["depth"] == 0]
    assert [(e["start"], e["length"]) for e in top] == [(8 * K, 4 * K)], m
    entry, bitmap = l2_entry(img, 0)
    assert bitmap == 0b11 << 4, hex(bitmap)  # subclusters 4 and 5
    # The host cluster is the last one; nothing past the data written.
    host = entry & 0x00fffffffffffe00
    assert os.path.getsize(img) == host + 12 * K


def test_nbd_concurrent_writes_same_clusters(tmp_path):
    """Clients write different subclusters of the same clusters at once:
    every write lands, nothing is lost to a racing allocation."""
    import threading

    import nbd
    from nbd_util import qcow2_blockdev, start_server
    cs = 64 * K
    sc = cs // 32
    base = make_base(tmp_path, 2 * MiB)
    img = make_image(tmp_path, "t.qcow2", 2 * MiB, cs, base)
    srv = start_server("strata", tmp_path, [qcow2_blockdev(str(img))],
                       [{"type": "nbd", "id": "e", "node-name": "disk",
                         "name": "disk", "writable": True}])
    expected = bytearray(b"\xaa" * (2 * MiB))
    errors = []

    def worker(t):
        try:
            h = nbd.NBD()
            h.connect_uri(srv.uri("disk"))
            for c in range(16):
                for i in range(t, 32, 4):
                    off = c * cs + i * sc + (t * 100)
                    h.pwrite(bytes([t + 1]) * 700, off)
            h.flush()
            h.shutdown()
        except Exception as e:  # reported below
            errors.append(e)

    for t in range(4):
        for c in range(16):
            for i in range(t, 32, 4):
                off = c * cs + i * sc + t * 100
                expected[off:off + 700] = bytes([t + 1]) * 700
    try:
        threads = [threading.Thread(target=worker, args=(t,))
                   for t in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
    finally:
        srv.stop()
    assert not errors, errors
    assert qimg("check", img).returncode == 0
    assert raw_of(qimg, img, tmp_path, "q") == bytes(expected)


def nbd_extents(uri, size):
    import nbd
    h = nbd.NBD()
    h.add_meta_context("base:allocation")
    h.connect_uri(uri)
    out = []

    def cb(meta, offset, entries, err):
        for i in range(0, len(entries), 2):
            out.append((entries[i], entries[i + 1]))
        return 0

    off = 0
    while off < size:
        before = len(out)
        h.block_status(size - off, off, cb)
        off += sum(e[0] for e in out[before:])
    h.shutdown()
    return out


@pytest.mark.parametrize("backing", [False, True])
def test_nbd_block_status_matches_qsd(tmp_path, backing):
    from nbd_util import qcow2_blockdev, start_server
    cs = 64 * K
    base = make_base(tmp_path, 20 * cs) if backing else None
    img = make_image(tmp_path, "t.qcow2", 20 * cs, cs, base)
    qio(img, *qemu_writes(cs))
    exports = [{"type": "nbd", "id": "e", "node-name": "disk",
                "name": "disk", "writable": False}]
    res = {}
    for kind in ("strata", "qsd"):
        d = tmp_path / kind
        d.mkdir()
        srv = start_server(kind, d, [qcow2_blockdev(str(img),
                                                    read_only=True)],
                           exports)
        try:
            res[kind] = nbd_extents(srv.uri("disk"), 20 * cs)
        finally:
            srv.stop()
    assert res["strata"] == res["qsd"]


# ---- strata-img commands on images with subclusters ----

def chain(tmp_path, cs=64 * K):
    base = tmp_path / "base.qcow2"
    qimg("create", "-q", "-f", "qcow2", "-o",
         f"extended_l2=on,cluster_size={cs}", base, "4M")
    qio(base, "write -P 1 0 1M", "write -P 3 3M 100k")
    top = tmp_path / "top.qcow2"
    qimg("create", "-q", "-f", "qcow2", "-o",
         f"extended_l2=on,cluster_size={cs}", "-F", "qcow2", "-b", base,
         top, "4M")
    qio(top, "write -P 2 5k 3k", "write -z 64k 10k", "write -P 4 2M 300k",
        "discard 3M 64k")
    return base, top


@pytest.mark.parametrize("args", [
    ["-O", "qcow2", "-o", "extended_l2=on"],
    ["-O", "qcow2", "-o", "extended_l2=on,cluster_size=16k"],
    ["-c", "-O", "qcow2", "-o", "extended_l2=on"],
    ["-O", "qcow2", "-o", "extended_l2=on,cluster_size=2M"],
])
def test_convert(tmp_path, args):
    _, top = chain(tmp_path)
    q, s = tmp_path / "q.qcow2", tmp_path / "s.qcow2"
    qimg("convert", *args, top, q)
    simg("convert", *args, top, s)
    assert_same_result(tmp_path, q, s)


def test_convert_with_backing(tmp_path):
    base, top = chain(tmp_path)
    q, s = tmp_path / "q.qcow2", tmp_path / "s.qcow2"
    for tool, out in ((qimg, q), (simg, s)):
        tool("convert", "-O", "qcow2", "-o", "extended_l2=on", "-B", base,
             "-F", "qcow2", top, out)
    assert_same_result(tmp_path, q, s)


def test_rebase_and_commit(tmp_path):
    base, top = chain(tmp_path)
    ref = tmp_path / "ref.raw"
    qimg("convert", "-O", "raw", top, ref)
    # Rebase onto nothing: the top takes in what it read from the base.
    flat = tmp_path / "flat.qcow2"
    shutil.copy(top, flat)
    simg("rebase", "-F", "raw", "-b", "", flat)
    assert qimg("check", flat).returncode == 0
    same_output(["compare", flat, ref])
    # Commit the top into the base (content only: qemu-img commits
    # through a block job whose layout differs).
    simg("commit", top)
    assert qimg("check", base).returncode == 0
    same_output(["compare", base, ref])


@pytest.mark.parametrize("backing", [False, True])
def test_resize(tmp_path, backing):
    """Shrinking discards whole clusters, growing over a longer backing
    file zeroes the new area (QEMU's iotest 271, full discard)."""
    base = make_base(tmp_path, MiB) if backing else None
    imgs = []
    for name, tool in (("q.qcow2", qimg), ("s.qcow2", simg)):
        img = make_image(tmp_path, name, MiB, 64 * KiB, base)
        qio(img, "write -q 0 128k", "write -q -P 7 300k 3k")
        tool("resize", "--shrink", img, "64k")
        tool("resize", img, "1M")
        imgs.append(img)
    assert_same_result(tmp_path, imgs[0], imgs[1])
    assert l2_entry(imgs[0], 1) == l2_entry(imgs[1], 1)


def test_amend(tmp_path):
    img = make_image(tmp_path, "t.qcow2", MiB, 64 * KiB)
    qio(img, "write -P 1 5k 70k")
    for opts in ("extended_l2=off", "extended_l2=on", "compat=0.10"):
        same_output(["amend", "-o", opts, img], allow_fail=True)
    copy = tmp_path / "c.qcow2"
    shutil.copy(img, copy)
    qimg("amend", "-o", "refcount_bits=4,lazy_refcounts=on", copy)
    simg("amend", "-o", "refcount_bits=4,lazy_refcounts=on", img)
    assert_same_result(tmp_path, copy, img)
    same_output(["info", img])


@pytest.mark.parametrize("cs", [16 * KiB, 64 * KiB])
def test_threads_race_in_shared_clusters(tmp_path, cs):
    """Threads write their own sectors interleaved inside shared clusters
    (allocations racing in the same cluster and L2 table), and write,
    zero and discard whole clusters at once; the tool verifies every
    byte and qemu-img check must be clean."""
    from qcow2_util import strata_io
    base = make_base(tmp_path, 4 * MiB, 0)
    img = make_image(tmp_path, "t.qcow2", 4 * MiB, cs, base)
    strata_io(img, "stress 4 3 7", timeout=300)
    assert qimg("check", img).returncode == 0
    img2 = make_image(tmp_path, "u.qcow2", 4 * MiB, cs)
    strata_io(img2, "stressops 4 3 11", timeout=300)
    assert qimg("check", img2).returncode == 0


@pytest.mark.parametrize("ext", ["on", "off"])
@pytest.mark.parametrize("sizes", [("250k", "1013k"), ("503k", "1M"),
                                   ("64k", "1000k"), ("100k", "130k")])
def test_grow_over_longer_backing(tmp_path, ext, sizes):
    """Growing an image whose backing file reaches into the new area:
    the area reads as zeroes, laid out as QEMU lays it out (zero
    subclusters or clusters, explicit zeroes up to the first whole
    one); with and without extended L2 entries."""
    base = make_base(tmp_path, 2 * MiB)
    imgs = []
    for name, tool in (("q.qcow2", qimg), ("s.qcow2", simg)):
        img = tmp_path / name
        qimg("create", "-q", "-f", "qcow2", "-o", f"extended_l2={ext}",
             "-F", "raw", "-b", base, img, sizes[0])
        qio(img, "write -P 1 0 20k")
        tool("resize", img, sizes[1])
        imgs.append(img)
    assert_same_result(tmp_path, imgs[0], imgs[1])


@pytest.mark.parametrize("ext", ["on", "off"])
@pytest.mark.parametrize("backing", [False, True])
@pytest.mark.parametrize("sizes", [("503k", "1013k"), ("512k", "1M"),
                                   ("64k", "3000k"), ("100k", "130k")])
def test_resize_preallocation_metadata(tmp_path, ext, backing, sizes):
    """resize --preallocation=metadata (QEMU's iotest 271 'Image resizing
    with preallocation'): same map, check, file size and content."""
    base = tmp_path / "b.raw"
    write_raw(base, b"\xff" * MiB)
    imgs = []
    for name, tool in (("q.qcow2", qimg), ("s.qcow2", simg)):
        img = tmp_path / name
        args = ["create", "-q", "-f", "qcow2", "-o", f"extended_l2={ext}"]
        if backing:
            args += ["-F", "raw", "-b", base]
        qimg(*args, img, sizes[0])
        if not backing:
            qio(img, f"write -P 0xff 0 {sizes[0]}")
        tool("resize", "--preallocation=metadata", img, sizes[1])
        imgs.append(img)
    assert_same_result(tmp_path, imgs[0], imgs[1])
    assert os.path.getsize(imgs[0]) == os.path.getsize(imgs[1])
