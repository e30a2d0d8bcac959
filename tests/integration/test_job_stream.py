# SPDX-License-Identifier: BSD-3-Clause
"""block-stream and the job API against qemu-storage-daemon.

Each test builds the same chain twice (base <- mid <- top, data in every
layer), starts stratad and qemu-storage-daemon with the same command
line on their own copy, sends the same QMP lines, and compares events,
replies and the images afterwards (qemu-img info --backing-chain,
check, compare with a pristine copy of the chain)."""
import json
import os
import shutil
import subprocess
import threading
import time

import nbd
import pytest

from conftest import binary
from qcow2_util import qemu_check, qemu_img_create, qemu_io
from qmp_util import Daemon, QmpError, wait_for_path

MiB = 1 << 20
SIZE = 32 * MiB
KINDS = ["strata", "qsd"]


def make_chain(d):
    d.mkdir(parents=True, exist_ok=True)
    base, mid, top = d / "base.qcow2", d / "mid.qcow2", d / "top.qcow2"
    qemu_img_create(base, SIZE)
    qemu_io(base, "write -P 0x11 0 4M", "write -P 0x12 20M 2M")
    qemu_img_create(mid, SIZE, b=base.name, F="qcow2")
    qemu_io(mid, "write -P 0x21 2M 4M", "write -P 0x22 28M 1M")
    qemu_img_create(top, SIZE, b=mid.name, F="qcow2")
    qemu_io(top, "write -P 0x31 3M 64k")
    # The pristine content of the whole chain, to compare with later.
    subprocess.run(["qemu-img", "convert", "-O", "raw", str(top),
                    str(d / "expected.raw")], check=True)
    return base, mid, top


def blockdevs(d, named):
    """top with its chain: opened from the header (implicit nodes), or
    as the named nodes base, mid and top."""
    if not named:
        return ["--blockdev", json.dumps({
            "driver": "qcow2", "node-name": "top",
            "file": {"driver": "file", "filename": str(d / "top.qcow2")}})]
    out = []
    for name, backing in (("base", None), ("mid", "base"), ("top", "mid")):
        out += ["--blockdev", json.dumps({
            "driver": "qcow2", "node-name": name, "backing": backing,
            "read-only": name != "top",
            "file": {"driver": "file",
                     "filename": str(d / f"{name}.qcow2")}})]
    return out


class Peer:
    def __init__(self, kind, tmp_path, named=False, extra=()):
        self.kind = kind
        self.dir = tmp_path / kind
        make_chain(self.dir)
        prog = binary("stratad") if kind == "strata" else "qemu-storage-daemon"
        self.d = Daemon(prog, tmp_path, blockdevs(self.dir, named) +
                        list(extra), name=kind)
        self.q = self.d.connect()

    def cmd(self, name, args=None):
        try:
            return ("ok", self.q.cmd(name, args))
        except QmpError as e:
            return ("error", e.cls, e.desc)

    def events_until(self, pred, timeout=30):
        out = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ev = self.q.wait_event(timeout=max(0.1, deadline - time.monotonic()))
            if ev is None:
                break
            out.append((ev["event"], ev.get("data")))
            if pred(ev):
                return out
        raise AssertionError(f"{self.kind}: no end event; got {out}")

    def stop(self):
        self.d.stop()


def job_gone(ev):
    return (ev["event"] == "JOB_STATUS_CHANGE" and
            ev["data"]["status"] == "null")


def backing_chain(top):
    out = subprocess.run(["qemu-img", "info", "--output=json",
                          "--backing-chain", "-U", str(top)], check=True,
                         capture_output=True, text=True).stdout
    return [(i["filename"].rsplit("/", 1)[-1],
             i.get("backing-filename"), i.get("backing-filename-format"))
            for i in json.loads(out)]


def same_content(peer):
    r = subprocess.run(["qemu-img", "compare", "-U",
                        str(peer.dir / "top.qcow2"),
                        str(peer.dir / "expected.raw")],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.fixture
def peers(tmp_path):
    made = []

    def start(**kw):
        ps = [Peer(k, tmp_path, **kw) for k in KINDS]
        made.extend(ps)
        return ps
    yield start
    for p in made:
        p.stop()


def test_full_stream(peers):
    results = {}
    for p in peers():
        assert p.cmd("block-stream", {"job-id": "s1", "device": "top"}) == \
            ("ok", {})
        results[p.kind] = p.events_until(job_gone)
        assert p.cmd("query-jobs") == ("ok", [])
        assert p.cmd("query-block-jobs") == ("ok", [])
        nodes = p.cmd("query-named-block-nodes")
        assert nodes[0] == "ok"
        results[p.kind + "-nodes"] = len(nodes[1])
    assert results["strata"] == results["qsd"]
    # The implicit backing nodes are gone with the link: top and its
    # file node are left.
    assert results["strata-nodes"] == results["qsd-nodes"] == 2


def test_full_stream_images(tmp_path, peers):
    ps = peers()
    for p in ps:
        p.cmd("block-stream", {"job-id": "s1", "device": "top"})
        p.events_until(job_gone)
        p.stop()
    for p in ps:
        top = p.dir / "top.qcow2"
        assert backing_chain(top) == [("top.qcow2", None, None)]
        qemu_check(top)
        same_content(p)


def test_partial_stream_base_node_and_backing_file(peers):
    results = {}
    for p in peers(named=True):
        assert p.cmd("block-stream", {"job-id": "s2", "device": "top",
                                      "base-node": "base",
                                      "backing-file": "base.qcow2"}) == \
            ("ok", {})
        results[p.kind] = p.events_until(job_gone)
        p.stop()
        top = p.dir / "top.qcow2"
        results[p.kind + "-chain"] = backing_chain(top)
        qemu_check(top)
        same_content(p)
    assert results["strata"] == results["qsd"]
    assert results["strata-chain"] == results["qsd-chain"]
    assert results["strata-chain"][0] == ("top.qcow2", "base.qcow2", "qcow2")


def test_manual_finalize_and_dismiss(peers):
    results = {}
    for p in peers():
        r = [p.cmd("block-stream", {"job-id": "s1", "device": "top",
                                    "auto-finalize": False,
                                    "auto-dismiss": False})]
        r.append(p.events_until(lambda e: e["event"] == "BLOCK_JOB_PENDING"))
        r.append(p.cmd("job-dismiss", {"id": "s1"}))
        r.append(p.cmd("query-jobs"))
        info = p.cmd("query-block-jobs")
        r.append(info)
        r.append(p.cmd("job-finalize", {"id": "s1"}))
        r.append(p.events_until(
            lambda e: e["event"] == "JOB_STATUS_CHANGE" and
            e["data"]["status"] == "concluded"))
        r.append(p.cmd("job-dismiss", {"id": "s1"}))
        r.append(p.events_until(job_gone))
        r.append(p.cmd("job-dismiss", {"id": "s1"}))
        results[p.kind] = r
    assert results["strata"] == results["qsd"]


def test_pause_resume_speed_cancel(peers):
    results = {}
    for p in peers():
        r = [p.cmd("block-stream", {"job-id": "s1", "device": "top",
                                    "speed": 256 * 1024})]
        r.append(p.cmd("job-pause", {"id": "s1"}))
        r.append(p.cmd("job-pause", {"id": "s1"}))
        info = p.cmd("query-block-jobs")[1][0]
        r.append((info["paused"], info["speed"], info["type"],
                  info["device"]))
        r.append(p.cmd("block-job-resume", {"device": "s1"}))
        r.append(p.cmd("job-resume", {"id": "s1"}))
        r.append(p.cmd("block-job-set-speed", {"device": "s1",
                                               "speed": 128 * 1024}))
        r.append(p.cmd("query-block-jobs")[1][0]["speed"])
        r.append(p.cmd("block-job-set-speed", {"device": "s1", "speed": -1}))
        r.append(p.cmd("block-job-complete", {"device": "s1"}))
        r.append(p.cmd("block-job-cancel", {"device": "s1"}))
        evs = p.events_until(job_gone)
        # Where the cancel caught the job, and whether it reached a pause
        # point before the resume, depend on timing (in QEMU too).
        evs = [e for e in evs[2:] if e[0] != "JOB_STATUS_CHANGE" or
               e[1]["status"] not in ("paused", "running")] + evs[:2]
        r.append([(n, sorted(d)) if n.startswith("BLOCK_JOB") else (n, d)
                  for n, d in evs])
        results[p.kind] = r
    assert results["strata"] == results["qsd"]


def test_cancel_pending(peers):
    results = {}
    for p in peers():
        p.cmd("block-stream", {"job-id": "s3", "device": "top",
                               "auto-finalize": False})
        p.events_until(lambda e: e["event"] == "BLOCK_JOB_PENDING")
        r = [p.cmd("block-job-cancel", {"device": "s3"})]
        r.append(p.events_until(job_gone))
        results[p.kind] = r
    assert results["strata"] == results["qsd"]


@pytest.mark.parametrize("args", [
    {"job-id": "x", "device": "top", "base": "a", "base-node": "b"},
    {"job-id": "x", "device": "top", "base": "a", "bottom": "b"},
    {"job-id": "x", "device": "top", "bottom": "a", "base-node": "b"},
    {"job-id": "x", "device": "top", "backing-file": "x"},
    {"job-id": "x", "device": "nope"},
    {"job-id": "x", "device": "top", "base-node": "top"},
    {"job-id": "x", "device": "top", "base-node": "nope"},
    {"job-id": "x", "device": "top", "base": "nope.qcow2"},
    {"job-id": "x", "device": "top", "bottom": "nope"},
    {"job-id": "1x", "device": "top"},
    {"device": "top"},
    {"job-id": "x", "device": "top", "on-error": "bogus"},
    {"job-id": "x", "device": "top", "speed": "fast"},
    {"job-id": "x", "device": "top", "bogus": 1},
])
def test_argument_errors(peers, args):
    results = {}
    for p in peers(named=True):
        results[p.kind] = (p.cmd("block-stream", args),
                           p.cmd("query-jobs"))
    assert results["strata"] == results["qsd"]


def test_busy_and_unknown_jobs(peers):
    results = {}
    for p in peers():
        r = [p.cmd("block-stream", {"job-id": "s1", "device": "top",
                                    "speed": 64 * 1024})]
        r.append(p.cmd("block-stream", {"job-id": "s2", "device": "top"}))
        r.append(p.cmd("block-stream", {"job-id": "s1", "device": "top"}))
        for verb in ("job-pause", "job-resume", "job-cancel", "job-complete",
                     "job-finalize", "job-dismiss"):
            r.append(p.cmd(verb, {"id": "nope"}))
        for verb in ("block-job-pause", "block-job-resume", "block-job-cancel",
                     "block-job-complete"):
            r.append(p.cmd(verb, {"device": "nope"}))
        for verb in ("block-job-finalize", "block-job-dismiss"):
            r.append(p.cmd(verb, {"id": "nope"}))
        r.append(p.cmd("block-job-set-speed", {"device": "nope", "speed": 1}))
        r.append(p.cmd("block-job-cancel", {"device": "s1", "force": True}))
        p.events_until(job_gone)
        results[p.kind] = r
    assert results["strata"] == results["qsd"]


def test_read_error_report(peers, tmp_path):
    """A read error in mid (blkdebug) with on-error=report ends the job
    with the error; the chain is left as it was."""
    results = {}
    for kind in KINDS:
        d = tmp_path / ("err-" + kind)
        base, mid, top = make_chain(d)
        # The host sector of mid's first data cluster: only the copy's
        # read of it fails, not the metadata reads at open.
        runs = json.loads(subprocess.run(
            ["qemu-img", "map", "--output=json", str(mid)], check=True,
            capture_output=True, text=True).stdout)
        host = next(r["offset"] for r in runs
                    if r["depth"] == 0 and r["data"])
        mid_spec = {"driver": "qcow2", "node-name": "mid", "read-only": True,
                    "file": {"driver": "blkdebug",
                             "image": {"driver": "file",
                                       "filename": str(mid)},
                             "inject-error": [{"event": "read_aio",
                                               "sector": host // 512,
                                               "errno": 5}]}}
        top_spec = {"driver": "qcow2", "node-name": "top", "backing": "mid",
                    "file": {"driver": "file", "filename": str(top)}}
        prog = binary("stratad") if kind == "strata" else "qemu-storage-daemon"
        dm = Daemon(prog, tmp_path, ["--blockdev", json.dumps(mid_spec),
                                     "--blockdev", json.dumps(top_spec)],
                    name="e" + kind)
        try:
            q = dm.connect()
            q.cmd("block-stream", {"job-id": "e1", "device": "top"})
            evs = []
            while True:
                ev = q.wait_event(timeout=30)
                assert ev is not None
                evs.append((ev["event"], ev.get("data")))
                if job_gone(ev):
                    break
            results[kind] = evs
        finally:
            dm.stop()
        assert backing_chain(top)[0] == ("top.qcow2", "mid.qcow2", "qcow2")
        qemu_check(top)
    assert results["strata"] == results["qsd"]


def test_client_writes_during_stream_survive(tmp_path):
    """A python nbd client writes patterned data while a rate-limited
    stream runs: every write survives, and the final image is the chain's
    content with the writes on top."""
    d = tmp_path / "w"
    base, mid, top = make_chain(d)
    sock = str(tmp_path / "nbd.sock")
    dm = Daemon(binary("stratad"), tmp_path, blockdevs(d, False) + [
        "--nbd-server", f"addr.type=unix,addr.path={sock}",
        "--export", "type=nbd,id=e0,node-name=top,name=top,writable=on"])
    expected = bytearray((d / "expected.raw").read_bytes())
    try:
        wait_for_path(sock, dm.proc)
        q = dm.connect()
        q.cmd("block-stream", {"job-id": "s1", "device": "top",
                               "speed": 8 * MiB})
        h = nbd.NBD()
        h.connect_uri(f"nbd+unix:///top?socket={sock}")
        import random
        rng = random.Random(3)
        for i in range(300):
            off = rng.randrange(0, SIZE - 8192) & ~511
            n = rng.choice([512, 4096, 8192])
            data = bytes([(i % 200) + 40]) * n
            h.pwrite(data, off)
            expected[off:off + n] = data
        while True:
            ev = q.wait_event(timeout=60)
            assert ev is not None
            if job_gone(ev):
                break
        assert h.pread(SIZE, 0) == bytes(expected)
        h.shutdown()
    finally:
        dm.stop()
    assert backing_chain(top) == [("top.qcow2", None, None)]
    qemu_check(top)
    subprocess.run(["qemu-img", "convert", "-O", "raw", str(top),
                    str(tmp_path / "final.raw")], check=True)
    assert (tmp_path / "final.raw").read_bytes() == bytes(expected)


def test_query_nodes_while_concluded(tmp_path):
    """qemu-storage-daemon 7.2 crashes on query-named-block-nodes while a
    stream job is concluded and not dismissed; strata answers."""
    d = tmp_path / "c"
    make_chain(d)
    dm = Daemon(binary("stratad"), tmp_path, blockdevs(d, False))
    try:
        q = dm.connect()
        q.cmd("block-stream", {"job-id": "s1", "device": "top",
                               "auto-dismiss": False})
        while True:
            ev = q.wait_event(timeout=30)
            if (ev["event"] == "JOB_STATUS_CHANGE" and
                    ev["data"]["status"] == "concluded"):
                break
        nodes = q.cmd("query-named-block-nodes")
        assert [n["node-name"] for n in nodes if n["node-name"] == "top"]
        assert q.cmd("query-block-jobs")[0]["status"] == "concluded"
        q.cmd("job-dismiss", {"id": "s1"})
        assert q.cmd("query-jobs") == []
    finally:
        dm.stop()


def allocated_in(image, depth0=True):
    out = subprocess.run(["qemu-img", "map", "--output=json", "-U",
                          str(image)], check=True, capture_output=True,
                         text=True).stdout
    return sum(r["length"] for r in json.loads(out)
               if r["depth"] == 0 and (r["data"] or r["zero"] and
                                       "offset" in r))


def job_bytes_written(metrics_sock):
    from acct_util import parse_metrics, scrape_metrics
    m = parse_metrics(scrape_metrics(metrics_sock))
    return m[("strata_node_origin_bytes_total",
              frozenset({("node", "top"), ("op", "write"),
                         ("origin", "job")}))]


def test_kill_mid_stream_and_resume(tmp_path):
    """kill -9 in the middle of a stream: the image is not corrupted, and
    a new stream copies only what is not local yet, then the data is the
    chain's."""
    import os
    import signal
    d = tmp_path / "k"
    base, mid, top = make_chain(d)
    expected = (d / "expected.raw").read_bytes()

    def start(name):
        msock = str(tmp_path / f"{name}-metrics.sock")
        dm = Daemon(binary("stratad"), tmp_path, blockdevs(d, False) + [
            "--metrics", f"addr.type=unix,addr.path={msock}"], name=name)
        wait_for_path(msock, dm.proc)
        return dm, msock

    dm, msock = start("one")
    q = dm.connect()
    q.cmd("block-stream", {"job-id": "s1", "device": "top",
                           "speed": 2 * MiB})
    # Wait until some data is copied, then kill without any cleanup.
    deadline = time.monotonic() + 20
    while job_bytes_written(msock) < 2 * MiB:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    os.kill(dm.proc.pid, signal.SIGKILL)
    dm.proc.wait()
    dm.stop()

    check = subprocess.run(["qemu-img", "check", "--output=json", str(top)],
                           capture_output=True, text=True)
    report = json.loads(check.stdout)
    assert report.get("corruptions", 0) == 0, report
    local_before = allocated_in(top)

    dm, msock = start("two")
    try:
        q = dm.connect()
        q.cmd("block-stream", {"job-id": "s2", "device": "top"})
        while True:
            ev = q.wait_event(timeout=60)
            if ev["event"] == "JOB_STATUS_CHANGE" and \
                    ev["data"]["status"] == "null":
                break
        copied = job_bytes_written(msock)
    finally:
        dm.stop()
    # What the chain holds (at cluster granularity) and the top did not
    # yet is exactly what the second stream wrote.
    total = allocated_in(top)
    assert copied == total - local_before, (copied, total, local_before)
    assert copied < total
    assert backing_chain(top) == [("top.qcow2", None, None)]
    subprocess.run(["qemu-img", "convert", "-O", "raw", str(top),
                    str(tmp_path / "final.raw")], check=True)
    assert (tmp_path / "final.raw").read_bytes() == expected
    check = subprocess.run(["qemu-img", "check", "--output=json", str(top)],
                           capture_output=True, text=True)
    assert json.loads(check.stdout).get("corruptions", 0) == 0


def run_error_case(tmp_path, kind, on_error, actions):
    """Streams with a read error injected once into mid's first data
    cluster; actions(q) drives the job after its first error event.
    Returns the events and the resulting chain."""
    d = tmp_path / f"{on_error}-{kind}"
    base, mid, top = make_chain(d)
    runs = json.loads(subprocess.run(
        ["qemu-img", "map", "--output=json", str(mid)], check=True,
        capture_output=True, text=True).stdout)
    host = next(r["offset"] for r in runs if r["depth"] == 0 and r["data"])
    mid_spec = {"driver": "qcow2", "node-name": "mid", "read-only": True,
                "file": {"driver": "blkdebug",
                         "image": {"driver": "file", "filename": str(mid)},
                         "inject-error": [{"event": "read_aio",
                                           "sector": host // 512,
                                           "errno": 5, "once": True}]}}
    top_spec = {"driver": "qcow2", "node-name": "top", "backing": "mid",
                "file": {"driver": "file", "filename": str(top)}}
    prog = binary("stratad") if kind == "strata" else "qemu-storage-daemon"
    dm = Daemon(prog, tmp_path, ["--blockdev", json.dumps(mid_spec),
                                 "--blockdev", json.dumps(top_spec)],
                name=f"{on_error}{kind}")
    evs = []
    try:
        q = dm.connect()
        q.cmd("block-stream", {"job-id": "e1", "device": "top",
                               "on-error": on_error})
        acted = False
        while True:
            ev = q.wait_event(timeout=30)
            evs.append((ev["event"], ev.get("data")))
            if ev["event"] == "BLOCK_JOB_ERROR" and not acted:
                acted = True
                evs.append(("actions", actions(q)))
            if job_gone(ev):
                break
    finally:
        dm.stop()
    qemu_check(top)
    return evs, backing_chain(top)


def test_on_error_stop_then_resume(tmp_path):
    """on-error=stop: the job pauses with io-status failed; resuming
    retries the read (the error was injected once) and the job ends."""
    def actions(q):
        # The pause is visible once the error event is out.
        for _ in range(100):
            info = q.cmd("query-block-jobs")[0]
            if info["status"] == "paused":
                break
            time.sleep(0.02)
        out = (info["status"], info["paused"], info["io-status"])
        q.cmd("job-resume", {"id": "e1"})
        return out
    results = {k: run_error_case(tmp_path, k, "stop", actions)
               for k in KINDS}
    assert results["strata"] == results["qsd"]
    assert results["strata"][1] == [("top.qcow2", None, None)]


def test_on_error_ignore(tmp_path):
    """on-error=ignore: one error event, the job carries on to the end,
    fails with the error, and leaves the chain as it was."""
    results = {k: run_error_case(tmp_path, k, "ignore", lambda q: None)
               for k in KINDS}
    assert results["strata"] == results["qsd"]
    assert results["strata"][1][0] == ("top.qcow2", "mid.qcow2", "qcow2")


def test_adaptive_speed(tmp_path):
    """adaptive-speed with a busy reader: the job reports the rate it
    copies at, which stays under the speed ceiling, and the stream still
    ends with the chain's data.  Whether it yields enough is measured by
    bench/stream; the controller's decisions are unit-tested in
    tests/unit/jobs/test-rate-control.c."""
    d = tmp_path / "a"
    make_chain(d)
    sock = str(tmp_path / "nbd.sock")
    dm = Daemon(binary("stratad"), tmp_path, blockdevs(d, False) + [
        "--nbd-server", f"addr.type=unix,addr.path={sock}",
        "--export", "type=nbd,id=e0,node-name=top,name=top,writable=on"])
    try:
        wait_for_path(sock, dm.proc)
        q = dm.connect()
        q.cmd("block-stream", {"job-id": "s1", "device": "top",
                               "speed": 64 * MiB, "adaptive-speed": True})
        info = q.cmd("query-block-jobs")[0]
        assert info["adaptive-speed"] is True
        assert 0 < info["current-speed"] <= 64 * MiB
        assert info["speed"] == 64 * MiB
        h = nbd.NBD()
        h.connect_uri(f"nbd+unix:///top?socket={sock}")
        seen = set()
        done = False
        while not done:
            for off in range(0, SIZE, 1 * MiB):
                h.pread(65536, off)
            jobs = q.cmd("query-block-jobs")
            if not jobs:
                done = True
            else:
                seen.add(jobs[0]["current-speed"])
                assert jobs[0]["current-speed"] <= 64 * MiB
        h.shutdown()
        assert len(seen) >= 1
    finally:
        dm.stop()
    assert backing_chain(d / "top.qcow2") == [("top.qcow2", None, None)]
    same_content(type("P", (), {"dir": d})())


@pytest.mark.parametrize("how", ["base", "bottom"])
def test_partial_stream_base_and_bottom(peers, how):
    """base names the base by its file name in the chain, bottom the
    lowest node copied from: both keep base.qcow2 as top's backing."""
    results = {}
    for p in peers(named=True):
        args = {"job-id": "s4", "device": "top"}
        if how == "base":
            args["base"] = str(p.dir / "base.qcow2")
        else:
            args["bottom"] = "mid"
        r = [p.cmd("block-stream", args)]
        r.append(p.events_until(job_gone))
        nodes = p.cmd("query-named-block-nodes")[1]
        r.append(sorted(n["node-name"] for n in nodes
                        if not n["node-name"].startswith("#")))
        results[p.kind] = r
        p.stop()
        top = p.dir / "top.qcow2"
        chain = backing_chain(top)
        qemu_check(top)
        same_content(p)
        results[p.kind + "-chain"] = [(c[0], c[2]) for c in chain]
        results[p.kind + "-backing"] = chain[0][1].rsplit("/", 1)[-1]
    assert results["strata"] == results["qsd"]
    assert results["strata-chain"] == results["qsd-chain"]
    assert results["strata-backing"] == results["qsd-backing"] == \
        "base.qcow2"


def test_on_error_enospc_reports_other_errors(tmp_path):
    """on-error=enospc stops only on ENOSPC: an EIO is reported and ends
    the job with the error, leaving the chain."""
    results = {k: run_error_case(tmp_path, k, "enospc", lambda q: None)
               for k in KINDS}
    assert results["strata"] == results["qsd"]
    assert results["strata"][1][0] == ("top.qcow2", "mid.qcow2", "qcow2")


def test_cancel_paused_and_concluded_cancelled(peers):
    """block-job-cancel leaves a paused job alone unless forced; a
    cancelled job waiting to be dismissed shows why it ended, and keeps
    its node busy until it is dismissed."""
    results = {}
    for p in peers():
        r = [p.cmd("block-stream", {"job-id": "s1", "device": "top",
                                    "speed": 64 * 1024,
                                    "auto-dismiss": False})]
        r.append(p.cmd("block-job-pause", {"device": "s1"}))
        r.append(p.cmd("block-job-cancel", {"device": "s1"}))
        r.append(p.cmd("block-job-cancel", {"device": "s1", "force": True}))
        p.events_until(lambda e: e["event"] == "JOB_STATUS_CHANGE" and
                       e["data"]["status"] == "concluded")
        jobs = p.cmd("query-jobs")[1]
        r.append([(j["id"], j["status"], j.get("error")) for j in jobs])
        r.append(p.cmd("block-stream", {"job-id": "s2", "device": "top"}))
        r.append(p.cmd("job-dismiss", {"id": "s1"}))
        results[p.kind] = r
    assert results["strata"] == results["qsd"]


def test_blockdev_del_of_a_job_node(peers):
    results = {}
    for p in peers(named=True):
        r = [p.cmd("block-stream", {"job-id": "s1", "device": "top",
                                    "speed": 64 * 1024})]
        r.append(p.cmd("blockdev-del", {"node-name": "top"}))
        r.append(p.cmd("blockdev-del", {"node-name": "mid"}))
        r.append(p.cmd("block-job-cancel", {"device": "s1", "force": True}))
        p.events_until(job_gone)
        results[p.kind] = r
    assert results["strata"] == results["qsd"]


def test_shutdown_with_jobs_running(tmp_path):
    """SIGTERM while a job copies (after an earlier one finished and was
    dismissed): stratad cancels it, exits 0 (under ASan: without a
    leak), and the image is consistent."""
    d = tmp_path / "q"
    make_chain(d)
    dm = Daemon(binary("stratad"), tmp_path, blockdevs(d, True))
    q = dm.connect()
    q.cmd("block-stream", {"job-id": "s1", "device": "top",
                           "base-node": "mid", "auto-dismiss": False})
    while q.cmd("query-jobs")[0]["status"] != "concluded":
        time.sleep(0.02)
    q.cmd("job-dismiss", {"id": "s1"})
    q.cmd("block-stream", {"job-id": "s2", "device": "top",
                           "speed": 64 * 1024})
    dm.proc.terminate()
    assert dm.proc.wait(timeout=30) == 0
    dm.stop()
    qemu_check(d / "top.qcow2")


def filter_view(p, filter_name):
    """What a manager sees of the stream's filter while the job runs:
    the export's node and the filter node (implicit names normalized)."""
    def norm(name):
        return "#implicit" if name.startswith("#block") else name
    exports = p.cmd("query-block-exports")[1]
    nodes = p.cmd("query-named-block-nodes", {"flat": True})[1]
    cor = sorted(norm(n["node-name"]) for n in nodes
                 if n["drv"] == "copy-on-read")
    view = {"export-node": [norm(e["node-name"]) for e in exports],
            "filters": cor}
    if filter_name:
        view["del"] = p.cmd("blockdev-del", {"node-name": filter_name})
    return view


@pytest.mark.parametrize("filter_name", [None, "flt"])
def test_filter_node_while_streaming(tmp_path, filter_name):
    """As QEMU 7.2: block-stream puts a copy-on-read filter (named by
    filter-node-name, else implicit) above the top for the job's life;
    the export serves through it, it cannot be deleted, and it is gone
    with the job, the export back on the top."""
    views = {}
    for kind in KINDS:
        sock = str(tmp_path / f"{kind}-f.sock")
        p = Peer(kind, tmp_path, extra=[
            "--nbd-server", f"addr.type=unix,addr.path={sock}",
            "--export", "type=nbd,id=e0,node-name=top,name=top"])
        try:
            args = {"job-id": "s1", "device": "top", "speed": 64 * 1024}
            if filter_name:
                args["filter-node-name"] = filter_name
            assert p.cmd("block-stream", args) == ("ok", {})
            during = filter_view(p, filter_name)
            p.cmd("block-job-set-speed", {"device": "s1", "speed": 0})
            p.events_until(job_gone)
            after = filter_view(p, None)
            views[kind] = (during, after)
        finally:
            p.stop()
    assert views["strata"] == views["qsd"]
    during, after = views["strata"]
    name = filter_name or "#implicit"
    assert during["export-node"] == [name] and during["filters"] == [name]
    assert after == {"export-node": ["top"], "filters": []}
    if filter_name:
        assert during["del"] == ("error", "GenericError", "Node flt is in use")


def test_filter_node_name_taken(peers):
    out = {}
    for p in peers():
        out[p.kind] = p.cmd("block-stream", {"job-id": "s1", "device": "top",
                                             "filter-node-name": "top"})
        out[p.kind + "-jobs"] = p.cmd("query-jobs")
    assert out["strata"] == out["qsd"]
    assert out["strata"][0] == "error"


def thread_nices(pid):
    """The nice value of each of the process's threads."""
    out = []
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                stat = f.read()
        except FileNotFoundError:
            continue                 # the thread just ended
        # Fields after the command name (which may hold spaces): the
        # nice value is the 19th field of the line.
        out.append(int(stat[stat.rindex(")") + 2:].split()[16]))
    return out


@pytest.mark.parametrize("adaptive", [False, True])
def test_client_reads_through_filter(tmp_path, adaptive):
    """While the job is paused, what a client reads through the export
    becomes local in the top (the filter copies it), and nothing else
    does.  An adaptive job leaves the copying to itself, at the rate its
    controller sets: the filter then copies nothing, and the job's
    thread runs at the lowest CPU priority (nice 19)."""
    p = Peer("strata", tmp_path, extra=[
        "--nbd-server", f"addr.type=unix,addr.path={tmp_path}/r.sock",
        "--export", "type=nbd,id=e0,node-name=top,name=top"])
    try:
        args = {"job-id": "s1", "device": "top", "speed": 1}
        if adaptive:
            args["adaptive-speed"] = True
        assert p.cmd("block-stream", args)[0] == "ok"
        deadline = time.monotonic() + 10
        nices = thread_nices(p.d.proc.pid)
        while adaptive and 19 not in nices and time.monotonic() < deadline:
            time.sleep(0.05)
            nices = thread_nices(p.d.proc.pid)
        assert (19 in nices) == adaptive, nices
        p.cmd("job-pause", {"id": "s1"})
        h = nbd.NBD()
        h.connect_uri(f"nbd+unix:///top?socket={tmp_path}/r.sock")
        data = h.pread(1 << 20, 20 << 20)       # base's data at 20M
        h.shutdown()
        assert data == b"\x12" * (1 << 20)
        assert p.cmd("job-cancel", {"id": "s1"}) == ("ok", {})
        p.events_until(job_gone)
    finally:
        p.stop()
    out = subprocess.run(["qemu-img", "map", "--output=json",
                          str(p.dir / "top.qcow2")], check=True,
                         capture_output=True, text=True).stdout
    local = [(r["start"], r["start"] + r["length"]) for r in json.loads(out)
             if r["depth"] == 0 and r["data"]]
    # The 1 MiB read is local now unless the job is adaptive; mid's data
    # at 28M, never read, is not.
    assert any(s <= 20 << 20 and e >= 21 << 20
               for s, e in local) == (not adaptive), local
    assert not any(s < (28 << 20) + 1 and e > 28 << 20
                   for s, e in local), local
