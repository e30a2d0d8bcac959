# SPDX-License-Identifier: BSD-3-Clause
"""Image locking: strata and QEMU each see the other as "another process
using the image", at QEMU's lock bytes (qemu-compat.md section 5)."""
import pytest

from conftest import binary, require, run
from block_util import LockHolder, blockdev_args, lock_bytes
from qmp_util import Daemon

QSD = "qemu-storage-daemon"


@pytest.fixture
def holders():
    started = []

    def start(binary_path, args, path):
        h = LockHolder(binary_path, args, path)
        started.append(h)
        return h

    yield start
    for h in started:
        h.stop()


def make_image(tmp_path, fmt):
    path = str(tmp_path / f"img.{fmt}")
    run(["qemu-img", "create", "-q", "-f", "qcow2" if fmt == "qcow2" else "raw",
         path, "1M"])
    return path


@pytest.mark.parametrize("read_only", [False, True])
def test_same_lock_bytes_as_qsd(tmp_path, holders, read_only):
    """qcow2 over file: the same bytes as qemu-storage-daemon with the
    same --blockdev arguments.  (QEMU takes locks only for permissions a
    user needs, so raw nodes without an export hold none there; raw's
    bytes are checked against qemu-io's in the unit tests.)"""
    require(QSD)
    path = make_image(tmp_path, "qcow2")
    args = blockdev_args(path, "qcow2", read_only=read_only)
    q = holders(QSD, args, path)
    want = lock_bytes(path)
    assert want == ([100, 201, 203] if read_only else [100, 101, 103, 201, 203])
    q.stop()
    holders(binary("stratad"), args, path)
    assert lock_bytes(path) == want


def test_force_share_lock_bytes(tmp_path, holders):
    path = make_image(tmp_path, "qcow2")
    holders(binary("stratad"), blockdev_args(path, "qcow2", read_only=True,
                                             force_share=True), path)
    assert lock_bytes(path) == [100]


def test_qemu_holds_strata_refused(tmp_path, holders):
    require(QSD)
    path = make_image(tmp_path, "qcow2")
    holders(QSD, blockdev_args(path, "qcow2"), path)
    img = binary("strata-img")
    p = run([img, "info", path], check=False)
    assert p.returncode != 0
    assert 'Failed to get shared "write" lock' in p.stderr
    assert f"Is another process using the image [{path}]?" in p.stderr
    p = run([img, "info", "-U", path])
    assert "file format: qcow2" in p.stdout


def test_strata_holds_qemu_refused(tmp_path, holders):
    path = make_image(tmp_path, "qcow2")
    holders(binary("stratad"), blockdev_args(path, "qcow2"), path)
    p = run(["qemu-img", "info", path], check=False)
    assert p.returncode != 0
    assert 'Failed to get shared "write" lock' in p.stderr
    assert f"Is another process using the image [{path}]?" in p.stderr
    p = run(["qemu-io", "-f", "qcow2", "-c", "read 0 512", path], check=False)
    assert p.returncode != 0
    assert 'Failed to get "write" lock' in p.stderr
    p = run(["qemu-img", "info", "-U", path])
    assert "file format: qcow2" in p.stdout


def test_strata_reader_blocks_qemu_writer(tmp_path, holders):
    path = make_image(tmp_path, "qcow2")
    holders(binary("stratad"), blockdev_args(path, "qcow2", read_only=True), path)
    p = run(["qemu-io", "-f", "qcow2", "-c", "read 0 512", path], check=False)
    assert p.returncode != 0
    assert 'Failed to get "write" lock' in p.stderr
    # Other readers are fine.
    run(["qemu-io", "-r", "-f", "qcow2", "-c", "read 0 512", path])


def export_args(tmp_path, path, fmt, node, writable, read_only=False):
    sock = str(tmp_path / "nbd.sock")
    args = blockdev_args(path, fmt, read_only=read_only)
    return args + ["--nbd-server", f"addr.type=unix,addr.path={sock}",
                   "--export", f"type=nbd,id=e0,node-name={node}"
                               + (",writable=on" if writable else "")]


EXPORT_CASES = [
    # (format, exported node, writable export, read-only nodes, bytes)
    ("raw", "fmt0", True, False, [100, 101, 203]),
    ("raw", "fmt0", False, False, [100, 203]),
    ("raw", "fmt0", False, True, [100, 203]),
    ("file", "f0", True, False, [100, 101, 203]),
    ("qcow2", "fmt0", True, False, [100, 101, 103, 201, 203]),
    ("qcow2", "fmt0", False, True, [100, 201, 203]),
]


@pytest.mark.parametrize("fmt,node,writable,read_only,want", EXPORT_CASES)
def test_export_lock_bytes_as_qsd(tmp_path, holders, fmt, node, writable,
                                  read_only, want):
    """An NBD export is a user of its node: it reads, writes when
    writable, and lets nobody resize (byte 203), through raw down to the
    file; qcow2 already locks more than that."""
    require(QSD)
    path = make_image(tmp_path, "qcow2" if fmt == "qcow2" else "raw")
    args = export_args(tmp_path, path, fmt, node, writable, read_only)
    q = holders(QSD, args, path)
    assert lock_bytes(path) == want
    q.stop()
    holders(binary("stratad"), args, path)
    assert lock_bytes(path) == want


def test_unused_raw_takes_no_locks(tmp_path):
    """Without a user, a raw node and its file need no permission: qsd
    holds no lock byte, and neither does stratad."""
    require(QSD)
    path = make_image(tmp_path, "raw")
    for i, prog in enumerate((QSD, binary("stratad"))):
        with Daemon(prog, tmp_path, blockdev_args(path, "raw"),
                    name=f"d{i}") as d:
            d.connect().cmd("query-named-block-nodes")
            assert lock_bytes(path) == []


def test_raw_writers_share(tmp_path, holders):
    """QEMU's raw format does not forbid other writers, even under a
    writable export; neither do we.  Only resizing is refused."""
    path = make_image(tmp_path, "raw")
    holders(binary("stratad"), export_args(tmp_path, path, "raw", "fmt0", True),
            path)
    run(["qemu-io", "-f", "raw", "-c", "write 0 512", path])
    p = run(["qemu-img", "resize", "-f", "raw", path, "2M"], check=False)
    assert p.returncode != 0
    assert 'Failed to get "resize" lock' in p.stderr
