# SPDX-License-Identifier: BSD-3-Clause
"""query-blockstats with exact numbers: a known workload from a raw NBD
client (including out-of-range, unaligned, read-only and injected-error
requests) and from qemu-io, counted per export and per node."""
import time

import pytest

from acct_util import (AcctDaemon, IMAGE_SIZE, READ_ERR_OFFSET,
                       WRITE_ERR_OFFSET, nbd_ok, qemu_io)
from conftest import require, run
from nbd_util import (CMD_CACHE, CMD_FLUSH, CMD_READ, CMD_TRIM, CMD_WRITE,
                      CMD_WRITE_ZEROES)

EIO, EINVAL = 5, 22

COUNTERS = [
    "rd_bytes", "wr_bytes", "unmap_bytes", "rd_operations", "wr_operations",
    "flush_operations", "unmap_operations", "failed_rd_operations",
    "failed_wr_operations", "failed_flush_operations",
    "failed_unmap_operations", "invalid_rd_operations",
    "invalid_wr_operations", "invalid_flush_operations",
    "invalid_unmap_operations", "rd_merged", "wr_merged", "unmap_merged",
]


def counters(stats):
    return {k: stats[k] for k in COUNTERS}


def expect(**kw):
    d = dict.fromkeys(COUNTERS, 0)
    d.update(kw)
    return d


@pytest.fixture
def daemon(stratad_bin, tmp_path):
    d = AcctDaemon(stratad_bin, tmp_path)
    yield d
    d.stop()


def raw_workload(d):
    """The known workload; returns nothing, the tests check counters."""
    c = d.nbd("e0")
    assert nbd_ok(c.cmd(CMD_WRITE, 0, 4096, data=b"a" * 4096)) == 0
    assert nbd_ok(c.cmd(CMD_WRITE, 4096, 8192, data=b"b" * 8192)) == 0
    assert nbd_ok(c.cmd(CMD_READ, 0, 4096)) == 0
    # Injected by blkdebug: an I/O error after the request was accepted.
    assert nbd_ok(c.cmd(CMD_READ, READ_ERR_OFFSET, 4096)) == EIO
    assert nbd_ok(c.cmd(CMD_WRITE, WRITE_ERR_OFFSET, 512,
                        data=b"c" * 512)) == EIO
    # Out of range: rejected before any I/O (invalid).
    assert nbd_ok(c.cmd(CMD_READ, IMAGE_SIZE - 100, 200)) == EINVAL
    assert nbd_ok(c.cmd(CMD_WRITE, 2 * IMAGE_SIZE, 512,
                        data=b"d" * 512)) == EINVAL
    # Write-zeroes counts as a write, trim as unmap.
    assert nbd_ok(c.cmd(CMD_WRITE_ZEROES, 8192, 65536)) == 0
    assert nbd_ok(c.cmd(CMD_TRIM, 0, 4096)) == 0
    assert nbd_ok(c.cmd(CMD_FLUSH)) == 0
    # Not counted at export level (no data for the client), but the node
    # reads what it caches.
    assert nbd_ok(c.cmd(CMD_CACHE, 0, 4096)) == 0
    # NBD has no alignment rule (minimum block size 1): an unaligned read
    # is a valid request.
    assert nbd_ok(c.cmd(CMD_READ, 1, 100)) == 0
    c.close()

    ro = d.nbd("e1")
    # Writes and trims on a read-only export are invalid.
    assert nbd_ok(ro.cmd(CMD_WRITE, 0, 512, data=b"e" * 512)) == EINVAL
    assert nbd_ok(ro.cmd(CMD_TRIM, 0, 512)) == EINVAL
    assert nbd_ok(ro.cmd(CMD_READ, 0, 512)) == 0
    ro.close()


def test_export_level_exact_counts(daemon):
    raw_workload(daemon)
    e0 = daemon.export_stats("e0")
    assert e0["node-name"] == "n0"
    assert counters(e0["stats"]) == expect(
        rd_bytes=4196, rd_operations=2, failed_rd_operations=1,
        invalid_rd_operations=1,
        wr_bytes=4096 + 8192 + 65536, wr_operations=3,
        failed_wr_operations=1, invalid_wr_operations=1,
        unmap_bytes=4096, unmap_operations=1, flush_operations=1)
    assert e0["stats"]["wr_highest_offset"] == 8192 + 65536
    assert e0["stats"]["account_invalid"] is True
    assert e0["stats"]["account_failed"] is True
    assert e0["stats"]["idle_time_ns"] >= 0
    # QEMU's shape: the export's node, its file child as "parent".
    assert e0["parent"]["node-name"] == "dbg"
    assert e0["parent"]["parent"]["node-name"] == "f0"
    assert e0["parent"]["parent"]["driver-specific"] == {
        "discard-bytes-ok": 4096, "discard-nb-ok": 1, "driver": "file",
        "discard-nb-failed": 0}
    assert list(e0) == ["device", "parent", "stats", "node-name"]

    e1 = daemon.export_stats("e1")
    assert counters(e1["stats"]) == expect(
        rd_bytes=512, rd_operations=1, invalid_wr_operations=1,
        invalid_unmap_operations=1)


def test_node_level_exact_counts(daemon):
    raw_workload(daemon)
    # What reached the nodes: no invalid request, the cache read, e1's
    # read; the injected errors fail at dbg and never reach f0.
    reads = dict(rd_bytes=4096 + 4096 + 100 + 512, rd_operations=4)
    writes = dict(wr_bytes=4096 + 8192 + 65536, wr_operations=3)
    common = dict(unmap_bytes=4096, unmap_operations=1, flush_operations=1,
                  **reads, **writes)
    for node in ("n0", "dbg"):
        st = daemon.node_stats(node)["stats"]
        assert counters(st) == expect(failed_rd_operations=1,
                                      failed_wr_operations=1, **common), node
    f0 = daemon.node_stats("f0")
    assert counters(f0["stats"]) == expect(**common)
    assert list(f0) == ["stats", "node-name", "driver-specific"]
    n0 = daemon.node_stats("n0")
    assert list(n0) == ["parent", "stats", "node-name"]
    assert n0["stats"]["wr_highest_offset"] == 8192 + 65536


def test_qemu_io_workload(daemon):
    require("qemu-io")
    qemu_io("-f", "raw", "-c", "write -P 7 0 64k", "-c", "write 64k 4k",
            "-c", "read -P 7 0 64k", "-c", "flush", daemon.uri("e0"))
    st = daemon.export_stats("e0")["stats"]
    # qemu-io flushes once more when it closes the image.
    assert counters(st) == expect(wr_bytes=65536 + 4096, wr_operations=2,
                                  rd_bytes=65536, rd_operations=1,
                                  flush_operations=2)
    assert st["wr_highest_offset"] == 65536 + 4096
    f0 = daemon.node_stats("f0")["stats"]
    assert f0["wr_operations"] == 2 and f0["wr_bytes"] == 65536 + 4096
    assert f0["flush_operations"] == 2


def test_account_switches_off(stratad_bin, tmp_path):
    """account_invalid/account_failed off: the requests are still counted
    as invalid/failed, but add no latency and no idle-time reset."""
    d = AcctDaemon(stratad_bin, tmp_path,
                   "stats-account-invalid=off,stats-account-failed=off")
    try:
        c = d.nbd("e0")
        assert nbd_ok(c.cmd(CMD_READ, READ_ERR_OFFSET, 512)) == EIO
        assert nbd_ok(c.cmd(CMD_READ, IMAGE_SIZE, 1)) == EINVAL
        c.close()
        st = d.export_stats("e0")["stats"]
        assert st["failed_rd_operations"] == 1
        assert st["invalid_rd_operations"] == 1
        assert st["rd_operations"] == 0
        assert st["rd_total_time_ns"] == 0
        assert "idle_time_ns" not in st
        assert st["account_invalid"] is False
        assert st["account_failed"] is False
        assert all(t["max_rd_latency_ns"] == 0 for t in st["timed_stats"])
        # The node below has the defaults: the failure took time there.
        n0 = d.node_stats("n0")["stats"]
        assert n0["failed_rd_operations"] == 1
        assert n0["rd_total_time_ns"] > 0 and "idle_time_ns" in n0
    finally:
        d.stop()


def test_account_switches_on(daemon):
    c = daemon.nbd("e0")
    assert nbd_ok(c.cmd(CMD_READ, IMAGE_SIZE, 1)) == EINVAL
    c.close()
    st = daemon.export_stats("e0")["stats"]
    # An invalid request touches idle time only, never latency.
    assert "idle_time_ns" in st and st["rd_total_time_ns"] == 0
    c = daemon.nbd("e0")
    assert nbd_ok(c.cmd(CMD_READ, READ_ERR_OFFSET, 512)) == EIO
    c.close()
    st = daemon.export_stats("e0")["stats"]
    assert st["rd_total_time_ns"] > 0
    assert st["timed_stats"][0]["max_rd_latency_ns"] == st["rd_total_time_ns"]


def test_idle_time_grows_and_resets(daemon):
    st = daemon.export_stats("e0")["stats"]
    assert "idle_time_ns" not in st            # before the first I/O
    c = daemon.nbd("e0")
    assert nbd_ok(c.cmd(CMD_READ, 0, 512)) == 0
    first = daemon.export_stats("e0")["stats"]["idle_time_ns"]
    time.sleep(0.3)
    second = daemon.export_stats("e0")["stats"]["idle_time_ns"]
    assert second >= first + 300_000_000
    assert nbd_ok(c.cmd(CMD_READ, 0, 512)) == 0
    third = daemon.export_stats("e0")["stats"]["idle_time_ns"]
    assert third < second - 250_000_000
    c.close()


def test_windows_roll_over(stratad_bin, tmp_path):
    d = AcctDaemon(stratad_bin, tmp_path,
                   "stats-intervals.0=1,stats-intervals.1=10")
    try:
        c = d.nbd("e0")
        assert nbd_ok(c.cmd(CMD_WRITE, 0, 512, data=b"x" * 512)) == 0
        c.close()
        st = d.export_stats("e0")["stats"]
        lat = st["wr_total_time_ns"]
        short, long_ = st["timed_stats"]
        assert (short["interval_length"], long_["interval_length"]) == (1, 10)
        for w in (short, long_):
            assert w["min_wr_latency_ns"] == w["max_wr_latency_ns"] == lat
            assert w["avg_wr_latency_ns"] == lat
            assert w["p50_wr_latency_ns"] == lat    # clamped to min/max
            assert w["max_rd_latency_ns"] == 0
        # A sample stays in a P-second window for 2/3 P .. 4/3 P.
        time.sleep(1.5)
        short, long_ = d.export_stats("e0")["stats"]["timed_stats"]
        assert short["max_wr_latency_ns"] == 0
        assert short["avg_wr_queue_depth"] == 0
        assert long_["max_wr_latency_ns"] == lat
        assert 0 < long_["avg_wr_queue_depth"] < 1
    finally:
        d.stop()


def test_bad_stats_intervals(stratad_bin, tmp_path):
    d = AcctDaemon(stratad_bin, tmp_path)
    try:
        err = d.qmp.execute("block-export-add", {
            "type": "nbd", "id": "e9", "node-name": "n0", "name": "e9",
            "stats-intervals": [1, 0]})["error"]
        assert err["desc"] == "Invalid interval length: 0"
        err = d.qmp.execute("block-export-add", {
            "type": "nbd", "id": "e9", "node-name": "n0", "name": "e9",
            "stats-intervals": [-1]})["error"]
        # As QEMU says it of any list element out of its range.
        assert err["desc"] == "Parameter 'null' expects uint32_t"
        err = d.qmp.execute("block-export-add", {
            "type": "nbd", "id": "e9", "node-name": "n0", "name": "e9",
            "stats-intervals": [1, "x"]})["error"]
        assert err["desc"] == "Parameter 'stats-intervals[1]' expects uint64"
        d.qmp.cmd("block-export-add", {
            "type": "nbd", "id": "e9", "node-name": "n0", "name": "e9",
            "stats-intervals": [5], "stats-account-failed": False})
        st = d.export_stats("e9")["stats"]
        assert [t["interval_length"] for t in st["timed_stats"]] == [5]
        assert st["account_failed"] is False and st["account_invalid"] is True
    finally:
        d.stop()


def test_wire_format_of_floats(daemon):
    """QEMU prints reals with %.17g: 0, not 0.0."""
    daemon.qmp.send_raw('{"execute": "query-blockstats"}\n')
    line = daemon.qmp.recv_line().decode()
    assert '"avg_rd_queue_depth": 0,' in line
    assert '0.0' not in line


def test_blkdebug_once_and_same_line_on_qsd(stratad_bin, tmp_path):
    """A "once" rule fails one request; the --blockdev line is QEMU's."""
    import json as _json
    import os
    from acct_util import blockdev_json
    from qmp_util import Daemon
    image = os.path.join(str(tmp_path), "once.raw")
    with open(image, "wb") as f:
        f.truncate(IMAGE_SIZE)
    spec = _json.loads(blockdev_json(image))
    spec["file"]["inject-error"] = [{"event": "read_aio", "sector": 0,
                                     "once": True, "immediately": False}]
    line = _json.dumps(spec)
    d = AcctDaemon(stratad_bin, tmp_path, extra=["--blockdev",
                   line.replace('"n0"', '"n1"').replace('"dbg"', '"dbg1"')
                       .replace('"f0"', '"f1"'),
                   "--export", "type=nbd,id=e2,node-name=n1,name=e2"])
    try:
        c = d.nbd("e2")
        assert nbd_ok(c.cmd(CMD_READ, 0, 512)) == EIO
        assert nbd_ok(c.cmd(CMD_READ, 0, 512)) == 0
        c.close()
        st = d.export_stats("e2")["stats"]
        assert (st["failed_rd_operations"], st["rd_operations"]) == (1, 1)
    finally:
        d.stop()
    require("qemu-storage-daemon")
    q = Daemon("qemu-storage-daemon", tmp_path, ["--blockdev", line],
               name="qsd")
    try:
        names = {n["node-name"] for n in
                 q.connect().cmd("query-named-block-nodes")}
        assert {"n0", "dbg", "f0"} <= names
    finally:
        q.stop()


def test_metrics_option_errors(stratad_bin, tmp_path):
    proc = run([stratad_bin, "--metrics", "addr.type=unix"], check=False)
    assert proc.returncode == 1
    assert "--metrics addr.type=unix: Parameter 'path' is missing" in \
        proc.stderr
    proc = run([stratad_bin, "--metrics", "port=9"], check=False)
    assert proc.returncode == 1 and "Parameter 'addr' is missing" in \
        proc.stderr
