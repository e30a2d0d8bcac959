# SPDX-License-Identifier: BSD-3-Clause
"""Node accounting keeps the origins of requests apart: what a client
wrote through an export, and the metadata the qcow2 driver wrote for it,
are counted separately on the same file node (and job I/O would be a
third origin).  Seen through /metrics with a real client (qemu-io over
NBD)."""
from acct_util import parse_metrics, promtool_check, scrape_metrics
from test_thinp_allocation_metrics import start
from qcow2_util import qemu_img_create
from thinp_util import MiB, qemu_io


def origin(m, node, op, who, what="bytes_total"):
    key = (f"strata_node_origin_{what}",
           frozenset({("node", node), ("op", op), ("origin", who)}))
    return m[key]


def total(m, node, op, what="bytes_total"):
    return m[(f"strata_node_{what}", frozenset({("node", node), ("op", op)}))]


def test_client_and_metadata_origins(tmp_path):
    image = str(tmp_path / "img.qcow2")
    qemu_img_create(image, "64M")
    d = start(tmp_path, image, "origin")
    try:
        before = parse_metrics(scrape_metrics(d.metrics_sock))
        # Fresh clusters: the qcow2 driver allocates, so it writes L2 and
        # refcount tables to the file node as well as the data.
        qemu_io(d.nbd_uri, "write -P 0x5a 0 2M")
        qemu_io(d.nbd_uri, "read -P 0x5a 0 2M")
        text = scrape_metrics(d.metrics_sock)
        assert promtool_check(text, tmp_path).returncode == 0
        m = parse_metrics(text)

        def grew(node, op, who):
            return origin(m, node, op, who) - origin(before, node, op, who)

        # The format node sees the client's bytes exactly.
        assert grew("fmt0", "write", "client") == 2 * MiB
        assert grew("fmt0", "read", "client") >= 2 * MiB
        assert grew("fmt0", "write", "metadata") == 0
        # The file node gets the client's data plus the driver's tables.
        assert grew("proto0", "write", "client") >= 2 * MiB
        assert grew("proto0", "write", "metadata") > 0
        assert grew("proto0", "read", "job") == 0
        assert grew("proto0", "write", "job") == 0
        # Origins add up to the node's totals.
        for node in ("fmt0", "proto0"):
            for op in ("read", "write"):
                assert sum(origin(m, node, op, who)
                           for who in ("client", "job", "metadata")) == \
                    total(m, node, op)
                assert sum(origin(m, node, op, who, "requests_total")
                           for who in ("client", "job", "metadata")) == \
                    total(m, node, op, "requests_total")
    finally:
        d.stop()
