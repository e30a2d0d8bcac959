# SPDX-License-Identifier: BSD-3-Clause
"""strata's NBD server with the real clients: qemu-img, qemu-io, nbdinfo,
nbdcopy, python3 nbd (libnbd) and fio."""
import errno
import json
import os
import shutil
import subprocess

import pytest

from conftest import require, run
from nbd_util import qcow2_blockdev, qcow2_chain, raw_blockdev, start_server

nbd = pytest.importorskip("nbd")

SIZE = 8 << 20


@pytest.fixture
def raw_server(tmp_path):
    img = str(tmp_path / "disk.raw")
    run(["qemu-img", "create", "-f", "raw", img, str(SIZE)])
    srv = start_server("strata", tmp_path, [raw_blockdev(img, "disk")],
                       [{"type": "nbd", "id": "e", "node-name": "disk",
                         "writable": True}])
    srv.image = img
    yield srv
    srv.stop()


@pytest.fixture
def qcow2_server(tmp_path):
    base, top = qcow2_chain(tmp_path)
    srv = start_server("strata", tmp_path, [qcow2_blockdev(top, "disk")],
                       [{"type": "nbd", "id": "e", "node-name": "disk",
                         "writable": True, "allocation-depth": True}])
    srv.image = top
    yield srv
    srv.stop()


def test_qemu_img_convert_roundtrip(raw_server, tmp_path):
    src = str(tmp_path / "src.raw")
    run(["qemu-img", "create", "-f", "raw", src, str(SIZE)])
    run(["qemu-io", "-f", "raw", "-c", "write -P 0x5a 1M 3M",
         "-c", "write -P 0xa5 7M 4k", src])
    run(["qemu-img", "convert", "-n", "-f", "raw", "-O", "raw", src,
         raw_server.uri("disk")])
    run(["qemu-img", "compare", "-f", "raw", "-F", "raw", src,
         raw_server.uri("disk")])
    out = str(tmp_path / "out.qcow2")
    run(["qemu-img", "convert", "-f", "raw", "-O", "qcow2",
         raw_server.uri("disk"), out])
    run(["qemu-img", "compare", "-F", "qcow2", src, out])


def test_qemu_io_patterns(raw_server):
    uri = raw_server.uri("disk")
    run(["qemu-io", "-f", "raw", "-c", "write -P 0x11 0 64k",
         "-c", "write -P 0x22 -f 1M 128k", "-c", "write -z 64k 64k",
         "-c", "aio_write -P 0x33 2M 4k", "-c", "aio_flush",
         "-c", "discard 4M 1M", uri])
    run(["qemu-io", "-f", "raw", "-r", "-c", "read -P 0x11 0 64k",
         "-c", "read -P 0 64k 64k", "-c", "read -P 0x22 1M 128k",
         "-c", "read -P 0x33 2M 4k", uri])
    # What the server wrote is in the image file.
    run(["qemu-io", "-f", "raw", "-r", "-U", "-c", "read -P 0x22 1M 128k",
         raw_server.image])


def test_nbdinfo(qcow2_server):
    require("nbdinfo")
    info = json.loads(run(["nbdinfo", "--json",
                           qcow2_server.uri("disk")]).stdout)
    exp = info["exports"][0]
    assert exp["export-size"] == 4 << 20
    assert exp["can_multi_conn"] and exp["can_fast_zero"] and exp["can_cache"]
    assert set(exp["contexts"]) == {"base:allocation", "qemu:allocation-depth"}
    lst = run(["nbdinfo", "--list", qcow2_server.uri()]).stdout
    assert 'export="disk"' in lst
    # Base (raw) data at 0 and 1M, top data at 64k..1M: one data run up
    # to 1M+64k, the rest of the raw base is a hole.
    m = run(["nbdinfo", "--map", qcow2_server.uri("disk")]).stdout.split("\n")
    assert m[0].split() == ["0", "1114112", "0", "data"]
    assert m[1].split() == ["1114112", "3080192", "3", "hole,zero"]
    d = run(["nbdinfo", "--map=qemu:allocation-depth",
             qcow2_server.uri("disk")]).stdout.split("\n")
    assert [line.split()[:3] for line in d if line] == [
        ["0", "65536", "2"], ["65536", "983040", "1"],
        ["1048576", "3145728", "2"]]


def test_qemu_img_map_matches_file(qcow2_server):
    over_nbd = json.loads(run(["qemu-img", "map", "--output=json", "-f", "raw",
                               qcow2_server.uri("disk")]).stdout)
    local = json.loads(run(["qemu-img", "map", "--output=json", "-U",
                            qcow2_server.image]).stdout)
    strip = lambda m: [(e["start"], e["length"], e["data"], e["zero"])
                       for e in m]

    def merge(m):
        out = []
        for s, l, d, z in strip(m):
            if out and out[-1][2:] == (d, z) and out[-1][0] + out[-1][1] == s:
                out[-1] = (out[-1][0], out[-1][1] + l, d, z)
            else:
                out.append((s, l, d, z))
        return out
    assert merge(over_nbd) == merge(local)


def test_nbdcopy_multi_conn(raw_server, tmp_path):
    require("nbdcopy")
    src = str(tmp_path / "src.raw")
    run(["qemu-img", "create", "-f", "raw", src, str(SIZE)])
    run(["qemu-io", "-f", "raw", "-c", "write -P 0x77 0 2M",
         "-c", "write -P 0x78 6M 1M", src])
    run(["nbdcopy", "--connections=4", "--requests=16", src,
         raw_server.uri("disk")])
    back = str(tmp_path / "back.raw")
    run(["nbdcopy", "--connections=2", raw_server.uri("disk"), back])
    run(["cmp", src, back])


def test_python_every_command(qcow2_server):
    h = nbd.NBD()
    h.add_meta_context("base:allocation")
    h.add_meta_context("qemu:allocation-depth")
    h.connect_uri(qcow2_server.uri("disk"))
    assert h.get_size() == 4 << 20
    assert h.pread(4, 0) == b"\x11" * 4
    assert h.pread(4, 65536) == b"\x33" * 4
    h.pwrite(b"\x44" * 4096, 2 << 20, nbd.CMD_FLAG_FUA)
    assert h.pread(4096, 2 << 20) == b"\x44" * 4096
    # Zeroing part of a cluster that holds data cannot be done without
    # writing: a fast zero is refused (as qsd does), a plain one works.
    with pytest.raises(nbd.Error) as e:
        h.zero(4096, 2 << 20, nbd.CMD_FLAG_FAST_ZERO | nbd.CMD_FLAG_NO_HOLE)
    assert e.value.errnum == errno.ENOTSUP
    h.zero(4096, 2 << 20, nbd.CMD_FLAG_NO_HOLE)
    assert h.pread(4096, 2 << 20) == bytes(4096)
    # Whole clusters are zeroed fast.
    h.zero(128 << 10, 2 << 20, nbd.CMD_FLAG_FAST_ZERO)
    assert h.pread(128 << 10, 2 << 20) == bytes(128 << 10)
    h.trim(65536, 3 << 20)
    h.flush()
    h.cache(1 << 20, 0)

    seen = {}

    def cb(ctx, offset, entries, err):
        seen[ctx] = entries
        return 0
    h.block_status(4 << 20, 0, cb)
    assert seen["qemu:allocation-depth"][:4] == [65536, 2, 983040, 1]
    h.block_status(4 << 20, 0, cb, nbd.CMD_FLAG_REQ_ONE)
    assert len(seen["base:allocation"]) == 2

    h.set_strict_mode(0)
    with pytest.raises(nbd.Error) as e:
        h.pread(1024, (4 << 20) - 512)
    assert e.value.errnum == 22
    with pytest.raises(nbd.Error) as e:
        h.pwrite(b"x" * 1024, (4 << 20) - 512)
    assert e.value.errnum == 22
    assert h.pread(4, 0) == b"\x11" * 4
    h.shutdown()


def test_fio_short_run(raw_server):
    require("fio")
    out = run(["fio", "--name=j", "--ioengine=nbd", "--uri=" +
               raw_server.uri("disk"), "--rw=randrw", "--bs=4k",
               "--iodepth=16", "--size=8M", "--time_based", "--runtime=2",
               "--verify=crc32c", "--verify_state_save=0",
               "--output-format=json"], timeout=60).stdout
    job = json.loads(out[out.index("{"):])["jobs"][0]
    assert job["error"] == 0
    assert job["read"]["io_bytes"] > 0 and job["write"]["io_bytes"] > 0


@pytest.mark.parametrize("kind", ["strata", "qsd"])
def test_export_size_in_whole_sectors(tmp_path, kind):
    """A raw file whose size is not a multiple of 512 is exported as QEMU
    counts it, in whole sectors (1000 bytes -> 1024), by both daemons:
    the tail reads as zeroes and a write there grows the file."""
    img = tmp_path / "odd.raw"
    img.write_bytes(b"\x61" * 1000)
    srv = start_server(kind, tmp_path, [raw_blockdev(str(img), "n")],
                       [{"type": "nbd", "id": "e", "node-name": "n",
                         "writable": True}])
    try:
        if shutil.which("nbdinfo"):
            info = json.loads(run(["nbdinfo", "--json", srv.uri("n")]).stdout)
            assert info["exports"][0]["export-size"] == 1024
        h = nbd.NBD()
        h.connect_uri(srv.uri("n"))
        assert h.get_size() == 1024
        assert h.pread(1024, 0) == b"\x61" * 1000 + b"\0" * 24
        h.pwrite(b"\x62" * 8, 992)
        h.set_strict_mode(0)
        with pytest.raises(nbd.Error) as e:
            h.pwrite(b"\x63" * 16, 1016)
        assert e.value.errnum == errno.EINVAL
        h.shutdown()
        run(["qemu-io", "-f", "raw", "-r", "-c", "read -P 0x61 0 992",
             "-c", "read -P 0x62 992 8", "-c", "read -P 0 1000 24",
             srv.uri("n")])
        if shutil.which("nbdcopy"):
            copy = tmp_path / "copy.raw"
            run(["nbdcopy", srv.uri("n"), str(copy)])
            assert copy.read_bytes() == \
                b"\x61" * 992 + b"\x62" * 8 + b"\0" * 24
        # A write into the tail grows the file, as with QEMU.
        run(["qemu-io", "-f", "raw", "-c", "write -P 0x64 1016 8",
             srv.uri("n")])
    finally:
        srv.stop()
    assert img.stat().st_size == 1024
    assert img.read_bytes()[1016:] == b"\x64" * 8
