# SPDX-License-Identifier: BSD-3-Clause
"""Helpers for the pause-on-error tests: stratad with its log in a file
(a paused daemon logs, and nobody reads a pipe while a test waits), a
blkdebug graph that fails chosen writes with ENOSPC or EIO, and
asynchronous libnbd requests whose completion the tests watch."""
import json
import struct
import os
import signal
import subprocess
import time

import nbd

from conftest import binary
from qmp_util import QmpClient, wait_for_path

MiB = 1024 * 1024
ENOSPC = 28
EIO = 5


class PausableDaemon:
    """stratad with one QMP monitor, an NBD server and the given args.
    stop() first fails anything still held (quit with force), so a test
    that ends while paused does not wait for a refused SIGTERM."""

    def __init__(self, tmp_path, args, name="d"):
        self.dir = str(tmp_path)
        self.qmp_path = os.path.join(self.dir, f"{name}-qmp.sock")
        self.nbd_path = os.path.join(self.dir, f"{name}-nbd.sock")
        self.log_path = os.path.join(self.dir, f"{name}.log")
        self.log = open(self.log_path, "w")
        cmd = [binary("stratad"),
               "--chardev",
               f"socket,path={self.qmp_path},server=on,wait=off,id=m0",
               "--monitor", "chardev=m0",
               "--nbd-server", f"addr.type=unix,addr.path={self.nbd_path}"]
        self.proc = subprocess.Popen(cmd + list(args),
                                     stdin=subprocess.DEVNULL,
                                     stdout=self.log, stderr=subprocess.STDOUT)
        self.clients = []
        try:
            wait_for_path(self.qmp_path, self.proc)
            wait_for_path(self.nbd_path, self.proc)
            self.qmp = self.connect()
        except Exception:
            self.stop()
            raise

    def connect(self):
        c = QmpClient(self.qmp_path)
        self.clients.append(c)
        return c

    def uri(self, export):
        return f"nbd+unix:///{export}?socket={self.nbd_path}"

    def text(self):
        with open(self.log_path) as f:
            return f.read()

    def export(self, export_id):
        for e in self.qmp.cmd("query-block-exports"):
            if e["id"] == export_id:
                return e
        raise KeyError(export_id)

    def stop(self):
        if self.proc.poll() is None:
            try:
                c = QmpClient(self.qmp_path, timeout=2)
                c.execute("quit", {"force": True}, timeout=5)
                c.close()
                self.proc.wait(10)
            except Exception:
                pass
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()
        for c in self.clients:
            c.close()
        self.log.close()


def blkdebug_blockdev(image, rules, fmt="raw"):
    """fmt (node "fmt0") on blkdebug ("dbg") on the file ("proto0")."""
    return json.dumps({
        "driver": fmt, "node-name": "fmt0",
        "file": {"driver": "blkdebug", "node-name": "dbg",
                 "image": {"driver": "file", "node-name": "proto0",
                           "filename": image},
                 "inject-error": rules},
    })


def enospc_once(count=1, errno_=ENOSPC, iotype="write", event="write_aio"):
    """count rules, each failing one request with errno_ then retiring."""
    return [{"event": event, "iotype": iotype, "errno": errno_,
             "once": True}] * count


def raw_image(tmp_path, size=4 * MiB, name="disk.raw"):
    path = os.path.join(str(tmp_path), name)
    with open(path, "wb") as f:
        f.truncate(size)
    return path


def client(uri):
    h = nbd.NBD()
    h.connect_uri(uri)
    return h


def pattern(tag, size):
    return bytes([(tag * 37 + 11) & 0xff]) * size


class Pending:
    """An asynchronous request on a libnbd handle."""

    def __init__(self, h, cookie, buf=None):
        self.h, self.cookie, self.buf = h, cookie, buf
        self.error = None
        self.done = False

    def poll(self, timeout=0.0):
        """True once completed (error in .error), False if still pending
        after timeout seconds."""
        deadline = time.monotonic() + timeout
        while not self.done:
            try:
                if self.h.aio_command_completed(self.cookie):
                    self.done = True
                    break
            except nbd.Error as e:
                self.done, self.error = True, e
                break
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self.h.poll(max(1, int(left * 1000)))
        return True

    def wait(self, timeout=10):
        if not self.poll(timeout):
            raise AssertionError(f"request still pending after {timeout}s")
        return self

    def data(self):
        return bytes(self.buf.to_bytearray())


def aio_write(h, data, offset):
    return Pending(h, h.aio_pwrite(data, offset))


def aio_read(h, size, offset):
    buf = nbd.Buffer(size)
    return Pending(h, h.aio_pread(buf, offset), buf)


def aio_flush(h):
    return Pending(h, h.aio_flush())


def pump_until_event(qmp, pending, name="BLOCK_IO_ERROR", timeout=10):
    """Drives the handles of pending requests (libnbd sends queued
    requests only while polled) until qmp sees event name."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for p in pending:
            p.poll(0.01)
        try:
            return qmp.wait_event(name, timeout=0.05)
        except TimeoutError:
            pass
    raise AssertionError(f"no {name} within {timeout}s")


def io_errors(events):
    return [e["data"] for e in events if e["event"] == "BLOCK_IO_ERROR"]




# ---- a fast patterned writer and its checker (the ENOSPC acceptance) ----

UNIT = 4096


def block_data(offset, size, seed=0x5354524154):
    """size bytes for the disk range at offset: every 4 KiB unit says
    where it belongs, so a misplaced or stale unit is caught."""
    return b"".join(struct.pack("<QQ", offset + i, seed) * (UNIT // 16)
                    for i in range(0, size, UNIT))


def write_fast(uri, total, block=4 * MiB, depth=8, start=0):
    """Writes total bytes as fast as one connection can (depth requests
    in flight); returns the number of failed requests and the seconds
    taken.  Blocks while the export is paused."""
    h = client(uri)
    failed = 0
    t0 = time.monotonic()
    try:
        pending = []
        next_off = start
        end = start + total
        while next_off < end or pending:
            while next_off < end and len(pending) < depth:
                n = min(block, end - next_off)
                pending.append(h.aio_pwrite(block_data(next_off, n),
                                            next_off))
                next_off += n
            h.poll(-1)
            still = []
            for cookie in pending:
                try:
                    if not h.aio_command_completed(cookie):
                        still.append(cookie)
                except nbd.Error:
                    failed += 1
            pending = still
        h.flush()
    finally:
        h.shutdown()
    return failed, time.monotonic() - t0


def verify_fast(uri, total, block=4 * MiB, start=0):
    h = client(uri)
    try:
        for off in range(start, start + total, block):
            n = min(block, start + total - off)
            if h.pread(n, off) != block_data(off, n):
                raise AssertionError(f"data at {off} (+{n}) differs")
    finally:
        h.shutdown()


__all__ = ["MiB", "ENOSPC", "EIO", "PausableDaemon", "blkdebug_blockdev",
           "enospc_once", "raw_image", "client", "pattern", "Pending",
           "aio_write", "aio_read", "aio_flush", "io_errors",
           "pump_until_event", "block_data", "write_fast", "verify_fast"]
