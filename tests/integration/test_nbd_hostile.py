# SPDX-License-Identifier: BSD-3-Clause
"""Hostile and broken NBD clients: the server stays up, other clients keep
working, and shutdown never hangs because of a client."""
import socket
import struct
import time

import pytest

from conftest import run
from nbd_util import (CMD_READ, CMD_WRITE, IHAVEOPT, REQUEST_MAGIC, RawClient,
                      raw_blockdev, start_server)


@pytest.fixture
def server(tmp_path):
    img = str(tmp_path / "disk.raw")
    run(["qemu-img", "create", "-f", "raw", img, "4M"])
    run(["qemu-io", "-f", "raw", "-c", "write -P 0x42 0 1M", img])
    srv = start_server("strata", tmp_path, [raw_blockdev(img, "disk")],
                       [{"type": "nbd", "id": "e", "node-name": "disk",
                         "writable": True}])
    yield srv
    srv.stop()


def healthy(srv):
    """A well-behaved client can still connect and read."""
    assert srv.proc.poll() is None, "server died"
    c = srv.client()
    c.connect("disk")
    kind, cookie, chunks = c.cmd(CMD_READ, 0, 512)
    assert chunks[-1][2][8:] == b"\x42" * 512
    c.close()


def raw_sock(srv):
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(5)
    s.connect(srv.sock)
    return s


def test_garbage_and_wrong_magic(server):
    s = raw_sock(server)
    s.recv(18)
    s.sendall(b"\xff" * 4096)
    s.close()
    c = server.client()
    c.greeting()
    c.send(struct.pack(">QII", 0xdeadbeef, 1, 0))
    with pytest.raises((EOFError, ConnectionResetError)):
        c.recv_exact(1)
    c.close()
    c = server.client()
    c.connect("disk")
    c.send(struct.pack(">IHHQQI", 0x12345678, 0, 0, 1, 0, 512))
    with pytest.raises((EOFError, ConnectionResetError)):
        c.recv_exact(1)
    healthy(server)


def test_oversized_lengths(server):
    c = server.client()
    c.greeting()
    c.send(struct.pack(">QII", IHAVEOPT, 7, 0xffffffff))
    with pytest.raises((EOFError, ConnectionResetError)):
        c.recv_exact(1)
    c = server.client()
    c.connect("disk")
    # An oversized READ gets an error and the connection goes on.
    kind, cookie, chunks = c.cmd(CMD_READ, 0, (32 << 20) + 1)
    assert chunks[0][0] == 0x8001
    # An oversized WRITE cannot be skipped safely: the server hangs up.
    c.request(CMD_WRITE, 0, 64 << 20, 0, cookie=2)
    c.reply()
    with pytest.raises((EOFError, ConnectionResetError)):
        c.recv_exact(1)
    healthy(server)


def test_disconnect_mid_request_and_payload(server):
    for cut in (b"\x25\x60", struct.pack(">IHHQQI", REQUEST_MAGIC, 0, CMD_WRITE,
                                         1, 0, 65536) + b"x" * 1000):
        c = server.client()
        c.connect("disk")
        c.send(cut)
        c.close()
    c = server.client()
    c.greeting()
    c.send(struct.pack(">QII", IHAVEOPT, 6, 100) + b"\0\0")
    c.close()
    healthy(server)


def test_client_never_reads_replies(server):
    """Fills the socket with reads without reading replies, then another
    client works, and the server still shuts down promptly."""
    c = server.client()
    c.connect("disk")
    c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    req = struct.pack(">IHHQQI", REQUEST_MAGIC, 0, CMD_READ, 1, 0, 1 << 20)
    c.sock.settimeout(2)
    sent = 0
    try:
        for _ in range(2000):
            c.sock.sendall(req)
            sent += 1
    except (socket.timeout, BlockingIOError):
        pass
    assert sent > 10
    healthy(server)
    t = time.time()
    server.proc.terminate()
    server.proc.wait(timeout=15)
    assert time.time() - t < 15
    assert server.proc.returncode == 0
    c.close()


def test_many_clients_at_once(server):
    clients = []
    for _ in range(40):
        c = server.client()
        c.connect("disk")
        clients.append(c)
    for i, c in enumerate(clients):
        c.request(CMD_READ, i * 4096, 4096, cookie=i)
    for i, c in enumerate(clients):
        kind, cookie, chunks = c.reply()
        assert cookie == i
        c.close()
    healthy(server)


def test_pipelined_burst(tmp_path):
    """Hundreds of writes and reads in one send: headers and payloads
    straddle the server's input buffer in every way (payloads from 1 byte
    to 300 KiB, more than the buffer holds), replies may come back in any
    order, and every write reads back intact."""
    import random
    from nbd_util import read_content
    img = str(tmp_path / "big.raw")
    run(["qemu-img", "create", "-f", "raw", img, "32M"])
    srv = start_server("strata", tmp_path, [raw_blockdev(img, "disk")],
                       [{"type": "nbd", "id": "e", "node-name": "disk",
                         "writable": True}])
    try:
        rnd = random.Random(7)
        c = srv.client()
        c.connect("disk")
        # Disjoint ranges, written in shuffled order.
        ranges, off = [], 0
        for _ in range(250):
            length = rnd.choice([1, 512, 4096, 65536 - 3, 131072 + 5,
                                 300 << 10])
            ranges.append((off, length))
            off += length + rnd.randrange(1, 1000)
        assert off < 32 << 20
        rnd.shuffle(ranges)
        parts, writes = [], {}
        for cookie, (off, length) in enumerate(ranges, 1):
            data = bytes([cookie % 251 + 1]) * length
            parts.append(struct.pack(">IHHQQI", REQUEST_MAGIC, 0, CMD_WRITE,
                                     cookie, off, length) + data)
            writes[cookie] = (off, data)
        c.send(b"".join(parts))
        seen = set()
        for _ in writes:
            kind, err, cookie, _ = c.reply()
            assert kind == "simple" and err == 0
            seen.add(cookie)
        assert seen == set(writes)
        # Now the reads, pipelined the same way.
        c.send(b"".join(struct.pack(">IHHQQI", REQUEST_MAGIC, 0, CMD_READ,
                                    k, off, len(data))
                        for k, (off, data) in writes.items()))
        for _ in writes:
            reply = c.reply()
            off, data = writes[reply[1]]
            assert read_content(reply, off, len(data)) == data, reply[1]
        c.close()
        assert srv.proc.poll() is None
    finally:
        srv.stop()
