# SPDX-License-Identifier: BSD-3-Clause
"""Sizes as QEMU reports them: a protocol node counts whole 512-byte
sectors, so a file whose size is not a multiple of 512 reports the size
rounded up everywhere QEMU reports one -- query-named-block-nodes,
qemu-img info and map (the tail is a zero run), the NBD export (see
test_nbd_clients.py)."""
import json

import pytest

from conftest import binary
from img_util import qimg, simg
from qmp_util import Daemon

SIZES = [196616, 1000, 511, 513, 4096 + 7]


def make(tmp_path, size):
    path = tmp_path / f"odd-{size}.raw"
    path.write_bytes(bytes((i * 7) & 0xff for i in range(size)))
    return path


@pytest.mark.parametrize("size", SIZES)
def test_info_and_map_match_qemu_img(tmp_path, size):
    path = make(tmp_path, size)
    ours = json.loads(simg("info", "--output=json", path).stdout)
    theirs = json.loads(qimg("info", "--output=json", path).stdout)
    assert ours["virtual-size"] == theirs["virtual-size"] == \
        (size + 511) // 512 * 512
    assert json.loads(simg("map", "--output=json", path).stdout) == \
        json.loads(qimg("map", "--output=json", path).stdout)


def node_sizes(prog, tmp_path, path, name):
    d = Daemon(prog, tmp_path, [
        "--blockdev", f"driver=file,node-name=f0,filename={path}",
        "--blockdev", "driver=raw,node-name=r0,file=f0"], name=name)
    try:
        nodes = d.connect().cmd("query-named-block-nodes")
        return {n["node-name"]: n["image"]["virtual-size"] for n in nodes}
    finally:
        d.stop()


@pytest.mark.parametrize("size", [196616, 1000])
def test_named_block_nodes_sizes_match_qsd(tmp_path, size):
    path = make(tmp_path, size)
    ours = node_sizes(binary("stratad"), tmp_path, path, "strata")
    theirs = node_sizes("qemu-storage-daemon", tmp_path, path, "qsd")
    assert ours == theirs
    assert ours["f0"] == (size + 511) // 512 * 512
    assert path.stat().st_size == size    # reporting changes nothing
