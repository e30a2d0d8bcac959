# SPDX-License-Identifier: BSD-3-Clause
"""Data-dependent NBD replies, strata against qemu-storage-daemon on the
same images: block status chunks (base:allocation and
qemu:allocation-depth) over 2- and 3-layer qcow2 chains and a sparse raw
file, the chunk layout of structured READs over data and holes, how
write-zeroes and trim change allocation, and what nbdinfo and qemu-img
map print over NBD.  Every comparison is byte for byte."""
import json
import subprocess

import pytest

from conftest import require, run
from nbd_util import (CMD_BLOCK_STATUS, CMD_READ, CMD_TRIM, CMD_WRITE,
                      CMD_WRITE_ZEROES, FLAG_DF, FLAG_FAST_ZERO, FLAG_FUA,
                      FLAG_NO_HOLE, FLAG_REQ_ONE, RawClient, qcow2_blockdev,
                      SPARSE_READ_MIN, comparable_read, qcow2_chain,
                      qcow2_chain3, raw_blockdev, read_content, sparse_raw,
                      start_server)

CTX = ["base:allocation", "qemu:allocation-depth"]
EXPORTS = ("two", "three", "raw")


@pytest.fixture
def pair(tmp_path):
    """qsd and strata, each serving its own copy of the 2-layer chain
    (qcow2 over raw), the 3-layer qcow2 chain and a sparse raw file,
    writable and with allocation-depth."""
    require("qemu-storage-daemon")
    servers = {}
    try:
        for kind in ("qsd", "strata"):
            d = tmp_path / kind
            d.mkdir()
            _, two = qcow2_chain(d)
            three = qcow2_chain3(d)
            raw = sparse_raw(d)
            servers[kind] = start_server(
                kind, d,
                [qcow2_blockdev(two, "two"), qcow2_blockdev(three, "three"),
                 raw_blockdev(raw, "raw")],
                [{"type": "nbd", "id": "e-" + n, "node-name": n,
                  "writable": True, "allocation-depth": True}
                 for n in EXPORTS])
        yield servers
    finally:
        for s in servers.values():
            s.stop()


def both(pair, fn):
    out = {k: fn(s) for k, s in pair.items()}
    if out["strata"] != out["qsd"]:
        # Show where the transcripts part, not two walls of bytes.
        q, s = out["qsd"], out["strata"]
        if isinstance(q, list) and isinstance(s, list):
            for i, (a, b) in enumerate(zip(q, s)):
                assert b == a, f"step {i} differs:\nqsd    {a!r}\nstrata {b!r}"
        assert s == q
    return out["qsd"]


def summarize(reply):
    """A reply with READ payloads reduced to (length, distinct bytes), so
    a difference is readable; the bytes are still compared."""
    if reply[0] != "structured":
        return reply
    chunks = []
    for ctype, flags, payload in reply[2]:
        if ctype == 1:
            data = payload[8:]
            chunks.append((ctype, flags, payload[:8], len(data),
                           bytes(sorted(set(data))), hash(data)))
        else:
            chunks.append((ctype, flags, payload))
    return (reply[0], reply[1], chunks)


M = 1 << 20
K = 1 << 10

# (offset, length, flags) probes that cross every kind of boundary in the
# images: cluster edges of each layer, partial clusters, the end of the
# shorter backing chain at 6M, and the end of the export.
STATUS_PROBES = [
    (0, 8 * M, 0), (0, 8 * M, FLAG_REQ_ONE), (0, 4 * M, 0),
    (1, 100 * K, 0), (4095, 8193, 0), (64 * K - 1, 2, 0),
    (100 * K, 1 * M, FLAG_REQ_ONE), (510 * K, 20 * K, 0),
    (1 * M + 16 * K, 64 * K, 0), (2 * M - 1, 40 * K, 0),
    (3 * M + 1, 3 * K, 0), (3 * M + 4 * K, 60 * K, FLAG_REQ_ONE),
    (4100 * K + 512, 4 * K, 0), (5 * M + 32 * K, 200 * K, 0),
    (6 * M - 512, 2 * K, 0), (6 * M, 1 * M, 0), (7 * M - 1, 2, 0),
    (8 * M - 1, 1, 0), (8 * M - 4 * K, 4 * K, FLAG_REQ_ONE),
]

READ_PROBES = [
    (0, 2 * M, 0), (0, 8 * M, 0), (64 * K - 1, 130 * K, 0),
    (508 * K, 16 * K, 0), (1 * M - 4 * K, 72 * K, 0),
    (2 * M + 30 * K, 40 * K, 0), (3 * M - 4 * K, 72 * K, 0),
    (4 * M, 200 * K, 0), (5 * M, 512 * K, 0), (5 * M, 512 * K, FLAG_DF),
    (6 * M - 4 * K, 8 * K, 0), (7 * M - 1, 3, 0), (8 * M - 4 * K, 4 * K, 0),
    (0, 1, 0), (6 * M + 1 * K, 1, 0), (6 * M - 32 * K, 64 * K, 0),
    (2 * M, 64 * K, 0), (3 * M, 64 * K - 1, 0),
]


def probe_transcript(srv, name):
    c = RawClient(srv.sock)
    out = [c.connect(name, contexts=CTX)]
    size = out[0][0]
    cookie = 1
    for off, length, flags in STATUS_PROBES + [(size - 1, 1, 0)]:
        if off + length > size:
            continue
        out.append(("status", off, length, flags,
                    c.cmd(CMD_BLOCK_STATUS, off, length, flags, cookie)))
        cookie += 1
    for off, length, flags in READ_PROBES:
        if off + length > size:
            continue
        reply = c.cmd(CMD_READ, off, length, flags, cookie)
        out.append(("read", off, length, flags,
                    summarize(comparable_read(reply, off, length))))
        cookie += 1
    c.close()
    return out


@pytest.mark.parametrize("name", EXPORTS)
def test_status_and_read_layout_identical(pair, name):
    both(pair, lambda s: probe_transcript(s, name))


def allocation_transcript(srv, ops):
    out = []
    for name in EXPORTS:
        c = RawClient(srv.sock)
        size, flags = c.connect(name, contexts=CTX)
        out.append((size, flags))
        for i, (cmd, off, length, fl) in enumerate(ops):
            if off + length > size:
                continue
            data = b"\x5a" * length if cmd == CMD_WRITE else b""
            c.request(cmd, off, length, fl, cookie=i, data=data)
            out.append((name, cmd, off, length, fl, c.reply()))
        out.append(c.cmd(CMD_BLOCK_STATUS, 0, size, 0, cookie=100))
        out.append(summarize(c.cmd(CMD_READ, 0, size, 0, cookie=101)))
        c.close()
    return out


def test_short_reads_are_one_data_chunk(pair):
    """Below SPARSE_READ_MIN strata does not look up block status for a
    READ: one data chunk, the same bytes qsd sends as data and holes."""
    c = RawClient(pair["strata"].sock)
    c.connect("three")
    for off, length in [(2 * M + 30 * K, 40 * K), (6 * M - 4 * K, 8 * K),
                        (0, SPARSE_READ_MIN - 1)]:
        reply = c.cmd(CMD_READ, off, length)
        assert [(t, f) for t, f, _ in reply[2]] == [(1, 1)]
        q = RawClient(pair["qsd"].sock)
        q.connect("three")
        assert read_content(reply, off, length) == read_content(
            q.cmd(CMD_READ, off, length), off, length)
        q.close()
    c.close()


def test_allocation_changes_identical(pair):
    """Write-zeroes (plain, NO_HOLE, FAST_ZERO, unaligned), trim and
    writes change allocation the same way on both servers."""
    ops = [
        (CMD_WRITE_ZEROES, 0, 64 * K, 0),
        (CMD_WRITE_ZEROES, 64 * K, 64 * K, FLAG_NO_HOLE),
        (CMD_WRITE_ZEROES, 1 * M, 64 * K, FLAG_FAST_ZERO),
        (CMD_WRITE_ZEROES, 5 * M + 4 * K, 4 * K,
         FLAG_FAST_ZERO | FLAG_NO_HOLE),
        (CMD_WRITE_ZEROES, 4 * M, 128 * K, FLAG_FUA),
        (CMD_TRIM, 7 * M, 64 * K, 0),
        (CMD_TRIM, 2 * M + 4 * K, 4 * K, 0),
        (CMD_WRITE, 6 * M + 60 * K, 8 * K, FLAG_FUA),
        (CMD_WRITE, 3 * M - 1 * K, 2 * K, 0),
        (CMD_TRIM, 1 * M + 64 * K, 1 * M, 0),
        (CMD_TRIM, 0, 4 * M, FLAG_FUA),
    ]
    both(pair, lambda s: allocation_transcript(s, ops))


def test_fast_zero_partial_cluster_over_backing_identical(pair):
    ops = [(CMD_WRITE_ZEROES, 3 * M + 512, 1 * K, FLAG_FAST_ZERO),
           (CMD_WRITE_ZEROES, 2 * M - 4 * K, 1 * M, FLAG_FAST_ZERO),
           (CMD_WRITE_ZEROES, 3 * M + 4 * K, 8 * K, 0),
           (CMD_WRITE, 3 * M - 1 * K, 2 * K, 0)]
    both(pair, lambda s: allocation_transcript(s, ops))


def test_nbdinfo_identical(pair):
    require("nbdinfo")

    def info(srv):
        out = {}
        for name in EXPORTS:
            j = json.loads(run(["nbdinfo", "--json", srv.uri(name)]).stdout)
            for e in j["exports"]:
                e.pop("uri", None)
            out[name] = j
            out[name + " map"] = run(["nbdinfo", "--map",
                                      srv.uri(name)]).stdout
            out[name + " totals"] = run(["nbdinfo", "--map", "--totals",
                                         srv.uri(name)]).stdout
            out[name + " depth"] = run(
                ["nbdinfo", "--map=qemu:allocation-depth",
                 srv.uri(name)]).stdout
        return out
    both(pair, info)


def test_qemu_img_map_over_nbd_identical(pair):
    def maps(srv):
        out = {}
        for name in EXPORTS:
            out[name] = json.loads(run(["qemu-img", "map", "--output=json",
                                        "-f", "raw", srv.uri(name)]).stdout)
            out[name + " human"] = run(["qemu-img", "map", "-f", "raw",
                                        srv.uri(name)]).stdout.replace(
                                            srv.sock, "SOCK")
        return out
    both(pair, maps)


def test_qemu_img_compare_over_nbd(pair):
    """What both servers serve is the same disk content."""
    for name in EXPORTS:
        subprocess.run(["qemu-img", "compare", "-f", "raw", "-F", "raw",
                        pair["qsd"].uri(name), pair["strata"].uri(name)],
                       check=True, capture_output=True)
