# SPDX-License-Identifier: BSD-3-Clause
"""block-latency-histogram-set (QEMU's arguments, bins and errors),
the Prometheus endpoint (promtool, agreement with QMP) and
strata-ctl stats."""
import json

import pytest

from acct_util import (AcctDaemon, READ_ERR_OFFSET, nbd_ok, parse_metrics,
                       promtool_check)
from conftest import require, run
from nbd_util import CMD_FLUSH, CMD_READ, CMD_WRITE
from qmp_util import QmpError

HUGE = 10 ** 12          # 1000 s: no request is that slow


@pytest.fixture
def daemon(stratad_bin, tmp_path):
    d = AcctDaemon(stratad_bin, tmp_path, metrics=True)
    yield d
    d.stop()


def test_histogram_bins(daemon):
    q = daemon.qmp
    q.cmd("block-latency-histogram-set", {"id": "e0", "boundaries": [1, HUGE],
                                          "boundaries-write": [HUGE]})
    c = daemon.nbd("e0")
    for _ in range(3):
        assert nbd_ok(c.cmd(CMD_READ, 0, 512)) == 0
    # A failed request is counted in QEMU's histogram too.
    assert nbd_ok(c.cmd(CMD_READ, READ_ERR_OFFSET, 512)) == 5
    assert nbd_ok(c.cmd(CMD_WRITE, 0, 512, data=b"w" * 512)) == 0
    assert nbd_ok(c.cmd(CMD_FLUSH)) == 0
    c.close()
    st = daemon.export_stats("e0")["stats"]
    # N boundaries, N + 1 bins: [0, b0), [b0, b1), [b1, inf).
    assert st["rd_latency_histogram"] == {"bins": [0, 4, 0],
                                          "boundaries": [1, HUGE]}
    assert st["wr_latency_histogram"] == {"bins": [1, 0],
                                          "boundaries": [HUGE]}
    assert st["flush_latency_histogram"] == {"bins": [0, 1, 0],
                                             "boundaries": [1, HUGE]}
    # Only the id: every histogram is removed.
    q.cmd("block-latency-histogram-set", {"id": "e0"})
    st = daemon.export_stats("e0")["stats"]
    assert not any(k.endswith("_histogram") for k in st)


def test_histogram_on_node(daemon):
    daemon.qmp.cmd("block-latency-histogram-set",
                   {"id": "f0", "boundaries-read": [HUGE]})
    c = daemon.nbd("e0")
    assert nbd_ok(c.cmd(CMD_READ, 0, 512)) == 0
    c.close()
    st = daemon.node_stats("f0")["stats"]
    assert st["rd_latency_histogram"] == {"bins": [1, 0], "boundaries": [HUGE]}
    assert "rd_latency_histogram" not in daemon.export_stats("e0")["stats"]


@pytest.mark.parametrize("args, message", [
    ({"boundaries-read": []}, "Device 'e0' set read boundaries fail"),
    ({"boundaries": [10, 10]}, "Device 'e0' set read boundaries fail"),
    ({"boundaries-write": [5, 3]}, "Device 'e0' set write boundaries fail"),
    ({"boundaries-write": [100], "boundaries-flush": []},
     "Device 'e0' set flush boundaries fail"),
])
def test_histogram_rejects_bad_lists(daemon, args, message):
    q = daemon.qmp
    q.cmd("block-latency-histogram-set", {"id": "e0", "boundaries": [7]})
    with pytest.raises(QmpError) as exc:
        q.cmd("block-latency-histogram-set", dict(id="e0", **args))
    assert exc.value.cls == "GenericError"
    assert exc.value.desc == message
    # Nothing changed: every list is checked before any is installed.
    st = daemon.export_stats("e0")["stats"]
    for kind in ("rd", "wr", "flush"):
        assert st[f"{kind}_latency_histogram"]["boundaries"] == [7]


def test_histogram_errors(daemon):
    q = daemon.qmp
    with pytest.raises(QmpError) as exc:
        q.cmd("block-latency-histogram-set", {"id": "nope", "boundaries": []})
    assert (exc.value.cls, exc.value.desc) == ("DeviceNotFound",
                                               "Device 'nope' not found")
    with pytest.raises(QmpError) as exc:
        q.cmd("block-latency-histogram-set", {"boundaries": [1]})
    assert exc.value.desc == "Parameter 'id' is missing"
    with pytest.raises(QmpError) as exc:
        q.cmd("query-blockstats", {"query-nodes": 1})
    assert exc.value.desc == ("Invalid parameter type for 'query-nodes', "
                              "expected: boolean")


def test_metrics_promtool_and_agreement(daemon, tmp_path):
    require("promtool")
    c = daemon.nbd("e0")
    assert nbd_ok(c.cmd(CMD_WRITE, 0, 4096, data=b"m" * 4096)) == 0
    assert nbd_ok(c.cmd(CMD_READ, 0, 4096)) == 0
    assert nbd_ok(c.cmd(CMD_READ, READ_ERR_OFFSET, 512)) == 5
    assert nbd_ok(c.cmd(CMD_READ, 1 << 21, 1)) == 22
    c.close()
    daemon.qmp.cmd("block-set-write-threshold",
                   {"node-name": "f0", "write-threshold": 524288})
    text = daemon.scrape()
    proc = promtool_check(text, tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    m = parse_metrics(text)

    def get(name, **labels):
        return m[(name, frozenset(labels.items()))]

    e0 = daemon.export_stats("e0")["stats"]
    ex = dict(export="e0", node="n0")
    assert get("strata_export_requests_total", op="read", **ex) == \
        e0["rd_operations"] == 1
    assert get("strata_export_bytes_total", op="write", **ex) == \
        e0["wr_bytes"] == 4096
    assert get("strata_export_failed_requests_total", op="read", **ex) == 1
    assert get("strata_export_invalid_requests_total", op="read", **ex) == 1
    assert get("strata_export_request_time_seconds_total", op="write",
               **ex) == pytest.approx(e0["wr_total_time_ns"] / 1e9)
    # The histogram counts the same requests (failed ones included, as
    # account_failed is on).
    assert get("strata_export_latency_seconds_count", op="read", **ex) == 2
    f0 = daemon.node_stats("f0")["stats"]
    assert get("strata_node_requests_total", op="read", node="f0") == \
        f0["rd_operations"] == 1
    assert get("strata_node_capacity_bytes", node="n0") == 1 << 20
    assert get("strata_node_allocation_bytes", node="f0") == 4096
    assert get("strata_node_write_threshold_bytes", node="f0") == 524288
    assert get("strata_node_physical_bytes", node="f0") >= 4096


def test_strata_ctl_stats_json(daemon, strata_ctl):
    c = daemon.nbd("e0")
    assert nbd_ok(c.cmd(CMD_WRITE, 0, 4096, data=b"j" * 4096)) == 0
    assert nbd_ok(c.cmd(CMD_READ, 0, 4096)) == 0
    c.close()
    out = run([strata_ctl, "-s", daemon.qmp_path, "--json", "stats",
               "--nodes", "--interval", "0.2"]).stdout
    report = json.loads(out)
    by = {(e["level"], e["name"]): e for e in report}
    assert set(by) == {("export", "e0"), ("export", "e1"), ("node", "n0"),
                       ("node", "dbg"), ("node", "f0")}
    e0 = by[("export", "e0")]
    assert e0["stats"]["wr_operations"] == 1
    assert e0["stats"]["rd_bytes"] == 4096
    # Idle while sampling: every rate is 0.
    assert set(e0["rates"].values()) == {0}
    assert 0.15 < e0["interval"] < 1.0
    assert by[("node", "f0")]["stats"]["wr_bytes"] == 4096


def test_strata_ctl_stats_table_watch(daemon, strata_ctl):
    out = run([strata_ctl, "-s", daemon.qmp_path, "stats", "--watch", "0.2",
               "--count", "2"]).stdout
    tables = [t for t in out.split("\n\n") if t.strip()]
    assert len(tables) == 2
    for t in tables:
        lines = t.splitlines()
        assert lines[0].split()[:4] == ["LEVEL", "NAME", "READ/s", "WRITE/s"]
        assert [l.split()[1] for l in lines[1:]] == ["e0", "e1"]
