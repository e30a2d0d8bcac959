# SPDX-License-Identifier: BSD-3-Clause
"""One allocation: query-block-allocation and /metrics report the same
number for a node, also right after stratad starts on an image that
already holds data, before any write (the number comes from the image's
metadata then, not from writes)."""
import os

from acct_util import parse_metrics, scrape_metrics
from conftest import binary
from qcow2_util import qemu_img_create, qemu_io as qemu_io_image
from qmp_util import Daemon, wait_for_path
from thinp_util import MiB, qemu_io

NODES = ("proto0", "fmt0")


def start(tmp_path, image, name):
    """stratad with proto0 (file) under fmt0 (qcow2), fmt0 exported over
    NBD, and /metrics on a unix socket."""
    nbd_sock = os.path.join(str(tmp_path), f"{name}-nbd.sock")
    metrics_sock = os.path.join(str(tmp_path), f"{name}-metrics.sock")
    d = Daemon(binary("stratad"), tmp_path, [
        "--blockdev", f"driver=file,node-name=proto0,filename={image}",
        "--blockdev", "driver=qcow2,node-name=fmt0,file=proto0",
        "--nbd-server", f"addr.type=unix,addr.path={nbd_sock}",
        "--export", "type=nbd,id=e0,node-name=fmt0,writable=on",
        "--metrics", f"addr.type=unix,addr.path={metrics_sock}",
    ], name=name)
    try:
        wait_for_path(nbd_sock, d.proc)
        wait_for_path(metrics_sock, d.proc)
    except Exception:
        d.stop()
        raise
    d.nbd_uri = f"nbd+unix:///fmt0?socket={nbd_sock}"
    d.metrics_sock = metrics_sock
    return d


def allocations(d):
    """{node: allocation} as QMP and as /metrics report it; both must
    agree, node by node."""
    qmp = d.connect()
    m = parse_metrics(scrape_metrics(d.metrics_sock))
    out = {}
    for node in NODES:
        q = qmp.cmd("query-block-allocation", {"node-name": node})[0]
        metric = m[("strata_node_allocation_bytes",
                    frozenset({("node", node)}))]
        assert metric == q["allocation"], (node, metric, q)
        out[node] = q["allocation"]
    # A format node reports the host space of the file it lives in.
    assert out["fmt0"] == out["proto0"]
    return out["proto0"]


def test_allocation_same_in_qmp_and_metrics_across_restart(tmp_path):
    image = str(tmp_path / "img.qcow2")
    qemu_img_create(image, "64M")
    qemu_io_image(image, "write -P 0x11 0 1M")
    with_data = os.path.getsize(image)

    d = start(tmp_path, image, "a")
    try:
        # Nothing written yet through stratad: the image's end is known
        # from its metadata alone.
        first = allocations(d)
        assert first == with_data > MiB
        qemu_io(d.nbd_uri, "write -P 0x22 8M 2M", "flush")
        grown = allocations(d)
        assert grown >= first + 2 * MiB
    finally:
        d.stop()

    d = start(tmp_path, image, "b")
    try:
        assert allocations(d) == grown == os.path.getsize(image)
    finally:
        d.stop()
