# SPDX-License-Identifier: BSD-3-Clause
"""The nbd protocol driver (libnbd): a template served by qemu-nbd,
nbdkit or another stratad becomes a node, or the backing file of a local
overlay named by an NBD URI, over a unix socket or 127.0.0.1."""
import json
import os
import socket
import subprocess
import time

import nbd
import pytest

from conftest import binary, require
from nbd_util import stop as stop_process
from qcow2_util import qemu_check
from qmp_util import Daemon, QmpError, wait_for_path

MiB = 1 << 20


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def template(tmp_path, size=4 * MiB):
    path = tmp_path / "template.raw"
    with open(path, "wb") as f:
        for i in range(size // 65536):
            f.write(bytes([(i * 13 + 1) & 0xff]) * 65536)
    return path


def wait_unix(path, proc):
    for _ in range(200):
        if os.path.exists(path):
            return
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        time.sleep(0.05)
    raise TimeoutError(path)


def wait_tcp(port, proc):
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            assert proc.poll() is None
            time.sleep(0.05)
    raise TimeoutError(port)


class Server:
    """A template server: qemu-nbd or nbdkit, unix or inet."""

    def __init__(self, kind, transport, tmp_path, image, writable=False):
        self.sock = str(tmp_path / f"{kind}-{transport}.sock")
        self.port = free_port()
        if kind == "qemu-nbd":
            cmd = ["qemu-nbd", "-f", "raw", "-x", "tmpl", "-t",
                   "--shared=8"]
            if not writable:
                cmd.append("-r")
            cmd += (["-k", self.sock] if transport == "unix"
                    else ["-b", "127.0.0.1", "-p", str(self.port)])
            cmd.append(str(image))
        else:
            cmd = ["nbdkit", "-f", "--exportname=tmpl"]
            if not writable:
                cmd.append("-r")
            cmd += (["-U", self.sock] if transport == "unix"
                    else ["-i", "127.0.0.1", "-p", str(self.port)])
            cmd += ["file", str(image)]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE)
        if transport == "unix":
            wait_unix(self.sock, self.proc)
            self.uri = f"nbd+unix:///tmpl?socket={self.sock}"
            self.server = {"type": "unix", "path": self.sock}
        else:
            wait_tcp(self.port, self.proc)
            self.uri = f"nbd://127.0.0.1:{self.port}/tmpl"
            self.server = {"type": "inet", "host": "127.0.0.1",
                           "port": str(self.port)}

    def stop(self):
        stop_process(self.proc)


def serve_node(tmp_path, blockdev, node, name="s"):
    sock = str(tmp_path / f"{name}-out.sock")
    d = Daemon(binary("stratad"), tmp_path, [
        "--blockdev", json.dumps(blockdev),
        "--nbd-server", f"addr.type=unix,addr.path={sock}",
        "--export", f"type=nbd,id=e0,node-name={node},name=out,writable=on",
    ], name=name)
    wait_for_path(sock, d.proc)
    d.uri = f"nbd+unix:///out?socket={sock}"
    return d


@pytest.mark.parametrize("kind", ["qemu-nbd", "nbdkit"])
@pytest.mark.parametrize("transport", ["unix", "inet"])
def test_node_over_nbd(tmp_path, kind, transport):
    require(kind)
    image = template(tmp_path)
    srv = Server(kind, transport, tmp_path, image, writable=True)
    try:
        d = serve_node(tmp_path, {"driver": "raw", "node-name": "r0",
                                  "file": {"driver": "nbd", "node-name": "n0",
                                           "server": srv.server,
                                           "export": "tmpl"}}, "r0")
        try:
            h = nbd.NBD()
            h.connect_uri(d.uri)
            assert h.get_size() == 4 * MiB
            assert h.pread(4 * MiB, 0) == image.read_bytes()
            h.pwrite(b"\xee" * 4096, MiB + 512)
            h.flush()
            h.shutdown()
            nodes = {n["node-name"]: n
                     for n in d.connect().cmd("query-named-block-nodes")}
            assert nodes["n0"]["drv"] == "nbd"
            assert nodes["n0"]["file"] == srv.uri
        finally:
            d.stop()
    finally:
        srv.stop()
    data = image.read_bytes()
    assert data[MiB + 512:MiB + 4608] == b"\xee" * 4096


@pytest.mark.parametrize("transport", ["unix", "inet"])
def test_overlay_with_nbd_backing(tmp_path, transport):
    """An overlay whose backing file is an NBD URI: strata-img and stratad
    read the template through it; copy-on-read makes it local."""
    image = template(tmp_path)
    srv = Server("qemu-nbd", transport, tmp_path, image)
    top = tmp_path / "top.qcow2"
    try:
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-b",
                        srv.uri, "-F", "raw", str(top)], check=True)
        cmp = subprocess.run([binary("strata-img"), "compare", str(top),
                              str(image)], capture_output=True, text=True)
        assert cmp.returncode == 0, cmp.stdout + cmp.stderr
        info = json.loads(subprocess.run(
            [binary("strata-img"), "info", "--output=json", str(top)],
            check=True, capture_output=True, text=True).stdout)
        assert info["backing-filename"] == srv.uri
        d = serve_node(tmp_path, {
            "driver": "copy-on-read", "node-name": "cor",
            "file": {"driver": "qcow2", "node-name": "top",
                     "file": {"driver": "file", "filename": str(top)}}},
            "cor")
        try:
            h = nbd.NBD()
            h.connect_uri(d.uri)
            assert h.pread(2 * MiB, 0) == image.read_bytes()[:2 * MiB]
            h.shutdown()
        finally:
            d.stop()
        qemu_check(top)
    finally:
        srv.stop()
    # The template is gone; what was read is local now.
    alone = "json:" + json.dumps({"driver": "qcow2", "backing": None,
                                  "file": {"driver": "file",
                                           "filename": str(top)}})
    out = subprocess.run(["qemu-io", "-r", "-U", "-c", "read -v 0 16",
                          alone], capture_output=True, text=True)
    assert "01 01 01 01" in out.stdout, out.stdout + out.stderr


def test_template_from_another_stratad(tmp_path):
    """strata spans hosts: one stratad serves the template read-only, a
    second opens an overlay on it by URI."""
    image = template(tmp_path)
    sock = str(tmp_path / "tmpl.sock")
    a = Daemon(binary("stratad"), tmp_path, [
        "--blockdev", f"driver=file,node-name=f0,filename={image},"
                      "read-only=on",
        "--blockdev", "driver=raw,node-name=tmpl,file=f0,read-only=on",
        "--nbd-server", f"addr.type=unix,addr.path={sock}",
        "--export", "type=nbd,id=t0,node-name=tmpl,name=tmpl"], name="a")
    try:
        wait_for_path(sock, a.proc)
        uri = f"nbd+unix:///tmpl?socket={sock}"
        top = tmp_path / "top.qcow2"
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-b", uri,
                        "-F", "raw", str(top)], check=True)
        b = serve_node(tmp_path, {"driver": "qcow2", "node-name": "top",
                                  "file": {"driver": "file",
                                           "filename": str(top)}},
                       "top", name="b")
        try:
            h = nbd.NBD()
            h.connect_uri(b.uri)
            assert h.pread(4 * MiB, 0) == image.read_bytes()
            h.pwrite(b"\x77" * 65536, 0)
            assert h.pread(65536, 0) == b"\x77" * 65536
            h.shutdown()
        finally:
            b.stop()
        qemu_check(top)
    finally:
        a.stop()
    assert image.read_bytes()[:16] == b"\x01" * 16   # template untouched


def test_bad_options(tmp_path):
    d = Daemon(binary("stratad"), tmp_path, [])
    try:
        q = d.connect()
        with pytest.raises(QmpError) as e:
            q.cmd("blockdev-add", {"driver": "nbd", "node-name": "n",
                                   "server": {"type": "unix",
                                              "path": str(tmp_path / "no")}})
        assert e.value.desc.startswith("Failed to connect to")
        with pytest.raises(QmpError):
            q.cmd("blockdev-add", {"driver": "nbd", "node-name": "n",
                                   "server": {"type": "inet",
                                              "host": "127.0.0.1"}})
        assert q.cmd("query-named-block-nodes") == []
    finally:
        d.stop()


@pytest.mark.parametrize("kind,transport", [("qemu-nbd", "unix"),
                                            ("qemu-nbd", "inet"),
                                            ("nbdkit", "unix"),
                                            ("nbdkit", "inet")])
def test_stream_from_nbd_template(tmp_path, kind, transport):
    """A template served over NBD streamed into a local overlay while it
    is exported: afterwards the overlay stands alone, with the data."""
    require(kind)
    image = template(tmp_path)
    srv = Server(kind, transport, tmp_path, image)
    top = tmp_path / "top.qcow2"
    try:
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-b",
                        srv.uri, "-F", "raw", str(top)], check=True)
        d = serve_node(tmp_path, {"driver": "qcow2", "node-name": "top",
                                  "file": {"driver": "file",
                                           "filename": str(top)}}, "top")
        try:
            q = d.connect()
            h = nbd.NBD()
            h.connect_uri(d.uri)
            h.pwrite(b"\x5a" * 4096, 8192)
            q.cmd("block-stream", {"job-id": "s1", "device": "top"})
            while True:
                ev = q.wait_event(timeout=60)
                if ev["event"] == "BLOCK_JOB_COMPLETED":
                    assert "error" not in ev["data"], ev
                if ev["event"] == "JOB_STATUS_CHANGE" and \
                        ev["data"]["status"] == "null":
                    break
            want = bytearray(image.read_bytes())
            want[8192:12288] = b"\x5a" * 4096
            assert h.pread(4 * MiB, 0) == bytes(want)
            h.shutdown()
        finally:
            d.stop()
    finally:
        srv.stop()
    # The template server is gone; the overlay no longer needs it.
    info = json.loads(subprocess.run(
        [binary("strata-img"), "info", "--output=json", str(top)],
        check=True, capture_output=True, text=True).stdout)
    assert "backing-filename" not in info
    qemu_check(top)
    out = subprocess.run(["qemu-img", "convert", "-O", "raw", str(top),
                          str(tmp_path / "out.raw")], check=True)
    data = (tmp_path / "out.raw").read_bytes()
    assert data[:8192] == image.read_bytes()[:8192]
    assert data[8192:12288] == b"\x5a" * 4096


@pytest.mark.parametrize("context", [None, "qemu:allocation-depth",
                                     "qemu:nope"])
def test_map_through_nbd_with_x_dirty_bitmap(tmp_path, context):
    """iotest nbd-qemu-allocation: x-dirty-bitmap makes block status read
    another metadata context as if it were base:allocation; the map of
    the same export through strata-img and qemu-img must be equal."""
    require("qemu-nbd")
    base, top = tmp_path / "b.qcow2", tmp_path / "t.qcow2"
    sock = tmp_path / "nbd.sock"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", base, "4M"],
                   check=True)
    subprocess.run(["qemu-io", "-f", "qcow2", "-c", "w 0 2M", base],
                   check=True, capture_output=True)
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-b", base,
                    "-F", "qcow2", top, "4M"], check=True)
    subprocess.run(["qemu-io", "-f", "qcow2", "-c", "w 1M 2M", top],
                   check=True, capture_output=True)
    srv = subprocess.Popen(["qemu-nbd", "-k", str(sock), "-r", "-f", "qcow2",
                            "-A", "-t", str(top)], stderr=subprocess.PIPE)
    try:
        wait_unix(str(sock), srv)
        opts = {"driver": "nbd", "server": {"type": "unix",
                                            "path": str(sock)}}
        if context:
            opts["x-dirty-bitmap"] = context
        name = "json:" + json.dumps(opts)
        ours = subprocess.run([binary("strata-img"), "map", "--output=json",
                               name], capture_output=True, text=True)
        theirs = subprocess.run(["qemu-img", "map", "--output=json", name],
                                capture_output=True, text=True)
    finally:
        stop_process(srv)
    assert ours.returncode == theirs.returncode
    assert ours.stdout == theirs.stdout
    assert ours.stderr.replace("strata-img", "qemu-img") == theirs.stderr
    if context == "qemu:allocation-depth":
        # depth 2 (backing) reads as zero+data, depth 1 as a hole.
        assert json.loads(theirs.stdout)[1]["present"] is False
