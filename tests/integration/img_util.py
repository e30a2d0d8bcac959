# SPDX-License-Identifier: BSD-3-Clause
"""Helpers for strata-img's integration tests: running strata-img beside
qemu-img (the reference), patterned data, and qcow2 header surgery."""
import json
import os
import signal
import struct
import subprocess
import time

import pytest

from conftest import binary, require
from nbd_util import stop as stop_process

MiB = 1 << 20


def strata_img_path():
    return binary("strata-img")


def run_tool(cmd, timeout=120):
    """Runs a command; fails the test if it died from a signal (a crash)."""
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if proc.returncode < 0:
        raise AssertionError(
            f"{cmd} crashed with signal {signal.Signals(-proc.returncode).name}"
            f"\nstderr:\n{proc.stderr}")
    return proc


def simg(*args, check=True, timeout=120):
    proc = run_tool([strata_img_path(), *map(str, args)], timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"strata-img {args} exited {proc.returncode}\n"
                             f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}")
    return proc


def qimg(*args, check=True, timeout=120):
    require("qemu-img")
    proc = run_tool(["qemu-img", *map(str, args)], timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"qemu-img {args} exited {proc.returncode}\n"
                             f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}")
    return proc


def qio(image, *cmds, fmt="qcow2"):
    """Runs qemu-io commands against an image (read-write)."""
    require("qemu-io")
    args = ["qemu-io", "-f", fmt]
    for c in cmds:
        args += ["-c", c]
    proc = run_tool(args + [str(image)])
    assert proc.returncode == 0, proc.stderr
    assert "error" not in proc.stdout.lower() or "0 errors" in proc.stdout, \
        proc.stdout
    return proc


def same_stderr(strata_err, qemu_err):
    """stderr of both tools with the program name made equal.  Trailing
    newlines are ignored: qemu-img 7.2 ends some hints without one."""
    return (strata_err.replace("strata-img", "qemu-img").rstrip("\n") ==
            qemu_err.rstrip("\n"))


def info_json(tool, path, *extra):
    proc = tool("info", "--output=json", *extra, path)
    return json.loads(proc.stdout)


def map_json(tool, path, *extra):
    proc = tool("map", "--output=json", *extra, path)
    return json.loads(proc.stdout)


def pattern_bytes(size, seed=1):
    """Deterministic data with zero holes (so sparse detection matters):
    every fourth 64 KiB block is left zero, the others carry a pattern
    derived from their offset."""
    out = bytearray(size)
    block = 64 * 1024
    for off in range(0, size, block):
        n = min(block, size - off)
        if (off // block) % 4 == 3:
            continue
        word = struct.pack(">QQ", off, seed)
        out[off:off + n] = (word * (n // 16 + 1))[:n]
    return bytes(out)


def write_raw(path, data):
    with open(path, "wb") as f:
        f.write(data)


# ---- qcow2 header surgery (offsets from docs/interop/qcow2.txt) ----

def qcow2_header(path):
    with open(path, "rb") as f:
        h = f.read(112)
    (magic, version, backing_off, backing_size, cluster_bits, size,
     crypt, l1_size, l1_off, rt_off, rt_clusters, nb_snap,
     snap_off) = struct.unpack(">IIQIIQIIQQIIQ", h[:72])
    hdr = dict(version=version, backing_off=backing_off,
               backing_size=backing_size, cluster_bits=cluster_bits,
               size=size, l1_size=l1_size, l1_off=l1_off, rt_off=rt_off,
               rt_clusters=rt_clusters)
    if version >= 3:
        hdr["refcount_order"] = struct.unpack(">I", h[96:100])[0]
    else:
        hdr["refcount_order"] = 4
    return hdr


def poke(path, offset, fmt, *values):
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(struct.pack(fmt, *values))


def peek(path, offset, fmt):
    with open(path, "rb") as f:
        f.seek(offset)
        return struct.unpack(fmt, f.read(struct.calcsize(fmt)))


def set_refcount(path, cluster_index, value):
    """Sets the refcount of a host cluster (16-bit refcounts only)."""
    h = qcow2_header(path)
    assert h["refcount_order"] == 4
    cs = 1 << h["cluster_bits"]
    per_block = cs * 8 // 16
    rb_off = peek(path, h["rt_off"] + 8 * (cluster_index // per_block),
                  ">Q")[0]
    assert rb_off, "refcount block not allocated"
    poke(path, rb_off + 2 * (cluster_index % per_block), ">H", value)


def first_l2_entry_offset(path):
    """File offset of the first L2 entry of guest cluster 0."""
    h = qcow2_header(path)
    l1e = peek(path, h["l1_off"], ">Q")[0]
    l2 = l1e & 0x00fffffffffffe00
    assert l2, "guest cluster 0 has no L2 table"
    return l2


# ---- qemu-storage-daemon holding an image ----

class Qsd:
    def __init__(self, tmp_path, image, fmt="qcow2", writable=True):
        require("qemu-storage-daemon")
        self.sock = os.path.join(tmp_path, "qsd.sock")
        self.pidfile = os.path.join(tmp_path, "qsd.pid")
        args = ["qemu-storage-daemon",
                "--blockdev",
                f"driver=file,node-name=f,filename={image}",
                "--blockdev", f"driver={fmt},node-name=n,file=f",
                "--nbd-server", f"addr.type=unix,addr.path={self.sock}",
                "--export",
                f"type=nbd,id=e,node-name=n,writable={'on' if writable else 'off'}",
                "--pidfile", self.pidfile]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE)
        deadline = time.time() + 10
        while not os.path.exists(self.sock):
            if self.proc.poll() is not None:
                raise AssertionError("qemu-storage-daemon failed: " +
                                     self.proc.stderr.read().decode())
            if time.time() > deadline:
                self.stop()
                raise AssertionError("qemu-storage-daemon did not start")
            time.sleep(0.05)

    def stop(self):
        stop_process(self.proc)


@pytest.fixture
def qsd_factory(tmp_path):
    started = []

    def start(image, **kw):
        q = Qsd(str(tmp_path), str(image), **kw)
        started.append(q)
        return q

    yield start
    for q in started:
        q.stop()
