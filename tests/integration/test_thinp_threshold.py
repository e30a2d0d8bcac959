# SPDX-License-Identifier: BSD-3-Clause
"""QEMU's write threshold, side by side: the same scenario against
qemu-storage-daemon and stratad must give the same events and replies.
The image is a qcow2 file; proto0 is its file node, fmt0 the qcow2 node
exported over NBD and written with qemu-io."""
import subprocess

import pytest

from conftest import require
from qmp_util import QmpError
from thinp_util import MiB, drain_events, image_daemon, qemu_io

KINDS = ["qsd", "strata"]


def new_image(tmp_path, kind):
    path = str(tmp_path / f"{kind}.qcow2")
    subprocess.run(["qemu-img", "create", "-f", "qcow2", path, "64M"],
                   check=True, capture_output=True)
    return path


def payloads(events):
    return [(e["event"], e["data"]) for e in events]


def threshold_of(qmp, node):
    for n in qmp.cmd("query-named-block-nodes", flat=True):
        if n["node-name"] == node:
            return n["write_threshold"]
    raise KeyError(node)


def scenario(kind, tmp_path):
    """Runs the scenario; returns what a management client observes."""
    seen = []
    d = image_daemon(kind, tmp_path, new_image(tmp_path, kind))
    try:
        q = d.connect()
        uri = d.nbd_uri
        # Arm on the protocol node at the end of the first new cluster
        # (host offsets): the image's first write appends an L2 table and
        # a data cluster, and only the second ends past the threshold.
        q.cmd("block-set-write-threshold", {"node-name": "proto0",
                                            "write-threshold": 327680})
        seen.append(("armed", threshold_of(q, "proto0")))
        qemu_io(uri, "write -P 0x5a 0 64k")
        seen.append(("first cluster", payloads(drain_events(q))))
        qemu_io(uri, "write -P 0x5b 64k 64k")
        seen.append(("after disarm", payloads(drain_events(q)),
                     threshold_of(q, "proto0")))
        # Arm, disarm with 0, write: nothing.
        q.cmd("block-set-write-threshold", node_name_args("proto0", 1))
        q.cmd("block-set-write-threshold", node_name_args("proto0", 0))
        qemu_io(uri, "write -P 0x5c 128k 64k")
        seen.append(("disabled", payloads(drain_events(q)),
                     threshold_of(q, "proto0")))
        # Re-arm below data already written: nothing until the next write.
        q.cmd("block-set-write-threshold", node_name_args("proto0", 65536))
        seen.append(("rearm quiet", payloads(drain_events(q, 0.2))))
        qemu_io(uri, "write -P 0x5d 1M 4k")
        seen.append(("rearmed", payloads(drain_events(q))))
        # Guest offsets on the format node: ending exactly at the
        # threshold is not past it.
        q.cmd("block-set-write-threshold", node_name_args("fmt0", MiB))
        qemu_io(uri, "write -P 0x11 960k 64k")
        seen.append(("end == threshold", payloads(drain_events(q)),
                     threshold_of(q, "fmt0")))
        qemu_io(uri, "write -P 0x12 1M 4k")
        seen.append(("end > threshold", payloads(drain_events(q))))
        # Byte granularity.
        q.cmd("block-set-write-threshold", node_name_args("fmt0", 1000))
        qemu_io(uri, "write -P 0x13 600 512")
        seen.append(("unaligned", payloads(drain_events(q))))
        # Write-zeroes counts.
        q.cmd("block-set-write-threshold", node_name_args("fmt0", 4096))
        qemu_io(uri, "write -z 0 8k")
        seen.append(("zeroes", payloads(drain_events(q))))
        # Reads and flushes never fire.
        q.cmd("block-set-write-threshold", node_name_args("fmt0", 4096))
        qemu_io(uri, "read 0 64k", "flush")
        seen.append(("read", payloads(drain_events(q)),
                     threshold_of(q, "fmt0")))
        # Discard only fires with discard=unmap (this daemon: ignore).
        qemu_io(uri, "discard 0 64k")
        seen.append(("discard ignored", payloads(drain_events(q)),
                     threshold_of(q, "fmt0")))
        # Errors and odd values.
        for args in ({"node-name": "nope", "write-threshold": 5},
                     {"node-name": "fmt0"},
                     {"write-threshold": 5},
                     {"node-name": "fmt0", "write-threshold": "5"},
                     {"node-name": "fmt0", "write-threshold": 5, "x": 1}):
            try:
                q.cmd("block-set-write-threshold", args)
                seen.append(("accepted", args))
            except QmpError as e:
                seen.append(("error", args, e.cls, e.desc))
        q.cmd("block-set-write-threshold", node_name_args("fmt0", -1))
        seen.append(("minus one", threshold_of(q, "fmt0")))
        q.cmd("block-set-write-threshold", node_name_args("fmt0", 0))
    finally:
        d.stop()
    return seen


def node_name_args(node, value):
    return {"node-name": node, "write-threshold": value}


def discard_scenario(kind, tmp_path, discard):
    d = image_daemon(kind, tmp_path, new_image(tmp_path, kind),
                     discard=discard)
    try:
        q = d.connect()
        qemu_io(d.nbd_uri, "write -P 0x77 0 128k")
        q.cmd("block-set-write-threshold", node_name_args("fmt0", 4096))
        qemu_io(d.nbd_uri, "discard 0 64k")
        return payloads(drain_events(q)), threshold_of(q, "fmt0")
    finally:
        d.stop()


@pytest.fixture(scope="module")
def qsd_available():
    require("qemu-storage-daemon")
    require("qemu-io")


def test_threshold_scenario_matches_qemu(tmp_path, qsd_available):
    results = {k: scenario(k, tmp_path) for k in KINDS}
    assert results["strata"] == results["qsd"]
    r = dict((step[0], step[1:]) for step in results["qsd"])
    # Pin the QEMU facts the comparison relies on.
    assert r["first cluster"] == ([("BLOCK_WRITE_THRESHOLD", {
        "node-name": "proto0", "write-threshold": 327680,
        "amount-exceeded": 65536})],)
    assert r["end == threshold"] == ([], MiB)
    assert r["after disarm"] == ([], 0)
    assert r["rearmed"][0][0][1]["write-threshold"] == 65536
    assert r["end > threshold"][0][0][1]["amount-exceeded"] == 4096
    assert r["unaligned"][0][0][1]["amount-exceeded"] == 112
    assert r["zeroes"][0][0][1]["amount-exceeded"] == 4096
    assert r["read"] == ([], 4096)
    assert r["minus one"] == (-1,)


@pytest.mark.parametrize("discard", ["unmap", "ignore"])
def test_discard_threshold_matches_qemu(tmp_path, qsd_available, discard):
    results = {k: discard_scenario(k, tmp_path, discard) for k in KINDS}
    assert results["strata"] == results["qsd"]
    events, left = results["qsd"]
    if discard == "unmap":
        assert [e[1]["amount-exceeded"] for e in events] == [61440]
        assert left == 0
    else:
        assert events == [] and left == 4096
