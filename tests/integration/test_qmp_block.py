# SPDX-License-Identifier: BSD-3-Clause
"""QMP block graph and export commands of stratad: blockdev-add/del,
query-named-block-nodes, NBD server and exports, events to every
negotiated client, and strata-ctl's tables over a real graph."""
import json
import os
import subprocess

import pytest

from conftest import require, run
from qmp_util import Daemon, QmpError


@pytest.fixture
def raw_image(tmp_path):
    path = tmp_path / "b.raw"
    with open(path, "wb") as f:
        f.truncate(2 << 20)
    return str(path)


@pytest.fixture
def daemon(stratad_bin, tmp_path):
    d = Daemon(stratad_bin, tmp_path)
    yield d
    d.stop()


def add_raw(qmp, image, name="r0"):
    qmp.cmd("blockdev-add", {"driver": "raw", "node-name": name,
                             "file": {"driver": "file", "filename": image}})


def test_blockdev_add_and_query(daemon, raw_image):
    qmp = daemon.connect()
    add_raw(qmp, raw_image)
    nodes = qmp.cmd("query-named-block-nodes")
    by_name = {n["node-name"]: n for n in nodes}
    r0 = by_name["r0"]
    assert r0["drv"] == "raw"
    assert r0["file"] == raw_image
    assert r0["ro"] is False
    assert r0["backing_file_depth"] == 0
    assert r0["encrypted"] is False
    assert r0["detect_zeroes"] == "off"
    assert r0["write_threshold"] == 0
    assert r0["cache"] == {"writeback": True, "direct": False,
                           "no-flush": False}
    for k in ("bps", "bps_rd", "bps_wr", "iops", "iops_rd", "iops_wr"):
        assert r0[k] == 0
    assert r0["image"]["virtual-size"] == 2 << 20
    assert r0["image"]["format"] == "raw"
    assert r0["image"]["filename"] == raw_image
    assert r0["image"]["dirty-flag"] is False
    # The inline child has an implicit name and shows up as its own node.
    implicit = [n for n in nodes if n["node-name"].startswith("#block")]
    assert len(implicit) == 1 and implicit[0]["drv"] == "file"


def test_blockdev_add_errors(daemon, raw_image):
    qmp = daemon.connect()
    cases = [
        ({"driver": "file", "filename": raw_image},
         "'node-name' must be specified for the root node"),
        ({"node-name": "x"}, "Parameter 'driver' is missing"),
        ({"driver": "nosuch", "node-name": "x"},
         "Parameter 'driver' does not accept value 'nosuch'"),
        ({"driver": "file", "node-name": "x"},
         "Parameter 'filename' is missing"),
        ({"driver": "file", "node-name": "x", "filename": "/nonexistent"},
         "Could not open '/nonexistent': No such file or directory"),
        ({"driver": "file", "node-name": "x", "filename": raw_image,
          "bogus": 1}, "Parameter 'bogus' is unexpected"),
        ({"driver": "file", "node-name": "x", "filename": raw_image,
          "read-only": "yes"},
         "Invalid parameter type for 'read-only', expected: boolean"),
        ({"driver": "file", "node-name": "x", "filename": raw_image,
          "cache": {"direct": 1}},
         "Invalid parameter type for 'cache.direct', expected: boolean"),
    ]
    for args, desc in cases:
        with pytest.raises(QmpError) as e:
            qmp.cmd("blockdev-add", args)
        assert e.value.desc == desc, args
    add_raw(qmp, raw_image)
    with pytest.raises(QmpError) as e:
        qmp.cmd("blockdev-add", {"driver": "file", "node-name": "r0",
                                 "filename": raw_image})
    assert e.value.desc == "Duplicate nodes with node-name='r0'"


def test_libvirt_style_options_accepted(daemon, raw_image):
    qmp = daemon.connect()
    qmp.cmd("blockdev-add", {"driver": "file", "filename": raw_image,
                             "node-name": "f", "auto-read-only": True,
                             "discard": "unmap", "detect-zeroes": "off"})
    assert qmp.cmd("query-named-block-nodes")[0]["node-name"] == "f"


def test_blockdev_del_rules(daemon, raw_image, tmp_path):
    second = str(tmp_path / "second.raw")
    with open(second, "wb") as f:
        f.truncate(1 << 20)
    qmp = daemon.connect()
    qmp.cmd("blockdev-add", {"driver": "file", "filename": raw_image,
                             "node-name": "f0"})
    qmp.cmd("blockdev-add", {"driver": "raw", "file": "f0",
                             "node-name": "r0"})
    add_raw(qmp, second, "r1")
    implicit = [n["node-name"] for n in qmp.cmd("query-named-block-nodes")
                if n["node-name"].startswith("#")][0]

    def del_error(name):
        with pytest.raises(QmpError) as e:
            qmp.cmd("blockdev-del", {"node-name": name})
        return e.value.desc

    assert del_error("nosuch") == "Failed to find node with node-name='nosuch'"
    assert del_error("f0") == "Block device f0 is in use"
    assert del_error(implicit) == f"Node {implicit} is not owned by the monitor"
    qmp.cmd("blockdev-del", {"node-name": "r0"})
    qmp.cmd("blockdev-del", {"node-name": "f0"})
    qmp.cmd("blockdev-del", {"node-name": "r1"})
    assert qmp.cmd("query-named-block-nodes") == []


def test_exports_and_events_to_every_client(daemon, raw_image, tmp_path):
    qmp = daemon.connect()
    other = daemon.connect()
    unnegotiated = daemon.connect(negotiate=False)
    add_raw(qmp, raw_image)
    nbd_sock = str(tmp_path / "nbd.sock")
    qmp.cmd("nbd-server-start", {"addr": {"type": "unix",
                                          "data": {"path": nbd_sock}}})
    with pytest.raises(QmpError) as e:
        qmp.cmd("nbd-server-start", {"addr": {"type": "unix",
                                              "data": {"path": nbd_sock}}})
    assert e.value.desc == "NBD server already running"
    qmp.cmd("block-export-add", {"type": "nbd", "id": "e0",
                                 "node-name": "r0", "name": "disk"})
    exports = qmp.cmd("query-block-exports")
    assert len(exports) == 1
    # QEMU's members; strata may add its own.
    assert {k: exports[0][k] for k in ("type", "id", "node-name",
                                        "shutting-down")} == {
        "type": "nbd", "id": "e0", "node-name": "r0", "shutting-down": False}
    with pytest.raises(QmpError) as e:
        qmp.cmd("blockdev-del", {"node-name": "r0"})
    assert e.value.desc == "Node r0 is in use"

    # The event comes before the reply of the command that caused it.
    qmp.send_raw('{"execute":"block-export-del","arguments":{"id":"e0"}}\n')
    first = qmp.recv()
    assert first["event"] == "BLOCK_EXPORT_DELETED"
    assert first["data"] == {"id": "e0"}
    assert set(first["timestamp"]) == {"seconds", "microseconds"}
    assert qmp.recv() == {"return": {}}
    assert other.wait_event("BLOCK_EXPORT_DELETED")["data"] == {"id": "e0"}
    # Clients that did not negotiate get no events.
    assert unnegotiated.recv_line(0.5) is None

    assert qmp.cmd("query-block-exports") == []
    qmp.cmd("nbd-server-stop")
    with pytest.raises(QmpError) as e:
        qmp.cmd("nbd-server-stop")
    assert e.value.desc == "NBD server not running"
    qmp.cmd("blockdev-del", {"node-name": "r0"})


def test_command_line_graph_and_export(stratad_bin, tmp_path, raw_image):
    require("nbdinfo")
    nbd_sock = str(tmp_path / "nbd.sock")
    d = Daemon(stratad_bin, tmp_path, [
        "--blockdev", f"driver=file,filename={raw_image},node-name=f0",
        "--blockdev", '{"driver": "raw", "file": "f0", "node-name": "r0"}',
        "--nbd-server", f"addr.type=unix,addr.path={nbd_sock}",
        "--export", "type=nbd,id=e0,node-name=r0,name=disk,writable=on"])
    try:
        qmp = d.connect()
        names = {n["node-name"] for n in qmp.cmd("query-named-block-nodes")}
        assert names == {"f0", "r0"}
        info = run(["nbdinfo", "--json",
                    f"nbd+unix:///disk?socket={nbd_sock}"]).stdout
        assert json.loads(info)["exports"][0]["export-size"] == 2 << 20
        # Nodes from --blockdev are owned by the monitor too.
        qmp.cmd("block-export-del", {"id": "e0"})
        qmp.cmd("blockdev-del", {"node-name": "r0"})
        qmp.cmd("blockdev-del", {"node-name": "f0"})
        d.proc.terminate()
        assert d.wait(10) == 0
        assert not os.path.exists(nbd_sock)
    finally:
        d.stop()


def test_sigterm_with_live_export(stratad_bin, tmp_path, raw_image):
    nbd_sock = str(tmp_path / "nbd.sock")
    pidfile = tmp_path / "p.pid"
    d = Daemon(stratad_bin, tmp_path, [
        "--blockdev", f"driver=file,filename={raw_image},node-name=f0",
        "--nbd-server", f"addr.type=unix,addr.path={nbd_sock}",
        "--export", "type=nbd,id=e0,node-name=f0,writable=on",
        "--pidfile", str(pidfile)])
    try:
        d.connect().cmd("query-block-exports")
        d.proc.terminate()
        assert d.wait(10) == 0
        assert not pidfile.exists()
        assert not os.path.exists(d.qmp_path)
    finally:
        d.stop()


def test_ctl_tables(strata_ctl, daemon, raw_image, tmp_path):
    qmp = daemon.connect()
    add_raw(qmp, raw_image)
    qmp.cmd("nbd-server-start", {"addr": {"type": "unix", "data": {
        "path": str(tmp_path / "nbd.sock")}}})
    qmp.cmd("block-export-add", {"type": "nbd", "id": "e0",
                                 "node-name": "r0"})
    out = run([strata_ctl, "-s", daemon.qmp_path, "nodes"]).stdout
    lines = out.splitlines()
    assert lines[0].split()[:4] == ["NODE", "DRIVER", "FILE", "SIZE"]
    r0 = [l for l in lines if l.startswith("r0 ")][0].split()
    assert r0[1] == "raw" and r0[2] == raw_image
    assert r0[3:5] == ["2", "MiB"]
    nodes = json.loads(run([strata_ctl, "-s", daemon.qmp_path, "--json",
                            "nodes"]).stdout)
    assert {n["node-name"] for n in nodes} >= {"r0"}
    out = run([strata_ctl, "-s", daemon.qmp_path, "exports"]).stdout
    assert out.splitlines()[1].split() == ["e0", "nbd", "r0", "no"]


def test_ctl_events_follow(strata_ctl, daemon, raw_image, tmp_path):
    import threading
    import time
    qmp = daemon.connect()
    add_raw(qmp, raw_image)
    qmp.cmd("nbd-server-start", {"addr": {"type": "unix", "data": {
        "path": str(tmp_path / "nbd.sock")}}})
    proc = subprocess.Popen(
        [strata_ctl, "-s", daemon.qmp_path, "events", "--follow",
         "--timeout", "2"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True)
    lines = []
    reader = threading.Thread(
        target=lambda: lines.extend(iter(proc.stdout.readline, "")))
    reader.start()
    try:
        # strata-ctl connects asynchronously: keep causing events until
        # it has printed two of them.
        i = 0
        deadline = time.monotonic() + 15
        while len(lines) < 2 and time.monotonic() < deadline:
            qmp.cmd("block-export-add", {"type": "nbd", "id": f"e{i}",
                                         "node-name": "r0"})
            qmp.cmd("block-export-del", {"id": f"e{i}"})
            i += 1
            time.sleep(0.1)
        proc.wait(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
        reader.join(10)
        proc.stderr.close()
    assert proc.returncode == 0
    assert len(lines) >= 2
    first = int(lines[0].split("id=e")[1])
    for n, line in enumerate(lines):
        assert line.endswith(f" BLOCK_EXPORT_DELETED id=e{first + n}\n")


def test_ctl_nodes_backing_depth(strata_ctl, daemon, tmp_path):
    require("qemu-img")
    base = tmp_path / "base.qcow2"
    top = tmp_path / "top.qcow2"
    run(["qemu-img", "create", "-q", "-f", "qcow2", str(base), "1M"])
    run(["qemu-img", "create", "-q", "-f", "qcow2", "-b", str(base), "-F",
         "qcow2", str(top), "3M"])
    qmp = daemon.connect()
    qmp.cmd("blockdev-add", {"driver": "qcow2", "node-name": "top",
                             "file": {"driver": "file",
                                      "filename": str(top)}})
    info = [n for n in qmp.cmd("query-named-block-nodes")
            if n["node-name"] == "top"][0]
    assert info["backing_file_depth"] == 1
    assert info["backing_file"] == str(base)
    assert info["image"]["backing-image"]["filename"] == str(base)
    assert info["image"]["backing-filename"] == str(base)
    flat = [n for n in qmp.cmd("query-named-block-nodes", flat=True)
            if n["node-name"] == "top"][0]
    assert "backing-image" not in flat["image"]
    lines = run([strata_ctl, "-s", daemon.qmp_path, "nodes"]).stdout
    row = [l for l in lines.splitlines() if l.startswith("top ")][0].split()
    # NODE DRIVER FILE SIZE(2 words) USED(2 words) RO DEPTH THRESHOLD
    assert row[1] == "qcow2" and row[3:5] == ["3", "MiB"]
    assert row[-3:] == ["no", "1", "-"]


def test_event_from_io_thread_reaches_all_clients(daemon, raw_image,
                                                  tmp_path):
    """BLOCK_WRITE_THRESHOLD is raised on an NBD worker thread: it must
    travel through the event queue to every negotiated client."""
    nbd = pytest.importorskip("nbd")
    qmp = daemon.connect()
    watchers = [daemon.connect() for _ in range(3)]
    if "block-set-write-threshold" not in {
            c["name"] for c in qmp.cmd("query-commands")}:
        pytest.skip("block-set-write-threshold not built")
    add_raw(qmp, raw_image)
    sock = str(tmp_path / "nbd.sock")
    qmp.cmd("nbd-server-start", {"addr": {"type": "unix",
                                          "data": {"path": sock}}})
    qmp.cmd("block-export-add", {"type": "nbd", "id": "e0",
                                 "node-name": "r0", "writable": True})
    qmp.cmd("block-set-write-threshold", {"node-name": "r0",
                                          "write-threshold": 65536})
    h = nbd.NBD()
    h.connect_uri(f"nbd+unix:///r0?socket={sock}")
    h.pwrite(b"x" * 4096, 65536)
    h.shutdown()
    for c in [qmp] + watchers:
        ev = c.wait_event("BLOCK_WRITE_THRESHOLD", timeout=10)
        assert ev["data"]["node-name"] == "r0"
        assert ev["data"]["write-threshold"] == 65536


def test_backing_null_shows_recorded_backing_only(daemon, tmp_path):
    """With "backing": null the image still records its backing file:
    image.backing-filename keeps the recorded name and
    full-backing-filename is absolute, but BlockDeviceInfo.backing_file
    (the open backing node) is absent, as on qemu-storage-daemon."""
    base = tmp_path / "base.qcow2"
    top = tmp_path / "top.qcow2"
    run(["qemu-img", "create", "-q", "-f", "qcow2", str(base), "1M"])
    run(["qemu-img", "create", "-q", "-f", "qcow2", "-b", "base.qcow2",
         "-F", "qcow2", str(top)])
    qmp = daemon.connect()
    qmp.cmd("blockdev-add", {"driver": "qcow2", "node-name": "t",
                             "backing": None,
                             "file": {"driver": "file",
                                      "filename": str(top)}})
    node = {n["node-name"]: n for n in qmp.cmd("query-named-block-nodes")}["t"]
    assert "backing_file" not in node
    assert node["backing_file_depth"] == 0
    assert node["image"]["backing-filename"] == "base.qcow2"
    assert node["image"]["full-backing-filename"] == str(base)
