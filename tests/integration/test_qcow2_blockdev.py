# SPDX-License-Identifier: BSD-3-Clause
"""qcow2 on a block device (a loop device over a sparse file): the image
ends where its metadata says, not at the end of the device, so new
clusters are appended right after the last one in use and the highest
host offset is the allocation a thin-provisioning manager sees."""
import json
import os

import pytest

from conftest import require, run
from qcow2_util import l2_entry, qemu_io, strata_io
from thinp_util import MiB, LoopDevice, image_daemon
from thinp_util import qemu_io as nbd_qemu_io


@pytest.fixture
def loop(tmp_path):
    require("losetup")
    if os.geteuid() != 0:
        pytest.skip("loop devices need root")
    dev = LoopDevice(str(tmp_path / "volume.img"), 64 * MiB)
    yield dev
    dev.detach()


@pytest.fixture
def daemons():
    started = []
    yield started
    for d in started:
        d.stop()


def image_end(path):
    """qemu-img check's image end offset; asserts the image is clean."""
    proc = run(["qemu-img", "check", "--output=json", str(path)], check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    info = json.loads(proc.stdout)
    assert not info.get("corruptions") and not info.get("leaks"), info
    return info["image-end-offset"]


def host_offset(path, guest):
    return l2_entry(path, guest) & 0x00fffffffffffe00


@pytest.mark.parametrize("opts", [
    {"cluster_size": "64k", "refcount_bits": 16},
    {"cluster_size": "4k", "refcount_bits": 1},
    {"cluster_size": "64k", "refcount_bits": 64},
    {"cluster_size": "64k", "compat": "0.10"},
])
def test_writes_append_after_metadata(loop, opts):
    o = ",".join(f"{k}={v}" for k, v in opts.items())
    run(["qemu-img", "create", "-q", "-f", "qcow2", "-o", o, loop.dev, "1G"])
    end0 = image_end(loop.dev)
    ops = [(0, MiB, 0x5a), (512 * MiB, 65536, 0x33), (1000 * MiB, 4096, 0x7e)]
    strata_io(loop.dev, *[f"write {o} {n} {p}" for o, n, p in ops], "flush")
    end1 = image_end(loop.dev)
    cs = 4096 if opts["cluster_size"] == "4k" else 65536
    l2_span = cs * (cs // 8)

    def new_l2(guest, before):
        return guest // l2_span not in {g // l2_span for g in before}

    # The first data cluster comes right after the old image end and the
    # L2 table that maps it (QEMU's order), not past the 64 MiB device.
    assert host_offset(loop.dev, 0) == end0 + cs
    assert end1 < 4 * MiB
    # A second open continues right there: nothing overlaps, no gap.
    strata_io(loop.dev, "write 300M 64k 0x11", "read 0 1M 0x5a")
    expect = end1 + (cs if new_l2(300 * MiB, [o for o, _, _ in ops]) else 0)
    assert host_offset(loop.dev, 300 * MiB) == expect
    end2 = image_end(loop.dev)
    assert end1 < end2 < 4 * MiB
    for off, n, pat in ops + [(300 * MiB, 65536, 0x11)]:
        qemu_io(loop.dev, f"read -P {pat} {off} {n}")


def test_device_full_is_enospc_not_corruption(loop):
    run(["qemu-img", "create", "-q", "-f", "qcow2", loop.dev, "1G"])
    # 80 MiB of data cannot fit a 64 MiB device: the write fails with
    # ENOSPC and what was written before stays readable and consistent.
    strata_io(loop.dev, "write 0 16M 0x21")
    proc = strata_io(loop.dev, "write 16M 80M 0x22", check=False)
    assert proc.returncode != 0
    assert "No space left on device" in proc.stderr + proc.stdout
    strata_io(loop.dev, "read 0 16M 0x21")
    proc = run(["qemu-img", "check", loop.dev], check=False)
    # Clusters allocated for the failed write are leaks, never errors.
    assert proc.returncode in (0, 3), proc.stdout + proc.stderr
    assert "ERROR" not in proc.stdout


def allocation(qmp):
    return qmp.cmd("query-block-allocation",
                   {"node-name": "proto0"})[0]["allocation"]


def test_stratad_allocation_is_image_end(tmp_path, loop, daemons):
    run(["qemu-img", "create", "-q", "-f", "qcow2", loop.dev, "1G"])
    strata_io(loop.dev, "write 0 256k 0x44")
    d = image_daemon("strata", tmp_path, loop.dev)
    daemons.append(d)
    q = d.connect()
    nbd_qemu_io(d.nbd_uri, "read -P 0x44 0 256k", "write -P 0x55 1M 1M",
                "write -P 0x66 700M 64k", "flush")
    after = allocation(q)
    d.stop()
    assert after == image_end(loop.dev)
    qemu_io(loop.dev, "read -P 0x44 0 256k", "read -P 0x55 1M 1M",
            "read -P 0x66 700M 64k")


def test_stratad_allocation_before_writes(tmp_path, loop, daemons):
    run(["qemu-img", "create", "-q", "-f", "qcow2", loop.dev, "1G"])
    strata_io(loop.dev, "write 0 3M 0x44")
    end = image_end(loop.dev)
    d = image_daemon("strata", tmp_path, loop.dev)
    daemons.append(d)
    assert allocation(d.connect()) == end
