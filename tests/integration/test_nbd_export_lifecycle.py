# SPDX-License-Identifier: BSD-3-Clause
"""Exports with clients attached, strata against qemu-storage-daemon over
QMP: block-export-del in safe and hard mode, nbd-server-stop, and what
the NBD client sees meanwhile.  Replies, errors and events must match."""
import subprocess

import pytest

from conftest import require
from nbd_util import CMD_READ, RawClient, wait_for_exports
from qmp_util import Daemon, QmpError


def strata_or_qsd(kind):
    if kind == "qsd":
        return "qemu-storage-daemon"
    from conftest import binary
    try:
        return binary("stratad")
    except FileNotFoundError:
        pytest.skip("stratad is not built")


def call(qmp, name, args=None):
    """A command's outcome as comparable data: the return value, or the
    error class and text."""
    try:
        return ("ok", qmp.cmd(name, args or {}))
    except QmpError as e:
        return ("error", e.cls, e.desc)


def query_exports(qmp):
    """query-block-exports with QEMU's members only (strata may add
    members of its own, as the compatibility contract allows)."""
    keys = ("type", "id", "node-name", "shutting-down")
    return [{k: e[k] for k in keys} for e in qmp.cmd("query-block-exports")]


def events(qmp, name, count, timeout=5):
    """The data of the next count events called name (timestamps differ
    between runs and are dropped)."""
    out = []
    for _ in range(count):
        ev = qmp.wait_event(name, timeout=timeout)
        out.append(ev["data"])
    return out


def client_is_cut(c):
    """True when the server has closed the connection."""
    try:
        c.sock.settimeout(5)
        return c.sock.recv(1) == b""
    except ConnectionResetError:
        return True


def lifecycle(kind, tmp_path):
    d = tmp_path / kind
    d.mkdir()
    img = str(d / "disk.raw")
    subprocess.run(["qemu-img", "create", "-f", "raw", img, "1M"],
                   check=True, capture_output=True)
    nbd_sock = str(d / "nbd.sock")
    daemon = Daemon(strata_or_qsd(kind), d, [
        "--blockdev", f"driver=file,filename={img},node-name=disk"])
    out = []
    try:
        qmp = daemon.connect()
        out.append(call(qmp, "nbd-server-start", {
            "addr": {"type": "unix", "data": {"path": nbd_sock}}}))
        out.append(call(qmp, "block-export-add", {
            "type": "nbd", "id": "e0", "node-name": "disk",
            "writable": True}))
        wait_for_exports(nbd_sock, daemon.proc, ["disk"])
        c = RawClient(nbd_sock)
        out.append(c.connect("disk"))
        # Safe mode refuses while a client is attached; nothing changes.
        out.append(call(qmp, "block-export-del", {"id": "e0"}))
        out.append(call(qmp, "block-export-del", {"id": "e0",
                                                  "mode": "safe"}))
        out.append(query_exports(qmp))
        out.append(c.cmd(CMD_READ, 0, 512, cookie=7)[:2])
        # Hard mode disconnects the client and deletes the export.
        out.append(call(qmp, "block-export-del", {"id": "e0",
                                                  "mode": "hard"}))
        out.append(events(qmp, "BLOCK_EXPORT_DELETED", 1))
        out.append(client_is_cut(c))
        c.close()
        out.append(query_exports(qmp))
        out.append(call(qmp, "block-export-del", {"id": "e0"}))
        # The id and the name can be used again.
        out.append(call(qmp, "block-export-add", {
            "type": "nbd", "id": "e0", "node-name": "disk"}))
        out.append(call(qmp, "block-export-add", {
            "type": "nbd", "id": "e1", "node-name": "disk",
            "name": "second"}))
        wait_for_exports(nbd_sock, daemon.proc, ["disk", "second"])
        c = RawClient(nbd_sock)
        out.append(c.connect("second"))
        # Stopping the server cuts the client and deletes every export.
        out.append(call(qmp, "nbd-server-stop"))
        out.append(sorted(e["id"] for e in events(
            qmp, "BLOCK_EXPORT_DELETED", 2)))
        out.append(client_is_cut(c))
        c.close()
        out.append(query_exports(qmp))
        out.append(call(qmp, "blockdev-del", {"node-name": "disk"}))
    finally:
        daemon.stop()
    return out


def test_export_lifecycle_identical(tmp_path):
    require("qemu-storage-daemon")
    qsd = lifecycle("qsd", tmp_path)
    strata = lifecycle("strata", tmp_path)
    for i, (q, s) in enumerate(zip(qsd, strata)):
        assert s == q, f"step {i}"
    assert len(qsd) == len(strata)
