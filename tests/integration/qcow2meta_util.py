# SPDX-License-Identifier: BSD-3-Clause
"""Helpers for the qcow2meta integration tests: build images with
qemu-img/qemu-io, damage their metadata with struct (offsets from QEMU's
docs/interop/qcow2.txt), and run `check` with strata-img and qemu-img on
byte-identical copies so their verdicts can be compared."""
import json
import os
import shutil
import signal
import struct
import subprocess

from conftest import binary, require

L1E_OFFSET_MASK = 0x00fffffffffffe00
L2E_OFFSET_MASK = 0x00fffffffffffe00
OFLAG_COPIED = 1 << 63
OFLAG_COMPRESSED = 1 << 62


def run_tool(cmd, timeout=120):
    """Runs a command; a death by signal (a crash) fails the test."""
    proc = subprocess.run([str(c) for c in cmd], capture_output=True,
                          text=True, timeout=timeout)
    if proc.returncode < 0:
        raise AssertionError(
            f"{cmd} crashed with signal {signal.Signals(-proc.returncode).name}"
            f"\nstderr:\n{proc.stderr}")
    return proc


def qemu_img(*args, check=True):
    require("qemu-img")
    proc = run_tool(["qemu-img", *args])
    if check and proc.returncode != 0:
        raise AssertionError(f"qemu-img {args} exited {proc.returncode}\n"
                             f"{proc.stdout}\n{proc.stderr}")
    return proc


def strata_img(*args, check=True):
    proc = run_tool([binary("strata-img"), *args])
    if check and proc.returncode != 0:
        raise AssertionError(f"strata-img {args} exited {proc.returncode}\n"
                             f"{proc.stdout}\n{proc.stderr}")
    return proc


def qemu_io(image, *cmds):
    require("qemu-io")
    args = ["qemu-io", "-f", "qcow2"]
    for c in cmds:
        args += ["-c", c]
    proc = run_tool(args + [image])
    assert proc.returncode == 0 and "error" not in proc.stdout.lower(), \
        proc.stdout + proc.stderr
    return proc


def qemu_io_then_crash(image, *cmds):
    """Runs qemu-io commands, then has qemu-io kill itself with SIGKILL
    (`sigraise 9`) so nothing is flushed or cleaned up on close."""
    require("qemu-io")
    args = ["qemu-io", "-f", "qcow2"]
    for c in (*cmds, "sigraise 9"):
        args += ["-c", c]
    proc = subprocess.run(args + [str(image)], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == -signal.SIGKILL, proc.stdout + proc.stderr
    assert "error" not in proc.stdout.lower(), proc.stdout
    return proc


def make_image(path, size="4M", opts="", writes=()):
    """qemu-img create + qemu-io writes ("write -P 0x11 0 64k" ...)."""
    args = ["create", "-q", "-f", "qcow2"]
    if opts:
        args += ["-o", opts]
    qemu_img(*args, path, size)
    if writes:
        qemu_io(path, *writes)
    return path


# ---- raw metadata access ----

class Image:
    """Decoded fixed header of a qcow2 file plus table accessors."""

    def __init__(self, path):
        self.path = str(path)
        with open(self.path, "rb") as f:
            h = f.read(104)
        (_magic, self.version, _bo, _bs, self.cluster_bits, self.size, _c,
         self.l1_size, self.l1_off, self.rt_off, self.rt_clusters,
         self.nb_snapshots, _so) = struct.unpack(">IIQIIQIIQQIIQ", h[:72])
        if self.version >= 3:
            (self.incompat, self.compat, self.autoclear,
             self.refcount_order) = struct.unpack(">QQQI", h[72:100])
        else:
            self.incompat = self.compat = self.autoclear = 0
            self.refcount_order = 4
        self.cs = 1 << self.cluster_bits
        self.refcount_bits = 1 << self.refcount_order
        self.rb_entries = self.cs * 8 // self.refcount_bits

    def read(self, offset, n):
        with open(self.path, "rb") as f:
            f.seek(offset)
            return f.read(n)

    def write(self, offset, data):
        with open(self.path, "r+b") as f:
            f.seek(offset)
            f.write(data)

    def u64(self, offset):
        return struct.unpack(">Q", self.read(offset, 8))[0]

    def put_u64(self, offset, value):
        self.write(offset, struct.pack(">Q", value))

    def file_size(self):
        return os.path.getsize(self.path)

    # L1 / L2
    def l1_entry_offset(self, index):
        return self.l1_off + 8 * index

    def l2_table(self, l1_index=0):
        l2 = self.u64(self.l1_entry_offset(l1_index)) & L1E_OFFSET_MASK
        assert l2, f"L1 entry {l1_index} has no L2 table"
        return l2

    def l2_entry_offset(self, guest_offset):
        entries = self.cs // 8
        cluster = guest_offset >> self.cluster_bits
        return self.l2_table(cluster // entries) + 8 * (cluster % entries)

    def host_cluster(self, guest_offset):
        """Host cluster index of a NORMAL guest cluster."""
        e = self.u64(self.l2_entry_offset(guest_offset))
        off = e & L2E_OFFSET_MASK
        assert off and not e & OFLAG_COMPRESSED, hex(e)
        return off >> self.cluster_bits

    # refcounts
    def refblock(self, cluster):
        rb = self.u64(self.rt_off + 8 * (cluster // self.rb_entries))
        assert rb, f"no refcount block covers cluster {cluster}"
        return rb

    def get_refcount(self, cluster):
        block = self.read(self.refblock(cluster), self.cs)
        i = cluster % self.rb_entries
        return _entry_get(block, i, self.refcount_order)

    def set_refcount(self, cluster, value):
        rb = self.refblock(cluster)
        block = bytearray(self.read(rb, self.cs))
        _entry_set(block, cluster % self.rb_entries, self.refcount_order,
                   value)
        self.write(rb, bytes(block))

    def set_incompat(self, bits):
        assert self.version >= 3
        self.put_u64(72, bits)
        self.incompat = bits


def _entry_get(block, i, order):
    width = 1 << order
    if width < 8:
        per = 8 // width
        return (block[i // per] >> (width * (i % per))) & ((1 << width) - 1)
    n = width // 8
    return int.from_bytes(block[i * n:(i + 1) * n], "big")


def _entry_set(block, i, order, value):
    width = 1 << order
    if width < 8:
        per = 8 // width
        shift = width * (i % per)
        mask = ((1 << width) - 1) << shift
        block[i // per] = (block[i // per] & ~mask) | ((value << shift) & mask)
        return
    n = width // 8
    block[i * n:(i + 1) * n] = value.to_bytes(n, "big")


# ---- running both checkers ----

def copy_image(src, dst):
    shutil.copyfile(src, dst)
    return dst


def check_json(tool, path, *args):
    """(exit code, JSON result or None, stderr) of `check --output=json`."""
    proc = tool("check", *args, "--output=json", path, check=False)
    doc = json.loads(proc.stdout) if proc.stdout.strip() else None
    if doc is not None:
        doc.pop("filename", None)
    return proc.returncode, doc, proc.stderr


def check_human(tool, path, *args):
    proc = tool("check", *args, path, check=False)
    return proc.returncode, proc.stdout, proc.stderr


def normalize_stderr(text):
    return text.replace("strata-img", "qemu-img")


def both(tmp_path, image, name):
    """Two byte-identical copies of image: (strata's, qemu's)."""
    ours = copy_image(image, tmp_path / f"{name}-strata.qcow2")
    theirs = copy_image(image, tmp_path / f"{name}-qemu.qcow2")
    return ours, theirs
