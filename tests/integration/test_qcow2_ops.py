# SPDX-License-Identifier: BSD-3-Clause
"""qcow2 driver operations reached through strata-img: resize (truncate),
rebase -u (change_backing_file), commit (make_empty), info."""
import json
import os

import pytest

from conftest import binary, run
from qmp_util import Daemon, QmpError
from qcow2_util import (Model, header, qemu_check, qemu_compare,
                        qemu_img_create, qemu_io, strata_io)


def test_resize_grow_and_shrink(tmp_path, strata_img):
    img = tmp_path / "r.qcow2"
    qemu_img_create(img, 4 << 20, cluster_size="64k")
    qemu_io(img, "write -P 1 1M 3M")
    run([strata_img, "resize", str(img), "64M"])
    assert header(img)["size"] == 64 << 20
    qemu_check(img)
    # Shrinking discards what lies beyond; growing again shows zeroes
    # there, also in the cluster the old end fell into.
    run([strata_img, "resize", "--shrink", str(img), "1500160"])
    qemu_check(img)
    run([strata_img, "resize", str(img), "4M"])
    model = Model(4 << 20)
    model.write(1 << 20, 1500160 - (1 << 20), 1)
    raw = tmp_path / "ref.raw"
    model.save(raw)
    qemu_compare(img, raw)
    qemu_check(img)


@pytest.mark.parametrize("args", [["+1"], ["--shrink", "999999"],
                                  ["4194305"]])
def test_resize_refuses_unaligned_like_qemu(tmp_path, strata_img, args):
    results = []
    for tool in ("qemu-img", strata_img):
        img = tmp_path / f"{len(results)}.qcow2"
        qemu_img_create(img, 1 << 20)
        proc = run([tool, "resize", str(img)] + args, check=False)
        msg = proc.stderr.strip().splitlines()[-1].split(": ", 1)[1]
        results.append((proc.returncode, msg, header(img)["size"]))
    assert results[0] == results[1]
    assert results[0][1] == "The new size must be a multiple of 512"


def block_resize_results(daemon_bin, tmp_path, name):
    img = tmp_path / f"{name}.qcow2"
    qemu_img_create(img, 1 << 20)
    out = []
    with Daemon(daemon_bin, tmp_path, [
            "--blockdev", f"driver=file,node-name=proto0,filename={img}",
            "--blockdev", "driver=qcow2,node-name=fmt0,file=proto0"],
            name=name) as d:
        q = d.connect()
        for size in (3000001, 1000, 4 * 1024 * 1024 + 512):
            try:
                out.append(q.cmd("block_resize",
                                 {"node-name": "fmt0", "size": size}))
            except QmpError as e:
                out.append((e.cls, e.desc))
    out.append(header(img)["size"])
    return out


def test_block_resize_unaligned_like_qsd(tmp_path):
    ours = block_resize_results(binary("stratad"), tmp_path, "strata")
    theirs = block_resize_results("qemu-storage-daemon", tmp_path, "qsd")
    assert ours == theirs
    assert ours[0] == ("GenericError",
                       "The new size must be a multiple of 512")


def test_rebase_unsafe_keeps_extensions(tmp_path, strata_img):
    base = tmp_path / "base.qcow2"
    qemu_img_create(base, 1 << 20)
    img = tmp_path / "t.qcow2"
    qemu_img_create(img, 1 << 20, b=base, F="qcow2")
    run(["qemu-img", "bitmap", "--add", str(img), "b0"])
    with open(img, "rb") as f:
        before = f.read(4096)
    run([strata_img, "rebase", "-u", "-b", "other.qcow2", "-F", "qcow2",
         str(img)])
    info = json.loads(run(["qemu-img", "info", "-U", "--output=json",
                           str(img)]).stdout)
    assert info["backing-filename"] == "other.qcow2"
    assert info["backing-filename-format"] == "qcow2"
    with open(img, "rb") as f:
        after = f.read(4096)
    # The bitmaps extension (type 0x23852875) is still there.
    assert bytes.fromhex("23852875") in before
    assert bytes.fromhex("23852875") in after


def test_commit_empties_top(tmp_path, strata_img):
    base = tmp_path / "base.qcow2"
    qemu_img_create(base, 4 << 20)
    qemu_io(base, "write -P 0x0b 0 4M")
    top = tmp_path / "top.qcow2"
    qemu_img_create(top, 4 << 20, b=base, F="qcow2", cluster_size="4k")
    strata_io(top, "write 100 300000 12", "zero 1M 64k")
    run([strata_img, "commit", str(top)])
    model = Model(4 << 20)
    model.write(0, 4 << 20, 0x0b)
    model.write(100, 300000, 12)
    model.zero(1 << 20, 1 << 16)
    raw = tmp_path / "ref.raw"
    model.save(raw)
    qemu_compare(base, raw)
    qemu_compare(top, raw)
    qemu_check(top)
    qemu_check(base)
    out = run(["qemu-img", "map", "--output=json", str(top)]).stdout
    assert all(r["depth"] >= 1 for r in json.loads(out))


def test_info_matches_qemu(tmp_path, strata_img):
    for opts in ({"compat": "1.1", "lazy_refcounts": "on",
                  "refcount_bits": 64},
                 {"compat": "0.10"},
                 {"compression_type": "zstd"}):
        img = tmp_path / "i.qcow2"
        qemu_img_create(img, 1 << 30, **opts)
        ours = json.loads(run([strata_img, "info", "--output=json",
                               str(img)]).stdout)
        theirs = json.loads(run(["qemu-img", "info", "--output=json",
                                 str(img)]).stdout)
        assert ours["format-specific"] == theirs["format-specific"]
        assert ours["cluster-size"] == theirs["cluster-size"]
        img.unlink()


def test_resize_grows_l1(tmp_path, strata_img):
    # 512-byte clusters: one L2 table maps 32 KiB, so 4M -> 64M needs a
    # larger L1 table (moved to the end of the image).
    img = tmp_path / "g.qcow2"
    qemu_img_create(img, 4 << 20, cluster_size="512")
    qemu_io(img, "write -P 1 0 1M")
    old_l1 = header(img)["l1_offset"]
    run([strata_img, "resize", str(img), "64M"])
    h = header(img)
    assert h["l1_size"] == 2048 and h["l1_offset"] != old_l1
    strata_io(img, "write 60M 1M 2", "read 0 1M 1")
    qemu_check(img)
    qemu_io(img, "read -P 2 60M 1M", "read -P 1 0 1M")


def block_resize_perm_results(daemon_bin, tmp_path, name):
    d = tmp_path / name
    d.mkdir()
    qemu_img_create(d / "b.qcow2", 64 << 20)
    qemu_img_create(d / "t.qcow2", 64 << 20, b="b.qcow2", F="qcow2")
    out = []
    with Daemon(daemon_bin, tmp_path, [
            "--blockdev", f"driver=file,node-name=bf,filename={d}/b.qcow2",
            "--blockdev", "driver=qcow2,node-name=base,file=bf",
            "--blockdev", f"driver=file,node-name=tf,filename={d}/t.qcow2",
            "--blockdev", "driver=qcow2,node-name=top,file=tf,backing=base",
            "--blockdev", "driver=raw,node-name=r1,file=bf"],
            name=name) as dm:
        q = dm.connect()
        for node in ("base", "bf", "r1", "tf", "top"):
            try:
                out.append(q.cmd("block_resize",
                                 {"node-name": node, "size": 128 << 20}))
            except QmpError as e:
                out.append((e.cls, e.desc))
    out.append((header(d / "b.qcow2")["size"], header(d / "t.qcow2")["size"]))
    return out


def _map(img):
    """qemu-img map of img.  "zero" on data ranges does not count:
    qemu-img guesses it from how much of the file the filesystem reports
    allocated (its test for preallocated images), which may differ
    between two equal files; the reads check that the new area is
    zero."""
    proc = run(["qemu-img", "map", "--output=json", str(img)])
    runs = []
    for r in json.loads(proc.stdout):
        if r["data"]:
            r.pop("zero")
        last = runs[-1] if runs else None
        if last and last["start"] + last["length"] == r["start"] and \
                last.get("offset", -1) + last["length"] == \
                r.get("offset", -2) and \
                {k: v for k, v in last.items()
                 if k not in ("start", "length", "offset")} == \
                {k: v for k, v in r.items()
                 if k not in ("start", "length", "offset")}:
            last["length"] += r["length"]
        else:
            runs.append(r)
    return runs


def _allocated_in_file(path, offset, length):
    with open(path, "rb") as f:
        return os.lseek(f.fileno(), offset, os.SEEK_HOLE) >= offset + length


@pytest.mark.parametrize("mode", ["falloc", "full"])
@pytest.mark.parametrize("shape", ["plain", "extended_l2", "backing",
                                   "extended_l2+backing", "4k-clusters",
                                   "snapshot"])
def test_resize_preallocation_like_qemu(tmp_path, strata_img, mode, shape):
    """resize --preallocation=falloc|full (iotest 271's cases and a few
    more): the same output as qemu-img, the old data kept, the new area
    reading zeroes even with a backing file behind it, the same map (host
    offsets included: the refcount table moves, the data run follows it
    and new L2 tables fill the old table's hole as in qemu-img's image;
    without a snapshot, whose date differs, the files are equal), the
    new clusters allocated in the file, and a clean image."""
    base = tmp_path / "base.raw"
    base.write_bytes(b"\xff" * (1 << 20))
    opts = {}
    if "extended_l2" in shape:
        opts["extended_l2"] = "on"
    if "backing" in shape:
        opts.update(b=base, F="raw")
    if shape == "4k-clusters":
        opts["cluster_size"] = "4k"
    old, new = 503 * 1024, 1013 * 1024
    if shape == "4k-clusters":
        new = 5 * 1024 * 1024 + 512
    imgs = []
    for tool in (strata_img, "qemu-img"):
        img = tmp_path / f"{len(imgs)}.qcow2"
        qemu_img_create(img, old, **opts)
        if "backing" not in shape:
            qemu_io(img, f"write -P 0xff 0 {old}")
        if shape == "snapshot":
            run(["qemu-img", "snapshot", "-c", "snap", str(img)])
        proc = run([tool, "resize", f"--preallocation={mode}", str(img),
                    str(new)], check=False)
        imgs.append((img, proc.returncode, proc.stdout))
    (img, rc_s, out_s), (ref, rc_q, out_q) = imgs
    assert (rc_s, out_s) == (rc_q, out_q) == (0, "Image resized.\n")
    qemu_check(img)
    qemu_io(img, f"read -P 0xff 0 {old}", f"read -P 0 {old} {new - old}")
    assert header(img)["size"] == new
    assert _map(img) == _map(ref)
    if shape != "snapshot":
        assert img.read_bytes() == ref.read_bytes()
    last = json.loads(run(["qemu-img", "map", "--output=json",
                           str(img)]).stdout)[-1]
    if last["data"]:
        assert _allocated_in_file(img, last["offset"], last["length"])
    if shape == "snapshot":
        run(["qemu-img", "snapshot", "-a", "snap", str(img)])
        qemu_check(img)
        assert header(img)["size"] == old
        qemu_io(img, f"read -P 0xff 0 {old}")


@pytest.mark.parametrize("mode", ["falloc", "full"])
def test_resize_preallocation_keeps_compressed_last_cluster(tmp_path,
                                                            strata_img,
                                                            mode):
    """The cluster the old end falls in moves into the preallocated run
    with its data copied.  When it was compressed in an image with
    extended L2 entries (no subcluster bitmap), the copied part is marked
    allocated: it must not read from a backing file that ends at the old
    end.  (qemu-img 7.2 loses it there, so only the data is judged.)"""
    old, new = 503 * 1024, 1013 * 1024
    base = tmp_path / "base.raw"
    base.write_bytes(b"\xff" * old)
    img = tmp_path / "c.qcow2"
    qemu_img_create(img, old, extended_l2="on", b=base, F="raw")
    qemu_io(img, f"write -c -P 0x11 448k {old - 448 * 1024}")
    run([strata_img, "resize", f"--preallocation={mode}", str(img), str(new)])
    qemu_check(img)
    qemu_io(img, "read -P 0xff 0 448k",
            f"read -P 0x11 448k {old - 448 * 1024}",
            f"read -P 0 {old} {new - old}")


def test_block_resize_permissions_like_qsd(tmp_path):
    """A backing node is in use; a file under a qcow2 node (directly, or
    under a raw node being resized) is a permission conflict, with
    QEMU's texts; the qcow2 node itself resizes."""
    ours = block_resize_perm_results(binary("stratad"), tmp_path, "strata")
    theirs = block_resize_perm_results("qemu-storage-daemon", tmp_path,
                                       "qsd")
    assert ours == theirs
    assert ours[0] == ("GenericError", "Device '(null)' is in use")
    assert ours[1][1].startswith("Permission conflict on node 'bf'")
    assert ours[-2] == {}
    assert ours[-1] == (64 << 20, 128 << 20)
