# SPDX-License-Identifier: BSD-3-Clause
"""stratad's startup gate: a client that connects as soon as the NBD
socket exists must find every --export of the command line, as with
qemu-storage-daemon (which accepts only once its command line is done)."""
import errno
import os
import subprocess
import time

import nbd
import pytest

NEXPORTS = 200


@pytest.fixture
def images(tmp_path):
    paths = []
    for i in range(NEXPORTS):
        p = tmp_path / f"d{i}.raw"
        with open(p, "wb") as f:
            f.truncate(1 << 20)
        paths.append(p)
    return paths


def start_daemon(stratad_bin, tmp_path, images):
    sock = str(tmp_path / "nbd.sock")
    args = [stratad_bin]
    # --nbd-server first, so the socket exists while the many --blockdev
    # and --export options are still being processed (with fewer exports
    # the old, ungated daemon was usually done before the handshake).
    args += ["--nbd-server", f"addr.type=unix,addr.path={sock}"]
    for i, p in enumerate(images):
        args += ["--blockdev",
                 f"driver=file,node-name=n{i},filename={p}",
                 "--export", f"type=nbd,id=e{i},node-name=n{i},name=e{i}"]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    return proc, sock


def connect_when_socket_appears(proc, sock, name):
    deadline = time.monotonic() + 20
    while not os.path.exists(sock):
        assert proc.poll() is None, proc.stderr.read()
        assert time.monotonic() < deadline, "socket never appeared"
    h = nbd.NBD()
    h.set_export_name(name)
    # Only "socket not yet listening" is retried, never a missing export.
    while True:
        try:
            h.connect_unix(sock)
            return h
        except nbd.Error as e:
            if e.errno != errno.ECONNREFUSED:
                raise
            assert time.monotonic() < deadline, str(e)
            h = nbd.NBD()
            h.set_export_name(name)


@pytest.mark.parametrize("attempt", range(3))
def test_first_connection_finds_last_export(stratad_bin, tmp_path, images,
                                            attempt):
    proc, sock = start_daemon(stratad_bin, tmp_path, images)
    try:
        last = f"e{NEXPORTS - 1}"
        h = connect_when_socket_appears(proc, sock, last)
        try:
            assert h.get_size() == 1 << 20
            assert h.pread(512, 0) == bytes(512)
        finally:
            h.shutdown()
        # Every other export is there too, on connections made at once.
        for i in range(NEXPORTS):
            h2 = nbd.NBD()
            h2.set_export_name(f"e{i}")
            h2.connect_unix(sock)
            h2.shutdown()
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        proc.stderr.close()
    assert proc.returncode == 0
