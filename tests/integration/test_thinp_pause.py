# SPDX-License-Identifier: BSD-3-Clause
"""Export error policy (werror/rerror): a failing request is held, the
export pauses with one BLOCK_IO_ERROR, later requests queue behind it,
and cont / block-export-resume retry in order.  Faults come from the
blkdebug filter (ENOSPC or EIO, once per rule), so these tests need no
loop device and run in a few seconds."""
import errno
import os
import signal
import time

import nbd
import pytest

from qmp_util import QmpError
from thinp_pause_util import (EIO, ENOSPC, MiB, PausableDaemon, aio_flush,
                              aio_read, aio_write, blkdebug_blockdev, client,
                              enospc_once, io_errors, pattern, raw_image)
from thinp_util import drain_events

HOLD_CHECK = 0.4    # seconds a held request must stay unanswered


@pytest.fixture
def daemons():
    started = []
    yield started
    for d in reversed(started):
        d.stop()


def start(tmp_path, daemons, rules, export_opts="", fmt="raw"):
    image = raw_image(tmp_path)
    d = PausableDaemon(tmp_path, [
        "--blockdev", blkdebug_blockdev(image, rules, fmt),
        "--export", "type=nbd,id=e0,node-name=fmt0,name=disk,writable=on"
                    + ("," + export_opts if export_opts else "")])
    daemons.append(d)
    return d


def test_enospc_write_is_held_until_cont(tmp_path, daemons):
    d = start(tmp_path, daemons, enospc_once())
    e = d.export("e0")
    assert (e["werror"], e["rerror"], e["io-status"], e["paused"]) == \
        ("enospc", "report", "ok", False)
    h = client(d.uri("disk"))
    w = aio_write(h, pattern(1, 65536), 0)
    assert not w.poll(HOLD_CHECK), "a held write was answered"
    ev = d.qmp.wait_event("BLOCK_IO_ERROR", timeout=5)
    assert ev["data"] == {"device": "e0", "node-name": "fmt0",
                          "operation": "write", "action": "stop",
                          "nospace": True,
                          "reason": "No space left on device"}
    e = d.export("e0")
    assert e["paused"] is True and e["io-status"] == "nospace"
    assert e["held-requests"] == 1 and e["pauses"] == 1
    assert e["io-error"] == {"operation": "write",
                             "reason": "No space left on device"}
    d.qmp.cmd("cont")
    w.wait()
    assert w.error is None
    e = d.export("e0")
    assert (e["paused"], e["io-status"], e["held-requests"]) == \
        (False, "ok", 0)
    assert "io-error" not in e
    assert h.pread(65536, 0) == pattern(1, 65536)
    # Counted once, when it completed, and not as failed.
    st = [s for s in d.qmp.cmd("query-blockstats") if s["device"] == "e0"][0]
    assert st["stats"]["wr_operations"] == 1
    assert st["stats"]["failed_wr_operations"] == 0
    # Its latency includes the hold (at least most of HOLD_CHECK).
    assert st["stats"]["wr_total_time_ns"] >= 0.75 * HOLD_CHECK * 1e9, st
    h.shutdown()


def test_later_requests_queue_behind_held_ones(tmp_path, daemons):
    d = start(tmp_path, daemons, enospc_once())
    h = client(d.uri("disk"))
    held = aio_write(h, pattern(2, 4096), 0)
    d.qmp.wait_event("BLOCK_IO_ERROR", timeout=5)
    # Sent after the held write: none may run before it.
    other = client(d.uri("disk"))
    read_back = aio_read(other, 4096, 0)
    later = aio_write(other, pattern(3, 4096), 8192)
    flush = aio_flush(other)
    for p in (held, read_back, later, flush):
        assert not p.poll(HOLD_CHECK / 2)
    # The three requests reach the server in their own time under load,
    # and libnbd sends queued requests only while its handle is polled:
    # drive it while waiting (a bounded wait), then check the count.
    deadline = time.monotonic() + 5
    e = d.export("e0")
    while e["queued-requests"] < 3 and time.monotonic() < deadline:
        read_back.poll(0.02)
        e = d.export("e0")
    assert e["held-requests"] == 1 and e["queued-requests"] == 3
    # One event per pause, however many requests wait.
    assert io_errors(drain_events(d.qmp, 0.2)) == []
    d.qmp.cmd("cont")
    for p in (held, read_back, later, flush):
        p.wait()
        assert p.error is None
    assert read_back.data() == pattern(2, 4096)
    assert other.pread(4096, 8192) == pattern(3, 4096)
    h.shutdown()
    other.shutdown()


def test_retry_that_fails_again_pauses_again(tmp_path, daemons):
    d = start(tmp_path, daemons, enospc_once(count=2))
    h = client(d.uri("disk"))
    w = aio_write(h, pattern(4, 4096), 4096)
    d.qmp.wait_event("BLOCK_IO_ERROR", timeout=5)
    d.qmp.cmd("cont")
    ev = d.qmp.wait_event("BLOCK_IO_ERROR", timeout=5)
    assert ev["data"]["action"] == "stop"
    assert not w.poll(HOLD_CHECK)
    assert d.export("e0")["pauses"] == 2
    d.qmp.cmd("block-export-resume", {"id": "e0"})
    w.wait()
    assert w.error is None
    assert h.pread(4096, 4096) == pattern(4, 4096)
    h.shutdown()


def test_werror_report_fails_at_once(tmp_path, daemons):
    d = start(tmp_path, daemons, enospc_once(), "werror=report")
    h = client(d.uri("disk"))
    with pytest.raises(nbd.Error) as exc:
        h.pwrite(pattern(5, 4096), 0)
    assert exc.value.errnum == errno.ENOSPC
    ev = d.qmp.wait_event("BLOCK_IO_ERROR", timeout=5)
    assert (ev["data"]["action"], ev["data"]["nospace"]) == ("report", True)
    assert d.export("e0")["paused"] is False
    h.shutdown()


def test_enospc_policy_reports_other_errors(tmp_path, daemons):
    d = start(tmp_path, daemons, enospc_once(errno_=EIO))
    h = client(d.uri("disk"))
    with pytest.raises(nbd.Error) as exc:
        h.pwrite(pattern(6, 4096), 0)
    assert exc.value.errnum == errno.EIO
    ev = d.qmp.wait_event("BLOCK_IO_ERROR", timeout=5)
    assert ev["data"]["action"] == "report"
    assert ev["data"]["nospace"] is False
    assert ev["data"]["reason"] == "Input/output error"
    h.shutdown()


def test_werror_stop_holds_any_error(tmp_path, daemons):
    d = start(tmp_path, daemons, enospc_once(errno_=EIO), "werror=stop")
    h = client(d.uri("disk"))
    w = aio_write(h, pattern(7, 4096), 0)
    ev = d.qmp.wait_event("BLOCK_IO_ERROR", timeout=5)
    assert (ev["data"]["action"], ev["data"]["nospace"]) == ("stop", False)
    assert d.export("e0")["io-status"] == "failed"
    assert not w.poll(HOLD_CHECK)
    with pytest.raises(QmpError) as exc:
        d.qmp.cmd("block-export-resume", {"id": "nope"})
    assert exc.value.desc == "Export 'nope' is not found"
    d.qmp.cmd("block-export-resume", {"id": "e0"})
    w.wait()
    assert w.error is None
    h.shutdown()


def test_rerror_stop_holds_reads(tmp_path, daemons):
    d = start(tmp_path, daemons,
              enospc_once(errno_=EIO, iotype="read", event="read_aio"),
              "rerror=stop")
    h = client(d.uri("disk"))
    r = aio_read(h, 4096, 0)
    ev = d.qmp.wait_event("BLOCK_IO_ERROR", timeout=5)
    assert (ev["data"]["operation"], ev["data"]["action"]) == ("read", "stop")
    assert not r.poll(HOLD_CHECK)
    d.qmp.cmd("cont")
    r.wait()
    assert r.error is None and r.data() == bytes(4096)
    h.shutdown()


def test_policy_arguments_are_checked(tmp_path, daemons):
    d = start(tmp_path, daemons, [])
    for key, value in (("werror", "ignore"), ("rerror", "enospc")):
        with pytest.raises(QmpError) as exc:
            d.qmp.cmd("block-export-add", {
                "type": "nbd", "id": "x", "node-name": "fmt0", key: value})
        assert exc.value.desc == \
            f"Parameter '{key}' does not accept value '{value}'"
    d.qmp.cmd("block-export-add", {"type": "nbd", "id": "e1",
                                   "node-name": "fmt0", "name": "e1",
                                   "werror": "stop", "rerror": "stop"})
    assert (d.export("e1")["werror"], d.export("e1")["rerror"]) == \
        ("stop", "stop")
    # cont with nothing paused is a no-op, as in QEMU.
    assert d.qmp.cmd("cont") == {}


def test_quit_refuses_while_held_then_force_fails_them(tmp_path, daemons):
    d = start(tmp_path, daemons, enospc_once(count=2))
    h = client(d.uri("disk"))
    w = aio_write(h, pattern(8, 4096), 0)
    d.qmp.wait_event("BLOCK_IO_ERROR", timeout=5)
    with pytest.raises(QmpError) as exc:
        d.qmp.cmd("quit")
    assert exc.value.desc.startswith("1 request is held by 1 paused export")
    assert "'quit' with \"force\": true" in exc.value.desc
    # The refusal changed nothing: still held, still answerable.
    assert d.proc.poll() is None
    assert not w.poll(HOLD_CHECK)
    assert d.export("e0")["held-requests"] == 1
    # A forced quit fails it to the client with the error it had.
    d.qmp.execute("quit", {"force": True})
    w.wait()
    assert isinstance(w.error, nbd.Error) and w.error.errnum == errno.ENOSPC
    assert d.proc.wait(10) == 0
    assert "stopping with 1 request(s) held" in d.text()


def test_sigterm_refused_while_held_second_one_forces(tmp_path, daemons):
    d = start(tmp_path, daemons, enospc_once(count=3))
    h = client(d.uri("disk"))
    w = aio_write(h, pattern(9, 4096), 0)
    d.qmp.wait_event("BLOCK_IO_ERROR", timeout=5)
    d.proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 5
    while "not stopping" not in d.text() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "SIGTERM received while 1 request(s) are held" in d.text()
    assert d.proc.poll() is None
    assert not w.poll(HOLD_CHECK)
    d.proc.send_signal(signal.SIGTERM)
    w.wait()
    assert w.error is not None and w.error.errnum == errno.ENOSPC
    assert d.proc.wait(10) == 0
