# SPDX-License-Identifier: BSD-3-Clause
"""The same NBD scenario against qemu-storage-daemon and strata: the
handshake replies, export flags, block status and error replies must be
byte-for-byte the same."""
import json
import struct
import subprocess

import pytest

from conftest import require, run
from nbd_util import (CMD_BLOCK_STATUS, CMD_CACHE, CMD_FLUSH, CMD_READ,
                      CMD_TRIM, CMD_WRITE, CMD_WRITE_ZEROES, FLAG_DF,
                      FLAG_FAST_ZERO, FLAG_FUA, FLAG_NO_HOLE, FLAG_REQ_ONE,
                      OPT_ABORT, OPT_EXTENDED_HEADERS, OPT_GO, OPT_INFO,
                      OPT_LIST, OPT_LIST_META_CONTEXT, OPT_SET_META_CONTEXT,
                      OPT_STARTTLS, OPT_STRUCTURED_REPLY, RawClient,
                      comparable_read,
                      qcow2_blockdev, qcow2_chain, raw_blockdev, start_server)


@pytest.fixture
def pair(tmp_path):
    """qsd and strata serving the same 2-layer qcow2 chain (separate
    copies), writable with a description and allocation-depth, plus a
    read-only raw export."""
    require("qemu-storage-daemon")
    servers = {}
    try:
        for kind in ("qsd", "strata"):
            d = tmp_path / kind
            d.mkdir()
            base, top = qcow2_chain(d)
            other = str(d / "ro.raw")
            subprocess.run(["qemu-img", "create", "-f", "raw", other, "1M"],
                           check=True, capture_output=True)
            servers[kind] = start_server(
                kind, d,
                [qcow2_blockdev(top, "disk"),
                 raw_blockdev(other, "ro", read_only=True)],
                [{"type": "nbd", "id": "e1", "node-name": "disk",
                  "writable": True, "description": "testdesc",
                  "allocation-depth": True},
                 {"type": "nbd", "id": "e2", "node-name": "ro"}])
        yield servers
    finally:
        for s in servers.values():
            s.stop()


def both(pair, fn):
    out = {k: fn(s) for k, s in pair.items()}
    assert out["strata"] == out["qsd"], out
    return out["qsd"]


def handshake_transcript(srv):
    c = RawClient(srv.sock)
    log = [c.greeting()]
    for opt, data in [
        (OPT_LIST, b""),
        (99, b"abc"),
        (OPT_STARTTLS, b""),
        (OPT_EXTENDED_HEADERS, b""),
        (OPT_INFO, RawClient.info_data("nosuch")),
        (OPT_INFO, RawClient.info_data("disk", [1, 2, 3])),
        (OPT_INFO, RawClient.info_data("ro", [])),
        (OPT_LIST_META_CONTEXT, RawClient.meta_data("disk", [])),
        (OPT_LIST_META_CONTEXT, RawClient.meta_data("ro", [])),
        (OPT_LIST_META_CONTEXT, RawClient.meta_data("disk", ["base:"])),
        (OPT_LIST_META_CONTEXT, RawClient.meta_data("disk", ["qemu:"])),
        (OPT_LIST_META_CONTEXT, RawClient.meta_data(
            "disk", ["qemu:allocation-depth", "base:allocation", "foo:bar",
                     "qemu:dirty-bitmap:"])),
        (OPT_SET_META_CONTEXT, RawClient.meta_data("disk", ["base:allocation"])),
        (OPT_STRUCTURED_REPLY, b"x"),
        (OPT_STRUCTURED_REPLY, b""),
        (OPT_STRUCTURED_REPLY, b""),
        (OPT_SET_META_CONTEXT, RawClient.meta_data(
            "disk", ["qemu:allocation-depth", "base:allocation", "base:"])),
        (OPT_SET_META_CONTEXT, RawClient.meta_data("nosuch", ["base:allocation"])),
        (OPT_LIST_META_CONTEXT,
         RawClient.meta_data("disk", ["base:allocation"])[:-3]),
        (OPT_INFO, b"\0\0\0\x10disk"),
        (OPT_INFO, b"\x78\x78\x78\x78" + b"x" * 100),
        (OPT_LIST, b"x"),
        (OPT_GO, RawClient.info_data("disk", [3])),
    ]:
        log.append((opt, c.option(opt, data)))
    c.close()
    return log


def test_handshake_identical(pair):
    both(pair, handshake_transcript)


def test_abort_and_export_name(pair):
    def scenario(srv):
        c = RawClient(srv.sock)
        c.greeting()
        out = [c.option(OPT_ABORT)]
        c.close()
        c = RawClient(srv.sock)
        c.greeting()
        c.send_option(1, b"disk")       # EXPORT_NAME, NO_ZEROES on
        out.append(c.recv_exact(10))
        c.close()
        c = RawClient(srv.sock)
        c.greeting(client_flags=1)      # without NO_ZEROES: 124 zero bytes
        c.send_option(1, b"ro")
        out.append(c.recv_exact(134))
        c.close()
        return out
    both(pair, scenario)


def transmission_transcript(srv, structured):
    c = RawClient(srv.sock)
    ctx = ["base:allocation", "qemu:allocation-depth"] if structured else []
    out = [c.connect("disk", structured=structured, contexts=ctx)]
    size = 4 << 20
    reqs = [
        (CMD_BLOCK_STATUS, 0, size, 0),
        (CMD_BLOCK_STATUS, 0, size, FLAG_REQ_ONE),
        (CMD_BLOCK_STATUS, 70000, 2000000, 0),
        (CMD_BLOCK_STATUS, 0, 0, 0),
        (CMD_READ, 0, 131072, 0),
        (CMD_READ, 1 << 20, 131072, 0),
        (CMD_READ, 2 << 20, 4096, 0),
        (CMD_READ, 65536 - 512, 1024, FLAG_DF),
        (CMD_READ, size - 512, 1024, 0),
        (CMD_READ, size + 1, 0, 0),
        (CMD_READ, 0, 0, 0),
        (CMD_READ, 0, 512, FLAG_REQ_ONE),
        (CMD_READ, 0, 512, FLAG_FUA),
        (CMD_READ, 0, (32 << 20) + 1, 0),
        (CMD_WRITE_ZEROES, 0, 4096, FLAG_FUA | FLAG_NO_HOLE),
        (CMD_WRITE_ZEROES, size - 4096, 8192, 0),
        (CMD_WRITE_ZEROES, 8192, 4096, FLAG_DF),
        (CMD_TRIM, 3 << 20, 65536, 0),
        (CMD_TRIM, size, 1, 0),
        (CMD_FLUSH, 0, 0, 0),
        (CMD_CACHE, 0, 1 << 20, 0),
        (CMD_CACHE, size, 512, 0),
        (42, 0, 0, 0),
        (CMD_BLOCK_STATUS, 0, size, 0),
    ]
    for i, (cmd, off, length, flags) in enumerate(reqs):
        reply = c.cmd(cmd, off, length, flags, cookie=i + 1)
        if cmd == CMD_READ:
            reply = comparable_read(reply, off, length)
        out.append((cmd, off, length, flags, reply))
    c.request(CMD_WRITE, size - 256, 512, FLAG_FUA, cookie=99,
              data=b"\x55" * 512)
    out.append(c.reply())
    c.request(CMD_WRITE, 512, 512, FLAG_FUA, cookie=100, data=b"\x66" * 512)
    out.append(c.reply())
    out.append(comparable_read(c.cmd(CMD_READ, 0, 1024, 0, cookie=101),
                               0, 1024))
    c.close()
    return out


def test_structured_transmission_identical(pair):
    both(pair, lambda s: transmission_transcript(s, True))


def test_simple_transmission_identical(pair):
    both(pair, lambda s: transmission_transcript(s, False))


def test_read_only_export_identical(pair):
    def scenario(srv):
        c = RawClient(srv.sock)
        out = [c.connect("ro", structured=True, contexts=["base:allocation"])]
        out.append(c.cmd(CMD_WRITE, 0, 512, 0, data=b"a" * 512))
        out.append(c.cmd(CMD_TRIM, 0, 512, 0))
        out.append(c.cmd(CMD_WRITE_ZEROES, 0, 512, 0))
        out.append(c.cmd(CMD_FLUSH))
        out.append(c.cmd(CMD_BLOCK_STATUS, 0, 1 << 20))
        out.append(comparable_read(c.cmd(CMD_READ, 0, 4096), 0, 4096))
        c.close()
        return out
    both(pair, scenario)


def test_block_status_matches_reference(tmp_path):
    """The observation recorded in the reference (qemu-compat.md 7), on
    the image it was made with: a qcow2 base with data at 1M, a qcow2
    top with data at 0."""
    from nbd_util import decode_status_chunk
    base = str(tmp_path / "base.qcow2")
    top = str(tmp_path / "top.qcow2")
    run(["qemu-img", "create", "-f", "qcow2", base, "4M"])
    run(["qemu-io", "-f", "qcow2", "-c", "write -P 1 1M 64k", base])
    run(["qemu-img", "create", "-f", "qcow2", "-b", base, "-F", "qcow2", top])
    run(["qemu-io", "-f", "qcow2", "-c", "write -P 2 0 64k", top])
    srv = start_server("strata", tmp_path, [qcow2_blockdev(top, "disk")],
                       [{"type": "nbd", "id": "e", "node-name": "disk",
                         "allocation-depth": True}])
    try:
        c = RawClient(srv.sock)
        c.connect("disk", contexts=["base:allocation",
                                    "qemu:allocation-depth"])
        _, _, chunks = c.cmd(CMD_BLOCK_STATUS, 0, 4 << 20)
        got = [decode_status_chunk(p) for _, _, p in chunks]
        assert got == [
            (0, [(65536, 0), (983040, 3), (65536, 0), (3080192, 3)]),
            (1, [(65536, 1), (983040, 0), (65536, 2), (3080192, 0)]),
        ]
        c.close()
    finally:
        srv.stop()


def test_nbdinfo_json_identical(pair):
    require("nbdinfo")

    def info(srv):
        out = {}
        for name in ("disk", "ro"):
            j = json.loads(run(["nbdinfo", "--json", srv.uri(name)]).stdout)
            for e in j["exports"]:
                e.pop("uri", None)
            out[name] = j
        lst = json.loads(run(["nbdinfo", "--json", "--list",
                              srv.uri()]).stdout)
        for e in lst["exports"]:
            e.pop("uri", None)
        out["list"] = lst
        out["map"] = run(["nbdinfo", "--map", srv.uri("disk")]).stdout
        out["depth"] = run(["nbdinfo", "--map=qemu:allocation-depth",
                            srv.uri("disk")]).stdout
        return out
    both(pair, info)


def test_multi_conn_follows_max_connections(tmp_path):
    require("qemu-storage-daemon")
    flags = {}
    for kind in ("qsd", "strata"):
        d = tmp_path / kind
        d.mkdir()
        img = str(d / "a.raw")
        subprocess.run(["qemu-img", "create", "-f", "raw", img, "1M"],
                       check=True, capture_output=True)
        srv = start_server(kind, d, [raw_blockdev(img, "a")],
                           [{"type": "nbd", "id": "e", "node-name": "a",
                             "writable": True}], max_connections=1)
        try:
            c = srv.client()
            flags[kind] = c.connect("a")
            c.close()
        finally:
            srv.stop()
    assert flags["strata"] == flags["qsd"]
    assert not flags["strata"][1] & 0x100
