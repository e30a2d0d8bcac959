# SPDX-License-Identifier: BSD-3-Clause
"""The NBD handshake deadline (QEMU's fix for CVE-2024-7409).

Clients that connect and say nothing, or drip one byte a second, must
not keep a good client out: a connection that has not finished its
handshake by the deadline is closed, as qemu-storage-daemon does."""
import os
import socket
import struct
import subprocess
import threading
import time

import pytest

from conftest import require
from nbd_util import IHAVEOPT, OPT_GO, raw_blockdev, start_server


def image(tmp_path):
    path = tmp_path / "disk.raw"
    with open(path, "wb") as f:
        f.truncate(1 << 20)
    return path


def serve(kind, tmp_path, **kw):
    return start_server(kind, tmp_path, [raw_blockdev(str(image(tmp_path)))],
                        [{"type": "nbd", "id": "e0", "node-name": "disk",
                          "name": "disk"}], **kw)


def silent(sock_path):
    s = socket.socket(socket.AF_UNIX)
    s.connect(sock_path)
    return s


class Dripper(threading.Thread):
    """Connects and sends a handshake one byte a second, never finishing
    it; records when the server closed the connection."""

    def __init__(self, sock_path, stop):
        super().__init__(daemon=True)
        self.sock_path = sock_path
        self.stop_event = stop
        self.closed_at = None

    def run(self):
        s = socket.socket(socket.AF_UNIX)
        s.settimeout(1)
        s.connect(self.sock_path)
        payload = (struct.pack(">I", 3) +
                   struct.pack(">QII", IHAVEOPT, OPT_GO, 4096) + b"x" * 4096)
        try:
            for b in payload:
                if self.stop_event.is_set():
                    return
                s.send(bytes([b]))
                t0 = time.monotonic()
                while time.monotonic() - t0 < 1:
                    try:
                        if s.recv(4096) == b"":
                            self.closed_at = time.monotonic()
                            return
                    except socket.timeout:
                        pass
        except (BrokenPipeError, ConnectionResetError):
            self.closed_at = time.monotonic()
        finally:
            s.close()


def nbdinfo_time(srv, timeout=40):
    t0 = time.monotonic()
    out = subprocess.run(["nbdinfo", "--size", srv.uri("disk")],
                         capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, out.stderr
    assert int(out.stdout) == 1 << 20
    return time.monotonic() - t0


def closed_by_server(s, timeout=5):
    """True when the server has closed s (EOF after the greeting)."""
    s.settimeout(timeout)
    try:
        while True:
            if s.recv(4096) == b"":
                return True
    except socket.timeout:
        return False
    except ConnectionResetError:
        return True


def threads(proc):
    return len(os.listdir(f"/proc/{proc.pid}/task"))


def test_silent_and_dripping_clients_do_not_lock_out(tmp_path):
    require("nbdinfo")
    deadline = 2
    srv = serve("strata", tmp_path, max_connections=4,
                server_opts=f"handshake-max-seconds={deadline}")
    try:
        base_threads = threads(srv.proc)
        socks = [silent(srv.sock) for _ in range(4)]
        stop = threading.Event()
        drippers = [Dripper(srv.sock, stop) for _ in range(2)]
        for d in drippers:
            d.start()
        time.sleep(0.2)
        elapsed = nbdinfo_time(srv)
        # The silent clients hold every slot until their deadline; then
        # the good client is served at once.
        assert elapsed < deadline + 1.5, elapsed
        for d in drippers:
            d.join(timeout=2 * deadline + 5)
            assert d.closed_at is not None, "a dripping client was kept"
        for s in socks:
            assert closed_by_server(s), "a silent client was kept"
            s.close()
        stop.set()
        # No thread is left behind for the dropped clients.
        for _ in range(50):
            if threads(srv.proc) <= base_threads:
                break
            time.sleep(0.1)
        assert threads(srv.proc) <= base_threads
        # And the server still serves.
        assert nbdinfo_time(srv) < 5
    finally:
        srv.stop()


@pytest.mark.parametrize("kind", ["strata", "qsd"])
def test_default_deadline_is_qemus(tmp_path, kind):
    """Same command line, no deadline option: both drop silent clients
    after about 10 s, so a good client waits about that long."""
    require("nbdinfo")
    require("qemu-storage-daemon")
    srv = serve(kind, tmp_path, max_connections=2)
    try:
        socks = [silent(srv.sock) for _ in range(2)]
        time.sleep(0.2)
        elapsed = nbdinfo_time(srv)
        assert 8 <= elapsed <= 14, elapsed
        for s in socks:
            s.close()
    finally:
        srv.stop()


def test_zero_means_no_deadline(tmp_path):
    srv = serve("strata", tmp_path,
                server_opts="handshake-max-seconds=0")
    try:
        s = silent(srv.sock)
        s.settimeout(3)
        # The greeting arrives, then nothing: the connection stays open.
        greeting = s.recv(18)
        assert len(greeting) == 18
        with pytest.raises(socket.timeout):
            s.recv(1)
        s.close()
    finally:
        srv.stop()
