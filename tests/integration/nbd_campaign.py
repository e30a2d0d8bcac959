# SPDX-License-Identifier: BSD-3-Clause
"""A hostile-client campaign against one NBD server: many concurrent
clients send random, truncated and malformed handshakes and requests
(in plaintext, after STARTTLS in garbage, and inside real TLS sessions),
while a good libnbd client keeps reading and writing and checks every
byte.

Used by tests/integration/test_nbd_campaign.py (seconds, in `make
check`, also under ASan/UBSan) and as a long run:

    STRATA_BUILD=build-asan /usr/bin/python3 \\
        tests/integration/nbd_campaign.py --seconds 300 --clients 32

The report: attacks made by kind, the good client's operations and
throughput with and without the attack, the daemon's threads and open
files before and after.  run() raises on any failure: the daemon died
or printed a sanitizer report, the good client saw a wrong byte or an
error, or threads/files were left behind.
"""
import argparse
import os
import random
import socket
import ssl
import struct
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from nbd_util import (IHAVEOPT, REQUEST_MAGIC, raw_blockdev,  # noqa: E402
                      start_server)

MiB = 1 << 20
SIZE = 8 * MiB
GOOD_REGION = (4 * MiB, 4 * MiB)     # the good client's; attackers may
                                     # write only below it


def opt(o, data=b""):
    return struct.pack(">QII", IHAVEOPT, o, len(data)) + data


def info(name):
    n = name.encode()
    return struct.pack(">I", len(n)) + n + struct.pack(">H", 0)


def req(cmd, off, length, flags=0, cookie=1, data=b""):
    return struct.pack(">IHHQQI", REQUEST_MAGIC, flags, cmd, cookie, off,
                       length) + data


class Attacker(threading.Thread):
    """Opens connection after connection, each a random kind of abuse."""

    KINDS = ["random", "truncated", "bad-requests", "starttls-garbage",
             "tls-then-garbage", "slow", "oversized"]

    def __init__(self, sock_path, stop, tls_ctx, seed):
        super().__init__(daemon=True)
        self.path = sock_path
        self.stop_event = stop
        self.tls_ctx = tls_ctx
        self.rng = random.Random(seed)
        self.counts = {k: 0 for k in self.KINDS}
        self.tls_sessions = 0       # TLS handshakes that succeeded
        self.error = None

    def run(self):
        try:
            while not self.stop_event.is_set():
                kinds = self.KINDS if self.tls_ctx else [
                    k for k in self.KINDS if "tls" not in k]
                kind = self.rng.choice(kinds)
                self.counts[kind] += 1
                s = socket.socket(socket.AF_UNIX)
                s.settimeout(2)
                try:
                    s.connect(self.path)
                    getattr(self, "do_" + kind.replace("-", "_"))(s)
                except (OSError, ssl.SSLError, EOFError, ValueError):
                    pass        # the server hanging up is its right
                finally:
                    s.close()
        except Exception as e:      # a bug in the campaign itself
            self.error = e

    def rand(self, n):
        return bytes(self.rng.getrandbits(8) for _ in range(n))

    def greet(self, s, flags=3):
        s.recv(18)
        s.sendall(struct.pack(">I", flags))

    def drain(self, s, seconds=0.05):
        s.settimeout(seconds)
        try:
            while s.recv(65536):
                pass
        except (socket.timeout, OSError):
            pass

    def do_random(self, s):
        s.sendall(self.rand(self.rng.randint(1, 2048)))
        self.drain(s)

    def do_truncated(self, s):
        self.greet(s)
        msg = opt(8) + opt(7, info("d")) + req(0, 0, 4096)
        s.sendall(msg[:self.rng.randint(0, len(msg) - 1)])

    def do_bad_requests(self, s):
        self.greet(s)
        s.sendall(opt(8) + opt(7, info("d")))
        self.drain(s)
        out = b""
        for i in range(self.rng.randint(1, 20)):
            cmd = self.rng.choice([0, 1, 2, 3, 4, 5, 6, 7, 42])
            off = self.rng.choice([0, SIZE - 512, SIZE, 1 << 62,
                                   self.rng.randint(0, GOOD_REGION[0])])
            length = self.rng.choice([0, 1, 512, 65536, 1 << 25, 0xffffffff])
            flags = self.rng.getrandbits(16)
            data = b""
            if cmd == 1 and length <= 65536:
                if off + length > GOOD_REGION[0]:
                    off = 0         # never touch the good client's data
                data = self.rand(min(length, 512)) * (length // 512 or 1)
                data = data[:length]
            out += req(cmd, off, length, flags, i, data)
        cut = len(out) if self.rng.random() < 0.7 else \
            self.rng.randint(0, len(out))
        s.sendall(out[:cut])
        self.drain(s, 0.1)

    def do_oversized(self, s):
        self.greet(s)
        s.sendall(struct.pack(">QII", IHAVEOPT, 7, 0xfffffff0) + b"x" * 64)
        self.drain(s)

    def do_starttls_garbage(self, s):
        self.greet(s)
        s.sendall(opt(5))
        s.recv(20)
        s.sendall(self.rand(self.rng.randint(1, 600)))
        self.drain(s)

    def do_tls_then_garbage(self, s):
        self.greet(s)
        s.sendall(opt(5))
        hdr = s.recv(20)
        if len(hdr) < 20:
            return
        t = self.tls_ctx.wrap_socket(s, server_hostname="localhost")
        self.tls_sessions += 1
        t.sendall(opt(8) + opt(7, info("d")))
        t.settimeout(0.2)
        try:
            t.recv(4096)
        except (socket.timeout, OSError):
            pass
        t.sendall(self.rand(self.rng.randint(1, 300)))
        try:
            t.recv(4096)
        except (socket.timeout, OSError, ssl.SSLError):
            pass
        t.close()

    def do_slow(self, s):
        # Drips a handshake; the server's deadline must end it.
        for b in struct.pack(">I", 3) + opt(7, info("d")):
            if self.stop_event.is_set():
                return
            s.sendall(bytes([b]))
            time.sleep(0.2)


class GoodClient(threading.Thread):
    """libnbd: writes a pattern into its region and reads it back."""

    def __init__(self, uri_args, stop):
        super().__init__(daemon=True)
        self.uri_args = uri_args
        self.stop_event = stop
        self.ops = 0
        self.bytes = 0
        self.error = None
        self.seconds = 0.0

    def run(self):
        import nbd
        t0 = time.monotonic()
        try:
            h = nbd.NBD()
            path, certs = self.uri_args
            if certs:
                h.set_tls(nbd.TLS_REQUIRE)
                h.set_tls_certificates(certs)
            h.set_export_name("d")
            h.connect_unix(path)
            rng = random.Random(1)
            base, length = GOOD_REGION
            while not self.stop_event.is_set():
                off = base + rng.randrange(0, length // 65536) * 65536
                data = bytes([rng.getrandbits(8)]) * 65536
                h.pwrite(data, off)
                if h.pread(65536, off) != data:
                    raise AssertionError(f"good client read back wrong "
                                         f"data at {off}")
                self.ops += 2
                self.bytes += 2 * 65536
            h.shutdown()
        except Exception as e:
            self.error = e
        self.seconds = time.monotonic() - t0


def proc_counts(pid):
    return (len(os.listdir(f"/proc/{pid}/task")),
            len(os.listdir(f"/proc/{pid}/fd")))


def run(tmp_path, seconds=5, clients=8, tls_pki=None, log=print):
    """Runs the campaign against a fresh stratad; raises on failure and
    returns the report as a dict."""
    img = tmp_path / "campaign.raw"
    with open(img, "wb") as f:
        f.truncate(SIZE)
    pre, opts, certs = [], "handshake-max-seconds=2", None
    tls_ctx = None
    if tls_pki:
        pre = ["--object", f"tls-creds-x509,id=tls0,dir={tls_pki.server_dir},"
               "endpoint=server"]
        opts += ",tls-creds=tls0"
        certs = tls_pki.client_dir
        tls_ctx = ssl.create_default_context(
            cafile=os.path.join(certs, "ca-cert.pem"))
        tls_ctx.load_cert_chain(os.path.join(certs, "client-cert.pem"),
                                os.path.join(certs, "client-key.pem"))
    srv = start_server("strata", tmp_path, [raw_blockdev(str(img), "disk")],
                       [{"type": "nbd", "id": "e0", "node-name": "disk",
                         "name": "d", "writable": True}],
                       max_connections=clients + 8, server_opts=opts,
                       pre_args=pre, list_exports_first=not tls_pki)
    report = {}
    try:
        time.sleep(0.2)
        before = proc_counts(srv.proc.pid)

        # The good client alone, for its undisturbed throughput.
        stop = threading.Event()
        alone = GoodClient((srv.sock, certs), stop)
        alone.start()
        time.sleep(min(2.0, seconds / 3))
        stop.set()
        alone.join(30)
        if alone.error:
            raise AssertionError(f"good client alone: {alone.error!r}")

        stop = threading.Event()
        attackers = [Attacker(srv.sock, stop, tls_ctx, seed=i)
                     for i in range(clients)]
        good = GoodClient((srv.sock, certs), stop)
        for a in attackers:
            a.start()
        good.start()
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if srv.proc.poll() is not None:
                raise AssertionError(f"stratad died: {srv.proc.returncode}")
            time.sleep(0.2)
        stop.set()
        good.join(30)
        for a in attackers:
            a.join(30)
            if a.error:
                raise AssertionError(f"campaign bug: {a.error!r}")
        if good.error:
            raise AssertionError(f"good client under attack: {good.error!r}")
        if srv.proc.poll() is not None:
            raise AssertionError(f"stratad died: {srv.proc.returncode}")

        # Every connection's thread and socket goes away (the slow ones
        # within the 2 s handshake deadline).
        after = proc_counts(srv.proc.pid)
        for _ in range(100):
            after = proc_counts(srv.proc.pid)
            if after[0] <= before[0] and after[1] <= before[1]:
                break
            time.sleep(0.1)
        if after[0] > before[0] or after[1] > before[1]:
            raise AssertionError(f"left behind: threads/fds {before} -> "
                                 f"{after}")
        counts = {}
        for a in attackers:
            for k, v in a.counts.items():
                counts[k] = counts.get(k, 0) + v
        report = {
            "attacks": counts,
            "attack_connections": sum(counts.values()),
            "tls_sessions": sum(a.tls_sessions for a in attackers),
            "good_ops": good.ops,
            "good_mib_s_alone": alone.bytes / MiB / alone.seconds,
            "good_mib_s_attacked": good.bytes / MiB / good.seconds,
            "threads_fds_before": before,
            "threads_fds_after": after,
        }
        log(f"campaign ({'TLS' if tls_pki else 'plaintext'}, {clients} "
            f"attackers, {seconds} s): {report}")
    finally:
        srv.stop()   # raises on a sanitizer exit code
    return report


def main():
    import pathlib
    import tempfile
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=300)
    ap.add_argument("--clients", type=int, default=32)
    ap.add_argument("--tls", action="store_true")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="strata-campaign-") as d:
        pki = None
        if a.tls:
            from tls_util import Pki
            pki = Pki(pathlib.Path(d))
        run(pathlib.Path(d), a.seconds, a.clients, pki)


if __name__ == "__main__":
    main()
