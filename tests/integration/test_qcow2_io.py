# SPDX-License-Identifier: BSD-3-Clause
"""qcow2 engine against the real qemu-img: images made by qemu-img are
opened and written by strata, then `qemu-img check` must be clean and
`qemu-img compare` must match a raw reference built from a byte model."""
import signal
import subprocess
import time

import pytest

from qcow2_util import (Model, file_size, io_tool, l2_entry, map_output,
                        qemu_check, qemu_compare, qemu_img_create, qemu_io,
                        size, strata_io)

VSIZE = 8 << 20

# (compat, cluster_size, refcount_bits)
LAYOUTS = [
    ("1.1", "64k", 16),
    ("0.10", "64k", 16),
    ("1.1", "4k", 1),
    ("1.1", "2M", 64),
    ("1.1", "512", 16),
    ("0.10", "4k", 16),
    ("1.1", "64k", 64),
]


def layout_id(layout):
    return f"v{'3' if layout[0] == '1.1' else '2'}-{layout[1]}-rc{layout[2]}"


def apply(image, model, ops, **kw):
    """Runs ops (tuples) in strata and in the model."""
    cmds = []
    for op in ops:
        if op[0] == "write":
            _, off, length, pat = op
            model.write(off, length, pat)
            cmds.append(f"write {off} {length} {pat}")
        elif op[0] == "zero":
            _, off, length = op[:3]
            model.zero(off, length)
            cmds.append(" ".join(["zero", str(off), str(length)] +
                                 list(op[3:])))
        elif op[0] == "discard":
            # Discard content is undefined for the model unless backed by
            # zeroes; tests only discard where the model is zero after.
            _, off, length = op
            cmds.append(f"discard {off} {length}")
        elif op[0] == "flush":
            cmds.append("flush")
    strata_io(image, *cmds, **kw)


def pattern_ops(cs, vsize):
    """Writes that cover the tricky cases for cluster size cs."""
    return [
        ("write", 0, 4096, 0x11),                  # head of cluster 0
        ("write", cs + 100, 3000, 0x22),          # unaligned inside
        ("write", 3 * cs - 512, 2 * cs + 1024, 0x33),  # spans clusters
        ("write", 100, 200, 0x44),                 # rewrite in place
        ("write", 5 * cs, cs, 0x55),               # exactly one cluster
        ("write", vsize - 1000, 1000, 0x66),       # end of disk
        ("write", 2 << 20, 1 << 20, 0x77),         # large
        ("write", (2 << 20) + 4096, 8192, 0x78),   # rewrite inside large
    ]


@pytest.mark.parametrize("layout", LAYOUTS, ids=layout_id)
def test_write_patterns(tmp_path, layout):
    compat, cs_text, rc = layout
    cs = size(cs_text)
    vsize = max(VSIZE, 8 * cs)
    img = tmp_path / "t.qcow2"
    qemu_img_create(img, vsize, compat=compat, cluster_size=cs_text,
                    refcount_bits=rc)
    model = Model(vsize)
    apply(img, model, pattern_ops(cs, vsize))
    # A second open sees what the first wrote, and can add to it.
    apply(img, model, [("write", 7 * cs + 1, 10, 0x99), ("flush",)])
    qemu_check(img)
    raw = tmp_path / "ref.raw"
    model.save(raw)
    qemu_compare(img, raw)
    strata_io(img, f"readfile 0 {vsize} {raw}", read_only=True)


@pytest.mark.parametrize("layout", [LAYOUTS[0], LAYOUTS[2], LAYOUTS[3]],
                         ids=layout_id)
def test_zero_and_discard(tmp_path, layout):
    compat, cs_text, rc = layout
    cs = size(cs_text)
    vsize = max(VSIZE, 16 * cs)
    img = tmp_path / "t.qcow2"
    qemu_img_create(img, vsize, compat=compat, cluster_size=cs_text,
                    refcount_bits=rc)
    model = Model(vsize)
    apply(img, model, [
        ("write", 0, 8 * cs, 0xaa),
        ("zero", cs, cs),                       # keeps the host cluster
        ("zero", 2 * cs, cs, "unmap"),          # frees it
        ("zero", 3 * cs + 512, 1024),           # partial: written as data
        ("zero", 10 * cs, 2 * cs),              # unallocated
    ])
    apply(img, model, [("discard", 4 * cs, cs)])
    model.zero(4 * cs, cs)
    qemu_check(img)
    raw = tmp_path / "ref.raw"
    model.save(raw)
    qemu_compare(img, raw)
    # QEMU's L2 values (reference §6).
    host1 = l2_entry(img, cs)
    assert host1 & 1 and host1 & (1 << 63) and host1 & 0x00fffffffffffe00
    assert l2_entry(img, 2 * cs) == 1
    assert l2_entry(img, 4 * cs) == 1
    assert l2_entry(img, 10 * cs) == 1


def test_v2_discard_and_zero_fallback(tmp_path):
    img = tmp_path / "t.qcow2"
    qemu_img_create(img, VSIZE, compat="0.10", cluster_size="64k")
    model = Model(VSIZE)
    apply(img, model, [("write", 0, 4 << 16, 0xab),
                       ("zero", 1 << 16, 1 << 16)])   # v2: core writes zeroes
    strata_io(img, "discard 131072 65536")
    model.zero(2 << 16, 1 << 16)
    assert l2_entry(img, 2 << 16) == 0
    qemu_check(img)
    raw = tmp_path / "ref.raw"
    model.save(raw)
    qemu_compare(img, raw)


@pytest.mark.parametrize("cs_text", ["4k", "64k", "2M"])
def test_backing_cow(tmp_path, cs_text):
    cs = size(cs_text)
    vsize = max(VSIZE, 8 * cs)
    base = tmp_path / "base.qcow2"
    qemu_img_create(base, vsize, cluster_size="64k")
    qemu_io(base, f"write -P 0x5a 0 {vsize}", "write -P 0x5b 1M 1M")
    model = Model(vsize)
    model.write(0, vsize, 0x5a)
    model.write(1 << 20, 1 << 20, 0x5b)
    top = tmp_path / "top.qcow2"
    qemu_img_create(top, vsize, cluster_size=cs_text, b=base, F="qcow2")
    apply(top, model, [
        ("write", 100, 50, 0x01),                 # COW head and tail
        ("write", (1 << 20) - 10, 20, 0x02),       # across backing runs
        ("write", 3 * cs, cs, 0x03),
        ("zero", 5 * cs, cs),                      # zero flag over backing
    ])
    strata_io(top, f"discard {6 * cs} {cs}")
    model.zero(6 * cs, cs)
    qemu_check(top)
    raw = tmp_path / "ref.raw"
    model.save(raw)
    qemu_compare(top, raw)
    # Unallocated areas still come from the backing file.
    assert l2_entry(top, 7 * cs) == 0


def test_backing_shorter(tmp_path):
    base = tmp_path / "base.qcow2"
    qemu_img_create(base, 1 << 20, cluster_size="64k")
    qemu_io(base, "write -P 0x42 0 1M")
    top = tmp_path / "top.qcow2"
    qemu_img_create(top, 4 << 20, cluster_size="64k", b=base, F="qcow2")
    model = Model(4 << 20)
    model.write(0, 1 << 20, 0x42)
    apply(top, model, [("write", (1 << 20) - 100, 200, 0x07)])
    strata_io(top, "read 3145728 65536 0", read_only=True)
    raw = tmp_path / "ref.raw"
    model.save(raw)
    qemu_compare(top, raw)
    qemu_check(top)


def test_reads_qemu_data(tmp_path):
    img = tmp_path / "t.qcow2"
    qemu_img_create(img, VSIZE, cluster_size="64k")
    qemu_io(img, "write -P 0x31 0 100k", "write -z 200k 64k",
            "write -P 0x32 1M 4k", "discard 0 64k")
    model = Model(VSIZE)
    model.write(0, 100 << 10, 0x31)
    model.zero(0, 64 << 10)
    model.write(1 << 20, 4096, 0x32)
    raw = tmp_path / "ref.raw"
    model.save(raw)
    strata_io(img, f"readfile 0 {VSIZE} {raw}", read_only=True)
    runs = map_output(img, read_only=True)
    # 1M..1M+64k is data with a host offset.
    data = [r for r in runs if r[0] <= (1 << 20) < r[0] + r[1]][0]
    assert data[2] & 0x01 and data[2] & 0x04 and data[3] is not None


@pytest.mark.parametrize("ctype", ["zlib", "zstd"])
def test_compressed(tmp_path, ctype):
    raw = tmp_path / "src.raw"
    model = Model(VSIZE)
    for i in range(0, VSIZE, 1 << 16):
        model.write(i, 1 << 15, (i >> 16) % 251 + 1)
    model.save(raw)
    img = tmp_path / "c.qcow2"
    run_convert = ["qemu-img", "convert", "-c", "-O", "qcow2", "-o",
                   f"compression_type={ctype},cluster_size=64k", str(raw),
                   str(img)]
    import subprocess
    subprocess.run(run_convert, check=True)
    strata_io(img, f"readfile 0 {VSIZE} {raw}", read_only=True)
    runs = map_output(img, read_only=True)
    assert any(r[2] & 0x40 for r in runs), runs
    # Writing into compressed clusters copies them out (COW).
    apply(img, model, [("write", 100, 10, 0xee),
                       ("write", (1 << 20) + 5, 70000, 0xef),
                       ("zero", 2 << 20, 1 << 16, "unmap")])
    qemu_check(img)
    model.save(raw)
    qemu_compare(img, raw)


@pytest.mark.parametrize("ctype", ["zlib", "zstd"])
def test_strata_compressed_writes(tmp_path, ctype):
    img = tmp_path / "c.qcow2"
    qemu_img_create(img, VSIZE, cluster_size="4k", compression_type=ctype)
    model = Model(VSIZE)
    cmds = []
    for i in range(64):
        cmds.append(f"writec {i * 4096} 4096 {i % 7 + 1}")
        model.write(i * 4096, 4096, i % 7 + 1)
    strata_io(img, *cmds)
    # Incompressible data falls back to a normal cluster.
    qemu_check(img)
    raw = tmp_path / "ref.raw"
    model.save(raw)
    qemu_compare(img, raw)
    e = l2_entry(img, 4096)
    assert e & (1 << 62) and not e & (1 << 63)
    # Packing: 64 tiny compressed clusters need far fewer host clusters.
    assert file_size(img) < 40 * 4096


def test_allocation_at_end(tmp_path):
    img = tmp_path / "t.qcow2"
    qemu_img_create(img, VSIZE, cluster_size="64k")
    before = file_size(img)
    strata_io(img, "write 4M 64k 1")
    after1 = file_size(img)
    strata_io(img, "discard 4M 64k", "write 0 64k 2")
    after2 = file_size(img)
    assert after1 > before and after2 > after1
    e = l2_entry(img, 0)
    assert (e & 0x00fffffffffffe00) >= before
    qemu_check(img)


def test_grows_refcount_table(tmp_path):
    # 512-byte clusters with 64-bit refcounts: one refcount block covers
    # 32 KiB, one table cluster 2 MiB, so 6 MiB of data grows the table.
    img = tmp_path / "t.qcow2"
    qemu_img_create(img, VSIZE, cluster_size="512", refcount_bits=64)
    model = Model(VSIZE)
    apply(img, model, [("write", 0, 6 << 20, 0x3c)])
    qemu_check(img)
    raw = tmp_path / "ref.raw"
    model.save(raw)
    qemu_compare(img, raw)


def test_stress_threads_over_backing(tmp_path):
    base = tmp_path / "base.qcow2"
    qemu_img_create(base, 4 << 20, cluster_size="64k")
    qemu_io(base, "write -P 0x10 0 4M")
    top = tmp_path / "top.qcow2"
    qemu_img_create(top, 4 << 20, cluster_size="64k", b=base, F="qcow2")
    strata_io(top, "stress 8 300 1")
    qemu_check(top)
    small = tmp_path / "small.qcow2"
    qemu_img_create(small, 1 << 20, cluster_size="4k", refcount_bits=1)
    strata_io(small, "stress 6 400 7")
    qemu_check(small)


@pytest.mark.parametrize("backing", [False, True], ids=["alone", "backed"])
def test_stress_mixed_ops(tmp_path, backing):
    """Writes, write-zeroes and discards from 8 threads at once, each in
    its own clusters (so the result is deterministic) but all sharing L2
    tables and refcount blocks that are being allocated meanwhile."""
    img = tmp_path / "s.qcow2"
    if backing:
        base = tmp_path / "base.qcow2"
        qemu_img_create(base, 8 << 20, cluster_size="64k")
        qemu_io(base, "write -P 0x07 0 8M")
        qemu_img_create(img, 8 << 20, cluster_size="4k", b=base, F="qcow2")
    else:
        qemu_img_create(img, 8 << 20, cluster_size="4k", refcount_bits=1)
    strata_io(img, "stressops 8 1500 5")
    qemu_check(img)


def test_kill_leaves_at_most_leaks(tmp_path):
    """Metadata reaches the disk in an order that makes a crash at any
    moment leave a consistent image: refcounts before the L2 entries
    that use them, L2 entries before the refcounts of what they no
    longer use.  After kill -9, `qemu-img check` may only find leaks."""
    img = tmp_path / "k.qcow2"
    for delay in (0.3, 0.6):
        qemu_img_create(img, 16 << 20, cluster_size="4k")
        proc = subprocess.Popen([io_tool(), str(img), "stressops 8 100000 3"],
                                stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        try:
            time.sleep(delay)
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        check = subprocess.run(["qemu-img", "check", str(img)],
                               capture_output=True, text=True)
        assert check.returncode in (0, 3), check.stdout + check.stderr
        assert "ERROR" not in check.stdout
        img.unlink()
