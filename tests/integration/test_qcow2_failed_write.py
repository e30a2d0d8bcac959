# SPDX-License-Identifier: BSD-3-Clause
"""A qcow2 cluster allocation whose data write fails is given back: no
leaked cluster for qemu-img check, and the retried (or next) write
allocates the same host clusters a write that never failed would have
(on a thin volume the image does not grow for a failed write).  The
image lives on a small loop device that fills up (ENOSPC); a second
image on a large loop device in the same daemon is the control.
(blkdebug cannot be used: it is not a protocol node, so qcow2 cannot
append clusters through it.)"""
import json
import os
import subprocess

import pytest

from block_util import LoopDevice
from thinp_pause_util import (PausableDaemon, aio_write, client, pattern,
                              pump_until_event)

KiB = 1024
MiB = 1024 * KiB
SMALL = 1 * MiB     # the image's metadata plus a few clusters
LARGE = 16 * MiB


@pytest.fixture
def daemons():
    started = []
    yield started
    for d in reversed(started):
        d.stop()


@pytest.fixture
def loops():
    made = []
    yield made
    for loop in reversed(made):
        loop.detach()


def start(tmp_path, daemons, loops, export_opts=""):
    """fmt0 on a SMALL device, fmt1 (the control) on a LARGE one.
    Exports disk / control."""
    if os.geteuid() != 0 or not os.path.exists("/dev/loop-control"):
        pytest.skip("loop devices need root")
    devs = []
    for i, size in enumerate((SMALL, LARGE)):
        loop = LoopDevice(tmp_path / f"loop{i}.img", size)
        loops.append(loop)
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", loop.dev,
                        "64M"], check=True)
        devs.append(loop)
    opts = "," + export_opts if export_opts else ""
    d = PausableDaemon(tmp_path, [
        "--blockdev", f"driver=file,node-name=proto0,filename={devs[0].dev}",
        "--blockdev", "driver=qcow2,node-name=fmt0,file=proto0",
        "--blockdev", f"driver=file,node-name=proto1,filename={devs[1].dev}",
        "--blockdev", "driver=qcow2,node-name=fmt1,file=proto1",
        "--export", "type=nbd,id=e0,node-name=fmt0,name=disk,writable=on"
                    + opts,
        "--export", "type=nbd,id=e1,node-name=fmt1,name=control,"
                    "writable=on"])
    daemons.append(d)
    return d, devs


def check_clean(path):
    out = subprocess.run(["qemu-img", "check", path], capture_output=True,
                         text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "No errors were found" in out.stdout, out.stdout


def mapping(path):
    out = subprocess.run(["qemu-img", "map", "--output=json", path],
                         capture_output=True, text=True, check=True)
    return [(m["start"], m["length"], m["data"], m.get("offset"))
            for m in json.loads(out.stdout)]


def end_offset(path):
    out = subprocess.run(["qemu-img", "check", "--output=json", path],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout)["image-end-offset"]


def control_write(d, data, offset):
    c = client(d.uri("control"))
    c.pwrite(data, offset)
    c.shutdown()


def finish(d, devs):
    d.stop()
    for loop in devs:
        check_clean(loop.dev)
    assert mapping(devs[0].dev) == mapping(devs[1].dev)
    assert end_offset(devs[0].dev) == end_offset(devs[1].dev)


@pytest.mark.parametrize("offset", [0, 4 * KiB])
def test_enospc_retry_allocates_cleanly(tmp_path, daemons, loops, offset):
    d, devs = start(tmp_path, daemons, loops)
    length = 2 * MiB    # more than the small device has left
    h = client(d.uri("disk"))
    w = aio_write(h, pattern(3, length), offset)
    ev = pump_until_event(d.qmp, [w])
    assert ev["data"]["nospace"] is True
    devs[0].grow(LARGE)
    d.qmp.cmd("cont")
    w.wait()
    assert w.error is None
    assert h.pread(length, offset) == pattern(3, length)
    h.shutdown()
    control_write(d, pattern(3, length), offset)
    finish(d, devs)


def test_failed_write_then_next_write_reuses_space(tmp_path, daemons, loops):
    d, devs = start(tmp_path, daemons, loops, "werror=report")
    h = client(d.uri("disk"))
    w = aio_write(h, pattern(5, 2 * MiB), 32 * KiB)
    w.wait()
    assert w.error is not None
    # The failed write left the range unallocated and reading zeroes.
    assert h.pread(64 * KiB, 32 * KiB) == bytes(64 * KiB)
    devs[0].grow(LARGE)
    h.pwrite(pattern(6, 96 * KiB), 128 * KiB)
    h.shutdown()
    control_write(d, pattern(6, 96 * KiB), 128 * KiB)
    finish(d, devs)
