# SPDX-License-Identifier: BSD-3-Clause
"""A short hostile-client campaign (nbd_campaign.py) in plaintext and
over TLS: the daemon survives, the good client's data is intact, and no
thread or file is left behind.  The long run is the same module from
the command line."""
import pytest

from conftest import require
from nbd_campaign import run
from tls_util import Pki


def test_campaign_plaintext(tmp_path):
    r = run(tmp_path, seconds=6, clients=8)
    assert r["attack_connections"] > 50
    assert r["good_ops"] > 0


def test_campaign_tls(tmp_path):
    for tool in ("certtool", "psktool"):
        require(tool)
    r = run(tmp_path, seconds=6, clients=8, tls_pki=Pki(tmp_path))
    assert r["attack_connections"] > 50
    assert r["tls_sessions"] > 0      # garbage reached inside TLS
    assert r["good_ops"] > 0


def test_tls_slowloris_up_to_the_limit(tmp_path):
    """All but one connection slot taken by clients that start TLS and
    then drip their ClientHello: the good client is served meanwhile,
    and the drippers are dropped at the handshake deadline."""
    import socket
    import threading
    import time
    from nbd_campaign import GoodClient, opt, proc_counts
    from nbd_util import raw_blockdev, start_server
    pki = Pki(tmp_path)
    img = tmp_path / "d.raw"
    with open(img, "wb") as f:
        f.truncate(8 << 20)
    srv = start_server(
        "strata", tmp_path, [raw_blockdev(str(img), "disk")],
        [{"type": "nbd", "id": "e0", "node-name": "disk", "name": "d",
          "writable": True}], max_connections=4,
        server_opts="tls-creds=tls0,handshake-max-seconds=3",
        pre_args=["--object", f"tls-creds-x509,id=tls0,dir={pki.server_dir},"
                  "endpoint=server"], list_exports_first=False)
    try:
        # One good connection first: the handshake deadline's timer
        # thread starts with the first client and stays.
        warm = threading.Event()
        g = GoodClient((srv.sock, pki.client_dir), warm)
        g.start()
        time.sleep(0.2)
        warm.set()
        g.join(30)
        time.sleep(0.2)
        before = proc_counts(srv.proc.pid)
        closed = []

        def drip():
            s = socket.socket(socket.AF_UNIX)
            s.settimeout(0.5)
            s.connect(srv.sock)
            t0 = time.monotonic()
            try:
                s.recv(18)
                s.sendall(b"\0\0\0\3" + opt(5))
                s.recv(20)
                for b in bytes.fromhex("16030100a5010000a10303") + b"\1" * 80:
                    s.sendall(bytes([b]))
                    try:
                        if s.recv(1) == b"":
                            break
                    except socket.timeout:
                        pass
            except OSError:
                pass
            closed.append(time.monotonic() - t0)
            s.close()

        drippers = [threading.Thread(target=drip) for _ in range(3)]
        for d in drippers:
            d.start()
        time.sleep(0.5)
        stop = threading.Event()
        good = GoodClient((srv.sock, pki.client_dir), stop)
        good.start()
        time.sleep(2)
        stop.set()
        good.join(30)
        assert good.error is None, good.error
        assert good.ops > 0
        for d in drippers:
            d.join(30)
        # Dropped by the 3 s deadline, long before their 90 bytes at one
        # byte per 0.5 s (45 s) were through.
        assert len(closed) == 3 and max(closed) < 10, closed
        for _ in range(50):
            if proc_counts(srv.proc.pid) <= before:
                break
            time.sleep(0.1)
        assert proc_counts(srv.proc.pid)[0] <= before[0]
    finally:
        srv.stop()
