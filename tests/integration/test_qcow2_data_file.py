# SPDX-License-Identifier: BSD-3-Clause
"""qcow2 images with an external data file (data_file, data_file_raw):
the image keeps the metadata, guest data lives in the data file at its
guest offset.  qemu-img and qemu-io judge: what strata creates and writes
they read, write and find clean; what they create strata reads and
writes (strata-img, the engine, stratad over NBD); info and map agree
with qemu-img's; refusals use QEMU's words."""
import json
import os
import subprocess

import pytest

from conftest import binary, require, run
from nbd_util import start_server
from qcow2_util import qemu_check, qemu_io, strata_io

MiB = 1 << 20


def in_dir(cwd, *cmd, check=True):
    """Runs cmd in cwd (data file names are relative to it, as QEMU
    takes them)."""
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True,
                          timeout=60)
    if check:
        assert proc.returncode == 0, f"{cmd}: {proc.stdout}{proc.stderr}"
    return proc


def both_run(tmp_path, *args, check=True):
    """Runs the same strata-img and qemu-img command, each in its own
    directory with the same file names; returns (ours, theirs, dirs)."""
    s, q = tmp_path / "s", tmp_path / "q"
    s.mkdir(exist_ok=True)
    q.mkdir(exist_ok=True)
    ours = in_dir(s, binary("strata-img"), *args, check=check)
    theirs = in_dir(q, "qemu-img", *args, check=check)
    return ours, theirs, s, q


@pytest.mark.parametrize("opts", [
    "data_file=d.data",
    "data_file=d.data,data_file_raw=on",
    "data_file=d.data,preallocation=full",
    "data_file=d.data,extended_l2=on,preallocation=metadata",
    "data_file=d.data,data_file_raw=on,cluster_size=4k",
])
def test_create_same_bytes(tmp_path, opts):
    ours, theirs, s, q = both_run(tmp_path, "create", "-f", "qcow2", "-o",
                                  opts, "i.qcow2", "3M")
    assert ours.stdout == theirs.stdout  # the Formatting line
    for name in ("i.qcow2", "d.data"):
        assert (s / name).read_bytes() == (q / name).read_bytes(), name
    # The relative name is opened from the current directory, as QEMU
    # opens it.
    assert "No errors" in in_dir(s, "qemu-img", "check", "i.qcow2").stdout


def test_refusals_match_qemu(tmp_path):
    for opts in ("data_file_raw=on", "data_file=d.data,compat=0.10",
                 "data_file=d.data,data_file_raw=on,backing_file=b.qcow2"):
        ours, theirs, _, _ = both_run(tmp_path, "create", "-q", "-f",
                                      "qcow2", "-o", opts, "x.qcow2", "1M",
                                      check=False)
        assert ours.returncode == theirs.returncode == 1
        assert (ours.stderr.replace("strata-img:", "qemu-img:") ==
                theirs.stderr), opts


def test_strata_writes_qemu_reads(tmp_path):
    """convert into a data-file image: qemu-io reads it, writes it, and
    qemu-img finds it clean and equal to the source."""
    src = tmp_path / "src.raw"
    run(["qemu-img", "create", "-q", "-f", "raw", str(src), "4M"])
    qemu_io(src, "write -P 0x11 0 64k", "write -P 0x22 1M 100k",
            "write -P 0x33 3M 4k", fmt="raw")
    img, data = tmp_path / "s.qcow2", tmp_path / "s.data"
    run([binary("strata-img"), "convert", "-O", "qcow2", "-o",
         f"data_file={data}", str(src), str(img)])
    qemu_check(img)
    run(["qemu-img", "compare", str(src), str(img)])
    # The image file holds no guest data: only its metadata clusters.
    assert os.path.getsize(img) < 512 * 1024
    qemu_io(img, "read -P 0x22 1M 100k", "write -P 0x44 2M 64k")
    qemu_io(src, "write -P 0x44 2M 64k", fmt="raw")
    run(["qemu-img", "compare", str(src), str(img)])
    qemu_check(img)


@pytest.mark.parametrize("raw", ["off", "on"])
@pytest.mark.parametrize("extl2", ["off", "on"])
def test_engine_writes_like_qemu(tmp_path, raw, extl2):
    """The same writes, discards and zero writes through strata and
    qemu-io leave the same mapping, the same content and the same data
    file (244's sequence)."""
    images = {}
    for who in ("s", "q"):
        img, data = tmp_path / f"{who}.qcow2", tmp_path / f"{who}.data"
        run(["qemu-img", "create", "-q", "-f", "qcow2", "-o",
             f"data_file={data},data_file_raw={raw},extended_l2={extl2}",
             str(img), "8M"])
        images[who] = (img, data)
    strata_io(images["s"][0], "write 1M 4M 0x11", "discard 2M 2M",
              "zero 3M 3M", "write 7M 8k 0x22", "zero 7M 4k")
    qemu_io(images["q"][0], "write -P 0x11 1M 4M", "discard 2M 2M",
            "write -z 3M 3M", "write -P 0x22 7M 8k", "write -z 7M 4k")
    (si, sd), (qi, qd) = images["s"], images["q"]
    qemu_check(si)
    run(["qemu-img", "compare", str(si), str(qi)])
    assert sd.read_bytes() == qd.read_bytes()

    def qmap(img):
        return run(["qemu-img", "map", "--output=json", str(img)]).stdout
    assert qmap(si) == qmap(qi)
    if raw == "on":
        guest = tmp_path / "guest.raw"
        run(["qemu-img", "convert", "-O", "raw", str(si), str(guest)])
        assert sd.read_bytes() == guest.read_bytes()


def test_info_and_map_match_qemu(tmp_path):
    img, data = tmp_path / "i.qcow2", tmp_path / "i.data"
    run(["qemu-img", "create", "-q", "-f", "qcow2", "-o",
         f"data_file={data},data_file_raw=on", str(img), "2M"])
    qemu_io(img, "write -P 0x5a 64k 64k", "write -z 1M 64k")
    for cmd in (["info", "--output=json"], ["info"],
                ["map", "--output=json"], ["map"]):
        ours = run([binary("strata-img"), *cmd, str(img)]).stdout
        theirs = run(["qemu-img", *cmd, str(img)]).stdout
        if cmd[0] == "info":
            # Allocated sizes are the file system's; the rest must match.
            ours = [ln for ln in ours.splitlines() if "size" not in ln]
            theirs = [ln for ln in theirs.splitlines() if "size" not in ln]
        assert ours == theirs, cmd
    info = json.loads(run([binary("strata-img"), "info", "--output=json",
                           str(img)]).stdout)
    spec = info["format-specific"]["data"]
    assert spec["data-file"] == str(data) and spec["data-file-raw"] is True


def test_open_errors_and_amend(tmp_path):
    simg = binary("strata-img")
    img, data = tmp_path / "a.qcow2", tmp_path / "a.data"
    run(["qemu-img", "create", "-q", "-f", "qcow2", "-o",
         f"data_file={data}", str(img), "1M"])
    qemu_io(img, "write -P 0x61 0 64k")
    opts = f"driver=qcow2,data-file.filename={data},file.filename={img}"

    def both(*args):
        ours = run([simg, *args], check=False)
        theirs = run(["qemu-img", *args], check=False)
        assert ours.returncode == theirs.returncode, args
        assert (ours.stderr.replace("strata-img:", "qemu-img:") ==
                theirs.stderr), args
        return ours

    # A missing data file, then none named in the header at all.
    run([simg, "amend", "-o", "data_file=nonexistent", str(img)])
    both("check", str(img))
    both("check", "--image-opts", opts)
    run([simg, "amend", "-o", "data_file=", "--image-opts", opts])
    both("check", str(img))
    both("compare", "--image-opts", opts, opts)
    # info looks at the metadata only (the data file is not opened).
    ours = run([simg, "info", "--output=json", str(img)]).stdout
    assert "data-file\"" not in ours and "data-file-raw" in ours
    run([simg, "amend", "-o", f"data_file={data}", "--image-opts", opts])
    qemu_io(img, "read -P 0x61 0 64k")
    # Refused as QEMU refuses.
    both("amend", "-o", "compat=0.10", str(img))
    both("amend", "-o", "data_file_raw=on", str(img))
    both("snapshot", "-c", "s1", str(img))
    plain = tmp_path / "p.qcow2"
    run(["qemu-img", "create", "-q", "-f", "qcow2", str(plain), "1M"])
    both("amend", "-o", "data_file=x", str(plain))
    both("check", "--image-opts",
         f"driver=qcow2,data-file.filename={data},file.filename={plain}")
    src = tmp_path / "c.raw"
    run(["qemu-img", "create", "-q", "-f", "raw", str(src), "1M"])
    qemu_io(src, "write -P 0x63 0 64k", fmt="raw")
    ours = run([simg, "convert", "-c", "-O", "qcow2", "-o",
                f"data_file={tmp_path / 'c.data'}", str(src),
                str(tmp_path / "c.qcow2")], check=False)
    assert ours.returncode == 1
    assert "Operation not supported" in ours.stderr
    qemu_check(img)


def test_stratad_serves_data_file_images(tmp_path):
    """stratad opens the data file the header names, or one given as
    the data-file child by node name; a python3 nbd client writes and
    reads; qemu-io then sees the same content in the files."""
    require("qemu-io")
    nbd = pytest.importorskip("nbd")
    a, a_data = tmp_path / "a.qcow2", tmp_path / "a.data"
    b, b_data = tmp_path / "b.qcow2", tmp_path / "b.data"
    for img, data, raw in ((a, a_data, "off"), (b, b_data, "on")):
        run(["qemu-img", "create", "-q", "-f", "qcow2", "-o",
             f"data_file={data},data_file_raw={raw}", str(img), "4M"])
    qemu_io(a, "write -P 0x42 0 128k")
    blockdevs = [
        {"driver": "qcow2", "node-name": "a",
         "file": {"driver": "file", "filename": str(a)}},
        {"driver": "file", "node-name": "bdata", "filename": str(b_data)},
        {"driver": "qcow2", "node-name": "b", "data-file": "bdata",
         "file": {"driver": "file", "filename": str(b)}},
    ]
    exports = [{"type": "nbd", "id": "ea", "node-name": "a",
                "writable": True},
               {"type": "nbd", "id": "eb", "node-name": "b",
                "writable": True}]
    server = start_server("strata", tmp_path, blockdevs, exports)
    try:
        for name in ("a", "b"):
            h = nbd.NBD()
            h.connect_uri(server.uri(name))
            if name == "a":
                assert h.pread(4096, 64 << 10) == b"\x42" * 4096
            h.pwrite(b"\x77" * (64 << 10), MiB, nbd.CMD_FLAG_FUA)
            h.zero(64 << 10, 2 * MiB)
            assert h.pread(64 << 10, MiB) == b"\x77" * (64 << 10)
            assert h.pread(4096, 2 * MiB) == bytes(4096)
            h.shutdown()
    finally:
        server.stop()
    for img in (a, b):
        qemu_check(img)
        qemu_io(img, "read -P 0x77 1M 64k", "read -P 0 2M 64k")
    qemu_io(a, "read -P 0x42 0 64k")
    # The raw data file is the disk.
    guest = tmp_path / "b.raw"
    run(["qemu-img", "convert", "-O", "raw", str(b), str(guest)])
    assert b_data.read_bytes() == guest.read_bytes()
