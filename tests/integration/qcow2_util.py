# SPDX-License-Identifier: BSD-3-Clause
"""Helpers for the qcow2 engine's integration tests.

The engine is driven by tests/unit/qcow2/qcow2-io-tool (a minimal
qemu-io built against libstrata); results are judged by the real
qemu-img (check, compare) and by a byte model of the guest disk.
"""
import os
import struct
import subprocess

from conftest import BUILD, run

UNITS = {"k": 1 << 10, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}


def size(text):
    """'64k' -> 65536."""
    text = str(text)
    if text[-1] in UNITS:
        return int(text[:-1]) * UNITS[text[-1]]
    return int(text)


def io_tool():
    path = os.path.join(BUILD, "tests", "unit", "qcow2", "qcow2-io-tool")
    if not os.path.exists(path):
        raise FileNotFoundError(f"qcow2-io-tool not built in {BUILD}")
    return path


def strata_io(image, *cmds, read_only=False, no_backing=False, check=True,
              fmt=None, timeout=120):
    """Runs qcow2-io-tool on image with the given commands."""
    argv = [io_tool()]
    if read_only:
        argv.append("-r")
    if no_backing:
        argv.append("-n")
    if fmt:
        argv += ["-f", fmt]
    argv.append(str(image))
    argv += list(cmds)
    return run(argv, check=check, timeout=timeout)


def qemu_img_create(path, vsize, **opts):
    args = ["qemu-img", "create", "-q", "-f", "qcow2"]
    o = ",".join(f"{k}={v}" for k, v in opts.items() if k not in ("b", "F"))
    if o:
        args += ["-o", o]
    if "b" in opts:
        args += ["-b", str(opts["b"]), "-F", opts.get("F", "qcow2")]
    args += [str(path), str(vsize)]
    run(args)


def qemu_check(path):
    """qemu-img check must report a clean image."""
    proc = run(["qemu-img", "check", str(path)], check=False)
    assert proc.returncode == 0, (
        f"qemu-img check {path} exited {proc.returncode}\n{proc.stdout}"
        f"{proc.stderr}")
    return proc


def qemu_compare(path, raw):
    proc = run(["qemu-img", "compare", "-f", "qcow2", "-F", "raw", str(path),
                str(raw)], check=False)
    assert proc.returncode == 0, (
        f"qemu-img compare exited {proc.returncode}\n{proc.stdout}"
        f"{proc.stderr}")


class Model:
    """The guest-visible content of a disk, applied op by op."""

    def __init__(self, vsize, base=None):
        self.data = bytearray(vsize) if base is None else bytearray(base)
        assert len(self.data) == vsize

    def write(self, off, length, pat):
        self.data[off:off + length] = bytes([pat]) * length

    def zero(self, off, length):
        self.write(off, length, 0)

    def save(self, path):
        with open(path, "wb") as f:
            f.write(self.data)


def header(path):
    """Decodes the fields of a qcow2 header the tests look at."""
    with open(path, "rb") as f:
        h = f.read(112)
    (magic, version, _bfo, _bfs, cluster_bits, vsize, _crypt, l1_size,
     l1_offset, rt_offset, rt_clusters, nb_snap, snap_off) = struct.unpack(
        ">IIQIIQIIQQIIQ", h[:72])
    out = dict(version=version, cluster_bits=cluster_bits, size=vsize,
               l1_size=l1_size, l1_offset=l1_offset, rt_offset=rt_offset,
               rt_clusters=rt_clusters, nb_snapshots=nb_snap)
    if version >= 3:
        inc, comp, auto, order, hlen = struct.unpack(">QQQII", h[72:104])
        out.update(incompatible=inc, compatible=comp, autoclear=auto,
                   refcount_order=order, header_length=hlen)
    return out


def l2_entry(path, guest_offset):
    """The raw L2 entry mapping guest_offset (0 if no L2 table)."""
    h = header(path)
    cb = h["cluster_bits"]
    l2_bits = cb - 3
    l1_index = guest_offset >> (cb + l2_bits)
    l2_index = (guest_offset >> cb) & ((1 << l2_bits) - 1)
    with open(path, "rb") as f:
        f.seek(h["l1_offset"] + 8 * l1_index)
        l1e = struct.unpack(">Q", f.read(8))[0]
        l2_off = l1e & 0x00fffffffffffe00
        if not l2_off:
            return 0
        f.seek(l2_off + 8 * l2_index)
        return struct.unpack(">Q", f.read(8))[0]


def set_incompatible(path, bits):
    with open(path, "r+b") as f:
        f.seek(72)
        f.write(struct.pack(">Q", bits))


def qemu_io(path, *cmds, fmt="qcow2"):
    args = ["qemu-io", "-f", fmt]
    for c in cmds:
        args += ["-c", c]
    args.append(str(path))
    proc = run(args)
    out = proc.stdout.lower()
    assert "error" not in out and "failed" not in out, proc.stdout
    return proc


def file_size(path):
    return os.stat(path).st_size


def map_output(image, **kw):
    """Runs the tool's 'map' and returns [(off, len, flags, host|None)]."""
    proc = strata_io(image, "map", **kw)
    runs = []
    for line in proc.stdout.splitlines():
        parts = line.split()
        runs.append((int(parts[0]), int(parts[1]), int(parts[2], 16),
                     int(parts[3]) if len(parts) > 3 else None))
    return runs


__all__ = ["size", "io_tool", "strata_io", "qemu_img_create", "qemu_check",
           "qemu_compare", "Model", "header", "l2_entry", "set_incompatible",
           "qemu_io", "file_size", "map_output", "subprocess"]
