# SPDX-License-Identifier: BSD-3-Clause
"""Helpers for the I/O accounting tests: a stratad with a raw image, a
blkdebug fault-injection filter and NBD exports, plus /metrics scraping.

The graph every test starts from (export e0 writable, e1 read-only):

    e0, e1 -> n0 (raw, discard=unmap) -> dbg (blkdebug) -> f0 (file)

dbg fails every read that covers byte READ_ERR_OFFSET and every write
that covers WRITE_ERR_OFFSET with EIO.
"""
import json
import os
import socket
import subprocess

from conftest import run
from nbd_util import RawClient, wait_for_socket
from qmp_util import Daemon

IMAGE_SIZE = 1 << 20
READ_ERR_OFFSET = 256 * 512
WRITE_ERR_OFFSET = 512 * 512


def blockdev_json(image):
    return json.dumps({
        "driver": "raw", "node-name": "n0", "discard": "unmap",
        "file": {
            "driver": "blkdebug", "node-name": "dbg",
            "image": {"driver": "file", "node-name": "f0",
                      "filename": image},
            "inject-error": [
                {"event": "read_aio", "iotype": "read",
                 "sector": READ_ERR_OFFSET // 512, "errno": 5},
                {"event": "write_aio", "iotype": "write",
                 "sector": WRITE_ERR_OFFSET // 512},
            ],
        },
    })


class AcctDaemon(Daemon):
    """stratad with the graph above; e0 has the given extra export
    options (keyval, e.g. "stats-intervals.0=1")."""

    def __init__(self, stratad, tmp_path, e0_opts="", metrics=False,
                 extra=(), env=None):
        image = os.path.join(str(tmp_path), "disk.raw")
        with open(image, "wb") as f:
            f.truncate(IMAGE_SIZE)
        self.nbd_path = os.path.join(str(tmp_path), "nbd.sock")
        self.metrics_path = os.path.join(str(tmp_path), "metrics.sock")
        e0 = "type=nbd,id=e0,node-name=n0,name=e0,writable=on"
        if e0_opts:
            e0 += "," + e0_opts
        args = ["--blockdev", blockdev_json(image),
                "--nbd-server", f"addr.type=unix,addr.path={self.nbd_path}",
                "--export", e0,
                "--export", "type=nbd,id=e1,node-name=n0,name=e1"]
        if metrics:
            args += ["--metrics",
                     f"addr.type=unix,addr.path={self.metrics_path}"]
        super().__init__(stratad, tmp_path, list(args) + list(extra),
                         env=env)
        wait_for_socket(self.nbd_path, self.proc)
        self.qmp = self.connect()

    def nbd(self, name):
        """A connected raw NBD client with simple replies."""
        c = RawClient(self.nbd_path)
        c.connect(name, structured=False)
        return c

    def uri(self, name):
        return f"nbd+unix:///{name}?socket={self.nbd_path}"

    def export_stats(self, export_id):
        for e in self.qmp.cmd("query-blockstats"):
            if e["device"] == export_id:
                return e
        raise KeyError(export_id)

    def node_stats(self, node):
        for e in self.qmp.cmd("query-blockstats", {"query-nodes": True}):
            if e["node-name"] == node:
                return e
        raise KeyError(node)

    def scrape(self):
        return scrape_metrics(self.metrics_path)


def scrape_metrics(path):
    """The text of GET /metrics from the endpoint on unix socket path."""
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(10)
    s.connect(path)
    s.sendall(b"GET /metrics HTTP/1.1\r\nHost: strata\r\n"
              b"Connection: close\r\n\r\n")
    data = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    s.close()
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head
    return body.decode()


def nbd_ok(reply):
    """Error value of a simple reply (0 = success)."""
    assert reply[0] == "simple", reply
    return reply[1]


def parse_metrics(text):
    """{(name, frozenset(labels.items())): value} of a text exposition."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        name_labels, value = line.rsplit(" ", 1)
        labels = {}
        if "{" in name_labels:
            name, rest = name_labels.split("{", 1)
            for part in rest.rstrip("}").split('",'):
                if part:
                    k, v = part.split("=", 1)
                    labels[k] = v.strip('"')
        else:
            name = name_labels
        out[(name, frozenset(labels.items()))] = float(value)
    return out


def promtool_check(text, tmp_path):
    path = os.path.join(str(tmp_path), "metrics.txt")
    with open(path, "w") as f:
        f.write(text)
    with open(path) as f:
        proc = subprocess.run(["promtool", "check", "metrics"], stdin=f,
                              capture_output=True, text=True, timeout=60)
    return proc


def qemu_io(*args):
    return run(["qemu-io", *args])
