# SPDX-License-Identifier: BSD-3-Clause
"""The file/host_device driver on a block device (loop devices over
sparse files): size from BLKGETSIZE64, write-zeroes by BLKZEROOUT or by
unmapping, BLKDISCARD with discard=unmap, O_DIRECT with 512- and
4096-byte sectors (the core's read-modify-write), a qcow2 image living
on the device, and a device that grows under a running daemon."""
import errno
import os
import shutil

import pytest

from block_util import LoopDevice
from conftest import binary, run
from qmp_util import Daemon, wait_for_path

MiB = 1024 * 1024
pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("losetup") is None,
    reason="loop devices need root and losetup")


@pytest.fixture
def loops(tmp_path):
    made = []

    def make(size=64 * MiB, sector_size=512):
        try:
            dev = LoopDevice(tmp_path / f"loop{len(made)}.img", size, sector_size)
        except RuntimeError as e:
            pytest.skip(str(e))
        made.append(dev)
        return dev

    yield make
    for dev in made:
        dev.detach()


@pytest.fixture
def daemons(tmp_path):
    started = []

    def start(blockdevs, export=None):
        name = f"d{len(started)}"
        sock = str(tmp_path / f"{name}-nbd.sock")
        args = []
        for b in blockdevs:
            args += ["--blockdev", b]
        if export:
            args += ["--nbd-server", f"addr.type=unix,addr.path={sock}",
                     "--export", f"type=nbd,id=e0,node-name={export},"
                                 "writable=on"]
        d = Daemon(binary("stratad"), tmp_path, args, name=name)
        started.append(d)
        if export:
            wait_for_path(sock, d.proc)
        d.nbd_sock = sock
        return d

    yield start
    for d in started:
        d.stop()


def nbd_client(d, name):
    import nbd
    h = nbd.NBD()
    h.set_export_name(name)
    h.connect_unix(d.nbd_sock)
    return h


def node_info(d, name):
    nodes = d.connect().cmd("query-named-block-nodes", {"flat": True})
    return next(n for n in nodes if n["node-name"] == name)


@pytest.mark.parametrize("driver", ["host_device", "file"])
def test_size_and_growth(loops, daemons, driver):
    dev = loops(64 * MiB)
    d = daemons([f"driver={driver},node-name=d0,filename={dev.dev}"])
    assert node_info(d, "d0")["image"]["virtual-size"] == 64 * MiB
    dev.grow(96 * MiB)
    # The thin-provisioning query re-reads the device (block_refresh_size).
    alloc = d.connect().cmd("query-block-allocation", {"node-name": "d0"})
    assert alloc[0]["physical"] == 96 * MiB
    assert alloc[0]["block-device"] is True
    assert node_info(d, "d0")["image"]["virtual-size"] == 96 * MiB


def test_write_zeroes_and_discard(loops, daemons):
    import nbd
    dev = loops(64 * MiB)
    d = daemons([f"driver=host_device,node-name=d0,filename={dev.dev},"
                 "discard=unmap"], export="d0")
    h = nbd_client(d, "d0")
    try:
        h.pwrite(b"\xaa" * (8 * MiB), 0)
        h.flush()
        full = dev.allocated()
        assert full >= 8 * MiB

        # BLKZEROOUT (no unmap): zeroes, the backing file keeps its blocks.
        h.zero(MiB, 0, nbd.CMD_FLAG_NO_HOLE)
        h.flush()
        assert dev.read(0, MiB) == bytes(MiB)
        assert dev.allocated() == full
        # Without NO_HOLE the device may unmap: the loop punches a hole.
        h.zero(MiB, MiB)
        h.flush()
        assert dev.read(MiB, MiB) == bytes(MiB)
        assert dev.allocated() <= full - MiB
        # A fast zero that would have to write (no unmap) fails at once.
        with pytest.raises(nbd.Error) as e:
            h.zero(MiB, 2 * MiB, nbd.CMD_FLAG_NO_HOLE | nbd.CMD_FLAG_FAST_ZERO)
        assert e.value.errno in (errno.ENOTSUP, "ENOTSUP")
        assert dev.read(2 * MiB, 16) == b"\xaa" * 16
        # Sub-sector zeroes are written, not lost.
        h.zero(100, 3 * MiB + 10)
        assert h.pread(120, 3 * MiB) == b"\xaa" * 10 + bytes(100) + b"\xaa" * 10

        # BLKDISCARD: whole sectors inside the range are released.
        before = dev.allocated()
        h.trim(2 * MiB + 300, 4 * MiB - 100)
        h.flush()
        assert dev.allocated() <= before - 2 * MiB
        assert dev.read(4 * MiB, 2 * MiB) == bytes(2 * MiB)
        # The partial sectors at both ends are left alone.
        assert dev.read(4 * MiB - 100, 100) == b"\xaa" * 100
    finally:
        h.shutdown()


def test_discard_ignore_keeps_blocks(loops, daemons):
    dev = loops(16 * MiB)
    d = daemons([f"driver=host_device,node-name=d0,filename={dev.dev}"],
                export="d0")
    h = nbd_client(d, "d0")
    try:
        h.pwrite(b"\x55" * (2 * MiB), 0)
        h.flush()
        before = dev.allocated()
        h.trim(2 * MiB, 0)
        h.flush()
        assert dev.allocated() == before
        assert dev.read(0, 16) == b"\x55" * 16
    finally:
        h.shutdown()


@pytest.mark.parametrize("sector_size", [512, 4096])
def test_direct_io_unaligned(loops, daemons, sector_size):
    """cache.direct=on: the device refuses I/O that is not whole logical
    blocks; the core's read-modify-write makes byte-granular requests
    work and keeps the bytes around them."""
    dev = loops(16 * MiB, sector_size)
    d = daemons([f"driver=host_device,node-name=d0,filename={dev.dev},"
                 "cache.direct=on,discard=unmap"], export="d0")
    model = bytearray(b"\x11" * (64 * 1024))
    h = nbd_client(d, "d0")
    try:
        h.pwrite(bytes(model), 0)
        for off, n, byte in [(1, 1, 0x22), (511, 3, 0x33), (4095, 2, 0x44),
                             (5000, 9000, 0x55), (sector_size - 7, 20, 0x66)]:
            h.pwrite(bytes([byte]) * n, off)
            model[off:off + n] = bytes([byte]) * n
        h.zero(300, 20000)
        model[20000:20300] = bytes(300)
        assert h.pread(len(model), 0) == bytes(model)
        h.flush()
    finally:
        h.shutdown()
    # O_DIRECT went to the device: read it without our page cache.
    fd = os.open(dev.dev, os.O_RDONLY | os.O_DIRECT)
    try:
        import mmap
        buf = mmap.mmap(-1, len(model))
        os.preadv(fd, [buf], 0)
        assert bytes(buf) == bytes(model)
    finally:
        os.close(fd)


def test_qcow2_on_device(loops, daemons):
    dev = loops(64 * MiB)
    run(["qemu-img", "create", "-q", "-f", "qcow2", dev.dev, "32M"])
    d = daemons([f"driver=host_device,node-name=p0,filename={dev.dev}",
                 "driver=qcow2,node-name=q0,file=p0"], export="q0")
    h = nbd_client(d, "q0")
    try:
        h.pwrite(b"\xab" * MiB, 0)
        h.pwrite(b"\xcd" * 4096, 20 * MiB + 512)
        h.zero(64 * 1024, 8 * MiB)
        h.flush()
    finally:
        h.shutdown()
    d.stop()
    run(["qemu-img", "check", "-f", "qcow2", dev.dev])
    run(["qemu-io", "-f", "qcow2", "-r", "-c", "read -P 0xab 0 1M",
         "-c", f"read -P 0xcd {20 * MiB + 512} 4096",
         "-c", f"read -P 0 {8 * MiB} 64k", dev.dev])
    # strata reads what it wrote through a fresh open of the device.
    p = run([binary("strata-img"), "info", "--output=json", dev.dev])
    assert '"format": "qcow2"' in p.stdout
