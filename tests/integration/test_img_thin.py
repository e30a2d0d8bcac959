# SPDX-License-Identifier: BSD-3-Clause
"""strata-img leaves a thin image as thin as qemu-img 7.2 does.

Every operation runs twice on identical copies of the same input: once
with qemu-img (in q/), once with strata-img (in s/).  The results must
have the same allocation (`qemu-img map --output=json`, host offsets
aside), the same content (`qemu-img compare`), pass `qemu-img check`,
and where space is the point (shrink, convert -B) take no more room.
Error cases compare exit code, stdout and stderr byte for byte.

The checks of QEMU's iotests 019 (convert -B / -o backing_file), 020
(commit -b spellings), 250 (shrink gives the space back) and 252
(rebase writes zero clusters) are reproduced here.
"""
import json
import os
import random
import struct
import subprocess

import pytest

from conftest import require
from img_util import run_tool, strata_img_path

MiB = 1 << 20
CL = 65536


def tool(which, cwd, *args):
    """Runs qemu-img (which == "q") or strata-img (which == "s") in cwd."""
    exe = "qemu-img" if which == "q" else strata_img_path()
    return run_tool_cwd([exe, *map(str, args)], cwd)


def run_tool_cwd(cmd, cwd):
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300,
                          cwd=cwd)
    assert proc.returncode >= 0, f"{cmd} crashed: {proc.stderr}"
    return proc


def ok(proc):
    assert proc.returncode == 0, (proc.args, proc.stdout, proc.stderr)
    return proc


def qio(path, *cmds, cwd=None):
    args = ["qemu-io", "-f", "qcow2"]
    for c in cmds:
        args += ["-c", c]
    proc = subprocess.run(args + [str(path)], capture_output=True, text=True,
                          cwd=cwd, timeout=300)
    assert proc.returncode == 0 and "error" not in proc.stdout.lower(), \
        (cmds, proc.stdout, proc.stderr)
    return proc.stdout


def map_raw(path):
    return json.loads(ok(subprocess.run(
        ["qemu-img", "map", "--output=json", str(path)],
        capture_output=True, text=True)).stdout)


def qmap(path):
    out = ok(subprocess.run(["qemu-img", "map", "--output=json", str(path)],
                            capture_output=True, text=True)).stdout
    # Host offsets (and so the splits where host clusters are not
    # contiguous) depend on the order metadata and data clusters are
    # allocated in; what is allocated, and how, is the point here.
    merged = []
    for e in json.loads(out):
        e = {k: v for k, v in e.items() if k != "offset"}
        last = merged[-1] if merged else None
        if last and all(last[k] == e[k] for k in
                        ("depth", "present", "zero", "data")) and \
                last["start"] + last["length"] == e["start"]:
            last["length"] += e["length"]
        else:
            merged.append(e)
    return merged


def assert_clean(path):
    proc = subprocess.run(["qemu-img", "check", str(path)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "No errors were found on the image." in proc.stdout


def assert_same_content(a, b):
    proc = subprocess.run(["qemu-img", "compare", str(a), str(b)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def assert_same_image(q, s, name):
    """The image name in q/ (qemu-img's result) and in s/ (strata's)."""
    assert qmap(s / name) == qmap(q / name)
    assert_same_content(q / name, s / name)
    assert_clean(q / name)
    assert_clean(s / name)


def same_output(qp, sp):
    norm = sp.stderr.replace(strata_img_path(), "qemu-img") \
                    .replace("strata-img", "qemu-img")
    assert (sp.returncode, sp.stdout, norm) == \
        (qp.returncode, qp.stdout, qp.stderr)


@pytest.fixture
def pair(tmp_path):
    """Builds the same input in q/ and in s/ with build(dir).  (Built
    twice rather than copied: a copy would fill in the holes of the
    files, and both tools look at those.)"""
    require("qemu-img")
    require("qemu-io")

    def make(build):
        q = tmp_path / "q"
        s = tmp_path / "s"
        q.mkdir()
        s.mkdir()
        build(q)
        build(s)
        # Written back before anyone looks: until then the file system
        # may report freshly written ranges as holes, and both tools
        # report holes in data clusters as zeroes.
        for d in (q, s):
            for root, _, files in os.walk(d):
                for f in files:
                    fd = os.open(os.path.join(root, f), os.O_RDONLY)
                    try:
                        os.fsync(fd)
                    finally:
                        os.close(fd)
        return q, s
    return make


def create(d, name, size, *opts):
    ok(subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", *opts,
                       name, str(size)], cwd=d, capture_output=True,
                      text=True))


def both(q, s, *args):
    """Runs the same command with both tools; both must succeed."""
    return ok(tool("q", q, *args)), ok(tool("s", s, *args))


# ---- convert -B / -o backing_file (iotest 019) ----

def interleaved(offset, pattern, first):
    """019's io_pattern: 64 sectors of 512 bytes, every other one."""
    return [f"write -P {pattern} {offset + first + i * 1024} 512"
            for i in range(64)]


def build_019(d):
    create(d, "t.base", "6G")
    cmds = []
    for off in (0, 4 << 30):
        cmds += interleaved(off, 42, 0)
        cmds.append(f"write -P 42 {off + MiB} {CL}")
    qio(d / "t.base", *cmds)
    create(d, "t.orig", "6G", "-b", "t.base", "-F", "qcow2")
    cmds = []
    for off in (0, 4 << 30):
        cmds += interleaved(off, 43, 512)
        cmds.append(f"write -P 43 {off + MiB + CL} {CL}")
    qio(d / "t.orig", *cmds)


@pytest.mark.parametrize("backing_option", ["-B", "-o backing_file="])
def test_convert_backing_019(pair, backing_option):
    q, s = pair(build_019)
    if backing_option == "-B":
        opt = ["-B", "t.base"]
    else:
        opt = ["-o", "backing_file=t.base"]
    both(q, s, "convert", "-f", "qcow2", "-O", "qcow2", *opt,
         "-o", "backing_fmt=qcow2", "t.orig", "t.img")
    assert_same_image(q, s, "t.img")
    # Laid out alike too: the same host offsets.
    assert map_raw(s / "t.img") == map_raw(q / "t.img")
    # 019: the clusters only the backing file defines stay unallocated.
    allocs = [f"alloc {off + MiB} {CL}" for off in (0, 4 << 30)]
    out_q = qio(q / "t.img", *allocs)
    out_s = qio(s / "t.img", *allocs)
    assert out_s == out_q
    assert out_s.count(f"0/{CL} bytes allocated") == 2
    # 019's reads: the converted image shows what the original showed.
    assert_same_content(s / "t.orig", s / "t.img")
    reads = []
    for off in (0, 4 << 30):
        reads += [c.replace("write", "read") for c in
                  interleaved(off, 42, 0) + interleaved(off, 43, 512)]
        reads.append(f"read -P 42 {off + MiB} {CL}")
        reads.append(f"read -P 43 {off + MiB + CL} {CL}")
        reads.append(f"read -P 0 {off + MiB + 4 * CL} {CL}")
    qio(s / "t.img", *reads)
    assert os.path.getsize(s / "t.img") <= os.path.getsize(q / "t.img")


def build_convert_zeroes(d):
    """A source whose own layer has zero clusters, data clusters of
    zeroes and data, above a backing file shorter than the image."""
    create(d, "base", 2 * MiB)
    qio(d / "base", f"write -P 1 0 {2 * MiB}")
    create(d, "src", 8 * MiB, "-b", "base", "-F", "qcow2")
    qio(d / "src",
        f"write -z 0 {CL}",                  # zero cluster over data
        f"write -P 0 {2 * CL} {CL}",         # data cluster of zeroes
        f"write -P 5 {4 * CL} 4096",         # partial data cluster
        f"write -z {3 * MiB} {CL}",          # zeroes past base's end
        f"write -P 0 {4 * MiB} {2 * CL}",    # zero data past base's end
        f"write -P 9 {5 * MiB} {CL}")
    with open(d / "raw", "wb") as f:         # a source without backing
        f.truncate(8 * MiB)
        f.seek(CL)
        f.write(b"\x07" * CL)
        f.seek(5 * MiB)
        f.write(b"\x08" * 3 * CL)


@pytest.mark.parametrize("source,sfmt", [("src", "qcow2"), ("raw", "raw")])
@pytest.mark.parametrize("how", ["-B", "-o", "-S0"])
def test_convert_backing_zeroes(pair, source, sfmt, how):
    q, s = pair(build_convert_zeroes)
    opt = {"-B": ["-B", "base", "-F", "qcow2"],
           "-o": ["-o", "backing_file=base,backing_fmt=qcow2"],
           "-S0": ["-S", "0", "-B", "base", "-F", "qcow2"]}[how]
    both(q, s, "convert", "-f", sfmt, "-O", "qcow2", *opt, source, "out")
    assert_same_image(q, s, "out")
    assert os.path.getsize(s / "out") <= os.path.getsize(q / "out")


def build_convert_existing(d):
    create(d, "t", 8 * MiB)
    qio(d / "t", f"write -P 1 0 {8 * MiB}")
    create(d, "src", 8 * MiB)
    qio(d / "src", f"write -P 2 0 {MiB}", f"write -z {2 * MiB} {MiB}")


@pytest.mark.parametrize("extra", [[], ["-S", "0"]])
def test_convert_into_existing_target(pair, extra):
    """-n: zeroes written over the old content free its clusters, as
    qemu-img's target is opened with unmap (not under -S 0)."""
    q, s = pair(build_convert_existing)
    both(q, s, "convert", "-n", *extra, "-O", "qcow2", "src", "t")
    assert_same_image(q, s, "t")
    assert map_raw(s / "t") == map_raw(q / "t")
    assert disk_usage(s / "t") <= disk_usage(q / "t")


def test_convert_backing_refusals(pair):
    q, s = pair(build_convert_zeroes)
    for args in (["-B", "base", "-F", "qcow2", "src", "raw", "out"],
                 ["-o", "backing_file=base,backing_fmt=qcow2", "src", "raw",
                  "out2"],
                 ["-o", "backing_file=base", "src", "out3"]):
        qp = tool("q", q, "convert", "-O", "qcow2", *args)
        sp = tool("s", s, "convert", "-O", "qcow2", *args)
        assert qp.returncode == 1
        same_output(qp, sp)
    assert sorted(os.listdir(s)) == sorted(os.listdir(q))


# ---- rebase (iotest 252) ----

def build_252(d):
    create(d, "t.img", 6 * CL)
    create(d, "t.base_new", 6 * CL)
    qio(d / "t.img", f"write -P 0x22 0 {2 * CL}",
        f"write -P 0x11 {2 * CL} {2 * CL}")
    qio(d / "t.base_new", f"write -P 0x11 0 {CL}",
        f"write -P 0x11 {2 * CL} {CL}", f"write -P 0x11 {4 * CL} {CL}")


def test_rebase_252(pair):
    q, s = pair(build_252)
    both(q, s, "rebase", "-b", "", "t.img")          # a no-op
    assert_same_image(q, s, "t.img")
    both(q, s, "rebase", "-b", "t.base_new", "-F", "qcow2", "t.img")
    assert_same_image(q, s, "t.img")
    qio(s / "t.img", f"read -P 0x22 0 {2 * CL}",
        f"read -P 0x11 {2 * CL} {2 * CL}", f"read -P 0 {4 * CL} {2 * CL}")
    m = qmap(s / "t.img")
    # Cluster 4 is a zero cluster, cluster 5 is left to the new backing.
    assert m[-2] == {"start": 4 * CL, "length": CL, "depth": 0,
                     "present": True, "zero": True, "data": False}
    assert m[-1]["depth"] == 1 and not m[-1]["present"]


def build_rebase_sizes(d):
    """An image of 8 clusters over a 3-cluster backing, and candidate new
    backings: one as long as the image, one shorter than the old."""
    create(d, "old", 3 * CL)
    qio(d / "old", f"write -P 1 0 {CL}", f"write -z {CL} {CL}",
        f"write -P 0 {2 * CL} {CL}")
    create(d, "img", 8 * CL, "-b", "old", "-F", "qcow2")
    qio(d / "img", f"write -P 7 {6 * CL} {CL}")
    create(d, "long", 8 * CL)
    qio(d / "long", f"write -P 2 0 {8 * CL}", f"write -z {4 * CL} {CL}")
    create(d, "short", 2 * CL)
    qio(d / "short", f"write -P 1 0 {CL}", f"write -P 3 {CL} 4096")


@pytest.mark.parametrize("new", ["", "long", "short"])
def test_rebase_backing_sizes(pair, new):
    q, s = pair(build_rebase_sizes)
    args = ["-b", new] + (["-F", "qcow2"] if new else [])
    both(q, s, "rebase", *args, "img")
    assert_same_image(q, s, "img")
    assert os.path.getsize(s / "img") <= os.path.getsize(q / "img")


def build_rebase_in_chain(d):
    create(d, "base", 4 * CL)
    qio(d / "base", f"write -P 1 0 {4 * CL}")
    create(d, "mid", 6 * CL, "-b", "base", "-F", "qcow2")
    qio(d / "mid", f"write -z 0 {CL}", f"write -P 1 {CL} {CL}",
        f"write -P 4 {2 * CL} {CL}")
    create(d, "top", 6 * CL, "-b", "mid", "-F", "qcow2")
    qio(d / "top", f"write -P 9 {3 * CL} {CL}")


def test_rebase_onto_deeper_layer(pair):
    q, s = pair(build_rebase_in_chain)
    both(q, s, "rebase", "-b", "base", "-F", "qcow2", "top")
    assert_same_image(q, s, "top")


# ---- commit ----

def build_commit(d):
    create(d, "base", 8 * CL)
    qio(d / "base", f"write -P 1 0 {8 * CL}")
    create(d, "top", 8 * CL, "-b", "base", "-F", "qcow2")
    qio(d / "top",
        f"write -z 0 {2 * CL}",            # zero clusters over base data
        f"write -P 0 {2 * CL} {CL}",       # a data cluster of zeroes
        f"write -z {4 * CL} 4096",         # zeroes inside a cluster
        f"write -P 6 {6 * CL} {CL}")


def build_commit_deep(d):
    create(d, "base", 8 * CL)
    create(d, "mid", 8 * CL, "-b", "base", "-F", "qcow2")
    qio(d / "mid", f"write -P 1 0 {8 * CL}")
    create(d, "top", 8 * CL, "-b", "mid", "-F", "qcow2")
    qio(d / "top", f"write -z 0 {3 * CL}", f"write -P 6 {6 * CL} {CL}")


@pytest.mark.parametrize("build,args", [
    (build_commit, []),
    (build_commit, ["-d"]),
    (build_commit_deep, ["-b", "base"]),
])
def test_commit_zeroes(pair, build, args):
    q, s = pair(build)
    both(q, s, "commit", *args, "top")
    for name in ("base", "top"):
        assert_same_image(q, s, name)
    assert os.path.getsize(s / "base") <= os.path.getsize(q / "base")
    # Zeroes over base data free the base's clusters (qemu-img opens the
    # chain with unmap): no host offset left behind, no space kept.
    assert [e.get("offset") is None for e in map_raw(s / "base")
            if e["zero"]] == \
        [e.get("offset") is None for e in map_raw(q / "base") if e["zero"]]
    assert disk_usage(s / "base") <= disk_usage(q / "base")
    # The emptied top keeps no space (qemu-img lays it out afresh).
    assert os.path.getsize(s / "top") == os.path.getsize(q / "top")
    assert disk_usage(s / "top") <= disk_usage(q / "top")


def build_commit_v2(d):
    create(d, "base", 8 * MiB, "-o", "compat=0.10")
    create(d, "top", 8 * MiB, "-o", "compat=0.10", "-b", "base", "-F",
           "qcow2")
    qio(d / "top", f"write -P 6 0 {4 * MiB}")


def test_commit_empties_v2_top(pair):
    """A v2 top cannot be laid out afresh: its clusters are freed (and
    punched out of the file) instead, as qemu-img does."""
    q, s = pair(build_commit_v2)
    both(q, s, "commit", "top")
    for name in ("base", "top"):
        assert_same_image(q, s, name)
    assert os.path.getsize(s / "top") == os.path.getsize(q / "top")
    assert disk_usage(s / "top") <= disk_usage(q / "top")


def build_020(d):
    sub = d / "subdir"
    sub.mkdir()
    create(sub, "t.qcow2.base", MiB)
    create(sub, "t.qcow2.mid", MiB, "-b", "t.qcow2.base", "-F", "qcow2")
    create(sub, "t.qcow2", MiB, "-b", "t.qcow2.mid", "-F", "qcow2")
    qio(sub / "t.qcow2", "write -P 3 0 64k")


@pytest.mark.parametrize("spelling", [
    "t.qcow2.mid",              # relative to the overlay: found
    "subdir/t.qcow2.mid",       # relative to the cwd: not found
    "{abs}/subdir/t.qcow2.mid",  # absolute: found
    "./t.qcow2.mid",
    "../subdir/t.qcow2.base",
    "t.qcow2.base",
    "subdir/t.qcow2.base",
    "t.qcow2",                  # the top itself is not a backing file
    "",
    "nosuch",
])
@pytest.mark.parametrize("top", ["subdir/t.qcow2", "{abs}/subdir/t.qcow2"])
def test_commit_base_spelling_020(pair, spelling, top):
    q, s = pair(build_020)
    res = []
    for which, d in (("q", q), ("s", s)):
        res.append(tool(which, d, "commit", "-b",
                        spelling.format(abs=d), top.format(abs=d)))
    qp, sp = res
    # The two trees differ only in their directory name.
    sp.stderr = sp.stderr.replace(str(s), str(q))
    same_output(qp, sp)
    if qp.returncode == 0:
        for name in ("t.qcow2.base", "t.qcow2.mid", "t.qcow2"):
            assert_same_image(q / "subdir", s / "subdir", name)


# ---- resize --shrink (iotest 250) ----

def disk_usage(path):
    """Bytes of the file's data extents (not st_blocks, which on some
    file systems also counts the file's own extent tree)."""
    total = 0
    with open(path, "rb") as f:
        fd = f.fileno()
        end = os.fstat(fd).st_size
        pos = 0
        while pos < end:
            try:
                start = os.lseek(fd, pos, os.SEEK_DATA)
            except OSError:
                break
            pos = os.lseek(fd, start, os.SEEK_HOLE)
            total += pos - start
    return total


def build_250(d):
    create(d, "t.qcow2", "2100M", "-o", "cluster_size=1M,preallocation=metadata")
    qio(d / "t.qcow2", "discard 0 10M", "discard 2090M 10M",
        "write 2090M 10M", "write 0 10M")


def test_resize_shrink_250(pair):
    q, s = pair(build_250)
    before = {d: disk_usage(d / "t.qcow2") for d in (q, s)}
    both(q, s, "resize", "--shrink", "t.qcow2", "5M")
    assert_same_image(q, s, "t.qcow2")
    delta_q = before[q] - disk_usage(q / "t.qcow2")
    delta_s = before[s] - disk_usage(s / "t.qcow2")
    assert delta_q == 15 * MiB            # 250.out
    assert delta_s == delta_q
    assert os.path.getsize(s / "t.qcow2") == os.path.getsize(q / "t.qcow2")


def build_shrink(d):
    create(d, "a.qcow2", 64 * MiB)
    qio(d / "a.qcow2", f"write -P 1 0 {64 * MiB}")
    create(d, "b.qcow2", 64 * MiB, "-o", "cluster_size=4096")
    qio(d / "b.qcow2", f"write -P 1 0 {64 * MiB}", f"write -z {MiB} {MiB}")
    with open(d / "c.raw", "wb") as f:
        f.write(b"\x01" * 8 * MiB)


def build_shrink_compressed(d):
    create(d, "c.qcow2", 4 * MiB)
    qio(d / "c.qcow2", f"write -c -P 3 0 {CL}", f"write -c -P 4 {CL} {CL}",
        f"write -P 5 {2 * CL} {MiB}")


def test_resize_shrink_into_compressed_cluster(pair):
    """A cut inside a compressed cluster leaves it compressed, as
    qemu-img does (it is not rewritten as a new data cluster)."""
    q, s = pair(build_shrink_compressed)
    both(q, s, "resize", "--shrink", "c.qcow2", str(CL + 4096))
    assert_same_image(q, s, "c.qcow2")
    assert os.path.getsize(s / "c.qcow2") == os.path.getsize(q / "c.qcow2")
    assert map_raw(s / "c.qcow2") == map_raw(q / "c.qcow2")


@pytest.mark.parametrize("name,size", [
    ("a.qcow2", "8M"), ("a.qcow2", "1000448"), ("a.qcow2", "-60M"),
    ("b.qcow2", "1536k"), ("c.raw", "1M"), ("c.raw", "5000"),
])
def test_resize_shrink_gives_space_back(pair, name, size):
    q, s = pair(build_shrink)
    fmt = "raw" if name.endswith(".raw") else "qcow2"
    both(q, s, "resize", "-f", fmt, "--shrink", name, size)
    assert os.path.getsize(s / name) == os.path.getsize(q / name)
    assert disk_usage(s / name) <= disk_usage(q / name)
    if fmt == "qcow2":
        assert_same_image(q, s, name)
        # Growing again: the same allocation.  Where the shrink cut a
        # cluster, qemu-img lets the old bytes of its tail show again;
        # strata zeroed them at the shrink, so its tail reads zeroes.
        info = json.loads(ok(tool("q", s, "info", "--output=json",
                                  name)).stdout)
        cut = info["virtual-size"]
        both(q, s, "resize", name, "64M")
        assert qmap(s / name) == qmap(q / name)
        assert_clean(s / name)
        cs = info["cluster-size"]
        if cut % cs == 0:
            assert_same_content(q / name, s / name)
        else:
            tail = cs - cut % cs
            qio(s / name, f"read -P 0 {cut} {tail}")
    else:
        assert_same_content(q / name, s / name)


# ---- header extension running past the header area ----

def build_ext(d):
    create(d, "e.qcow2", MiB, "-o", "cluster_size=4096")
    create(d, "back.qcow2", MiB)
    create(d, "b.qcow2", MiB, "-b", "back.qcow2", "-F", "qcow2")


def ext_end(path):
    """Offset of the end marker of the header extensions."""
    with open(path, "rb") as f:
        h = f.read(112)
        off = struct.unpack(">I", h[100:104])[0]
        while True:
            f.seek(off)
            t, n = struct.unpack(">II", f.read(8))
            if t == 0:
                return off
            off += 8 + ((n + 7) & ~7)


def poke(path, off, fmt, *vals):
    with open(path, "r+b") as f:
        f.seek(off)
        f.write(struct.pack(fmt, *vals))


def area_end(path):
    with open(path, "rb") as f:
        h = f.read(24)
    boff = struct.unpack(">Q", h[8:16])[0]
    return boff or 1 << struct.unpack(">I", h[20:24])[0]


CASES = {
    # an unknown extension one byte longer than the area has left
    "unknown": lambda p: poke(p, ext_end(p), ">II", 0x12345678,
                              area_end(p) - ext_end(p) - 8 + 1),
    # the end marker itself claiming more than the area has left
    "end-marker": lambda p: poke(p, ext_end(p) + 4, ">I",
                                 area_end(p) - ext_end(p) - 8 + 1),
    # the backing format extension running into the backing file name
    "into-name": lambda p: poke(p, ext_end(p), ">II", 0xe2792aca,
                                area_end(p) - ext_end(p) - 8 + 1),
    # the largest length that still fits is accepted (the control case)
    "fits": lambda p: poke(p, ext_end(p), ">II", 0x12345678,
                           area_end(p) - ext_end(p) - 8),
}


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("image", ["e.qcow2", "b.qcow2"])
def test_header_extension_too_large(pair, case, image):
    q, s = pair(build_ext)
    for d in (q, s):
        CASES[case](d / image)
    for cmd in (["info", image], ["check", image],
                ["convert", "-O", "raw", image, "out.raw"],
                ["map", "--output=json", image]):
        qp = tool("q", q, *cmd)
        sp = tool("s", s, *cmd)
        same_output(qp, sp)
        if case != "fits":
            assert qp.returncode == 1
            assert qp.stderr == \
                f"qemu-img: Could not open '{image}': Header extension " \
                "too large\n"


# ---- random chains through both tools ----

def build_random(seed):
    """A top over a base of a different cluster size and length, and a
    candidate new backing file, each with random writes, zeroes and
    discards (unaligned too)."""
    def build(d):
        r = random.Random(seed)
        cs = r.choice([4096, 65536, 524288])
        bcs = r.choice([4096, 65536])
        size = r.choice([1, 2, 3]) * MiB + r.choice([0, 512 * r.randint(1, 200)])
        bsize = r.choice([size, size // 2 // 512 * 512, size + CL])
        osize = r.choice([size, size // 3 // 512 * 512])
        create(d, "base", bsize, "-o", f"cluster_size={bcs}")
        create(d, "top", size, "-o", f"cluster_size={cs}", "-b", "base",
               "-F", "qcow2")
        create(d, "other", osize, "-o", f"cluster_size={bcs}")
        for name, sz in (("base", bsize), ("top", size), ("other", osize)):
            cmds = []
            for _ in range(r.randint(1, 12)):
                off = r.randrange(0, sz // 512) * 512
                n = min(r.choice([512, 4096, CL, 2 * CL, 300 * 512]), sz - off)
                op = r.choice([f"write -P {r.randint(1, 9)}", "write -P 0",
                               "write -z", "discard", "write -z -u"])
                cmds.append(f"{op} {off} {n}")
            qio(d / name, *cmds)
    return build


RANDOM_OPS = {
    "convert-B": (["convert", "-O", "qcow2", "-B", "base", "-F", "qcow2",
                   "top", "out"], "out"),
    "convert-S0": (["convert", "-S", "0", "-O", "qcow2", "-B", "base", "-F",
                    "qcow2", "top", "out"], "out"),
    "convert-c": (["convert", "-c", "-O", "qcow2", "-B", "base", "-F",
                   "qcow2", "top", "out"], "out"),
    "rebase-none": (["rebase", "-b", "", "top"], "top"),
    "rebase-other": (["rebase", "-b", "other", "-F", "qcow2", "top"], "top"),
    "commit": (["commit", "top"], "base"),
    "commit-d": (["commit", "-d", "top"], "base"),
    "shrink": (["resize", "--shrink", "top", None], "top"),
}


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("op", sorted(RANDOM_OPS))
def test_random_chain(pair, seed, op):
    q, s = pair(build_random(seed * 31 + 7))
    args, result = RANDOM_OPS[op]
    if None in args:
        size = json.loads(ok(tool("q", q, "info", "--output=json",
                                  "top")).stdout)["virtual-size"]
        cut = random.Random(seed).randrange(1, size // 512) * 512
        args = [a if a is not None else str(cut) for a in args]
    both(q, s, *args)
    assert_same_image(q, s, result)
    if op == "shrink" or op.startswith("commit"):
        assert os.path.getsize(s / "top") == os.path.getsize(q / "top")
    else:
        assert os.path.getsize(s / result) <= os.path.getsize(q / result)
