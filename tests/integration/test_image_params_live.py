# SPDX-License-Identifier: BSD-3-Clause
"""Image parameters in stratad: applied when a node is opened, overridden
by blockdev-add's image-params, changed live with
block-set-image-params (and stored with persist), read with
query-image-params.  python3 nbd is the client; qemu-img map, info and
check judge the images."""
import json
import subprocess
import time

import nbd

from conftest import binary
from img_util import qimg, qio, simg
from qmp_util import Daemon, QmpError, wait_for_path

MiB = 1 << 20


def chain(d):
    d.mkdir(parents=True, exist_ok=True)
    base, top = d / "base.qcow2", d / "top.qcow2"
    qimg("create", "-q", "-f", "qcow2", base, "64M")
    qio(base, "write -P 0x11 0 16M", "write -P 0x12 32M 8M")
    qimg("create", "-q", "-f", "qcow2", "-b", base.name, "-F", "qcow2", top)
    return base, top


def start(tmp_path, top, image_params=None):
    node = {"driver": "qcow2", "node-name": "top",
            "file": {"driver": "file", "filename": str(top)}}
    if image_params is not None:
        node["image-params"] = image_params
    sock = str(tmp_path / "nbd.sock")
    d = Daemon(binary("stratad"), tmp_path, [
        "--blockdev", json.dumps(node),
        "--nbd-server", f"addr.type=unix,addr.path={sock}",
        "--export", "type=nbd,id=e0,node-name=top,name=top,writable=on"])
    wait_for_path(sock, d.proc)
    return d, f"nbd+unix:///top?socket={sock}"


def read(uri, offset, length):
    h = nbd.NBD()
    h.connect_uri(uri)
    data = h.pread(length, offset)
    h.shutdown()
    return data


def local_ranges(top):
    out = subprocess.run(["qemu-img", "map", "--output=json", str(top)],
                         check=True, capture_output=True, text=True).stdout
    return [(r["start"], r["start"] + r["length"]) for r in json.loads(out)
            if r["depth"] == 0 and r["data"]]


def is_local(top, start, end):
    return any(s <= start and e >= end for s, e in local_ranges(top))


def test_copy_on_read_from_the_image(tmp_path):
    _, top = chain(tmp_path / "a")
    simg("update", top, "copy-on-read=on")
    d, uri = start(tmp_path, top)
    try:
        q = d.connect()
        r = q.cmd("query-image-params", {"node-name": "top"})
        assert r == {"stored": {"copy-on-read": True},
                     "in-force": {"copy-on-read": True},
                     "copy-on-read": True}
        assert read(uri, 2 * MiB, MiB) == b"\x11" * MiB
    finally:
        d.stop()
    assert is_local(top, 2 * MiB, 3 * MiB)
    assert not is_local(top, 32 * MiB, 33 * MiB)     # never read
    assert qimg("check", top).returncode == 0


def test_blockdev_add_overrides_the_image(tmp_path):
    _, top = chain(tmp_path / "a")
    simg("update", top, "copy-on-read=on", "l2-cache-size=1P")
    d, uri = start(tmp_path, top, {"copy-on-read": False})
    try:
        q = d.connect()
        r = q.cmd("query-image-params", {"node-name": "top"})
        # 1P in the image: capped at what the disk needs, the image opens.
        assert r["stored"] == {"copy-on-read": True,
                               "l2-cache-size": 1 << 50}
        assert r["in-force"]["copy-on-read"] is False
        assert r["copy-on-read"] is False
        assert read(uri, 2 * MiB, MiB) == b"\x11" * MiB
        # Bad overrides are refused with the parameter's own message.
        node = {"driver": "qcow2", "node-name": "n2",
                "file": {"driver": "file", "filename": str(top)},
                "read-only": True, "image-params": {"prefetch": "later"}}
        try:
            q.cmd("blockdev-add", node)
            raise AssertionError("accepted a bad image-params")
        except QmpError as e:
            assert e.desc == ("Parameter 'prefetch' expects 'off' or "
                              "'on-open', not 'later'")
    finally:
        d.stop()
    assert not is_local(top, 2 * MiB, 3 * MiB)


def test_live_copy_on_read_and_persist(tmp_path):
    _, top = chain(tmp_path / "a")
    d, uri = start(tmp_path, top)
    try:
        q = d.connect()
        assert read(uri, 0, MiB) == b"\x11" * MiB
        q.cmd("block-set-image-params",
              {"node-name": "top", "params": {"copy-on-read": "on"}})
        assert q.cmd("query-image-params",
                     {"node-name": "top"})["copy-on-read"] is True
        assert read(uri, 4 * MiB, MiB) == b"\x11" * MiB
        q.cmd("block-set-image-params",
              {"node-name": "top", "params": {"copy-on-read": False},
               "persist": True})
        assert read(uri, 8 * MiB, MiB) == b"\x11" * MiB
        r = q.cmd("query-image-params", {"node-name": "top"})
        assert r["stored"] == {"copy-on-read": False}
        assert r["copy-on-read"] is False
        for args, desc in [
            ({"node-name": "nope", "params": {}},
             "Cannot find device='' nor node-name='nope'"),
            ({"node-name": "top", "params": {"copy-on-read": "yes"}},
             "Parameter 'copy-on-read' expects 'on' or 'off', not 'yes'"),
            ({"node-name": "top", "params": {"colour": "red"}},
             "Unknown image parameter 'colour'"),
            ({"node-name": "top"}, "Parameter 'params' is missing"),
        ]:
            try:
                q.cmd("block-set-image-params", args)
                raise AssertionError(f"accepted {args}")
            except QmpError as e:
                assert e.desc.startswith(desc), e.desc
    finally:
        d.stop()
    assert not is_local(top, 0, MiB)            # read before: not copied
    assert is_local(top, 4 * MiB, 5 * MiB)      # read while on: copied
    assert not is_local(top, 8 * MiB, 9 * MiB)  # read after: not copied
    info = json.loads(simg("info", "--output=json", top).stdout)
    assert info["format-specific"]["data"]["strata-parameters"] == \
        {"copy-on-read": False}
    assert qimg("check", top).returncode == 0


def wait_job_gone(q, job_id, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not any(j["id"] == job_id for j in q.cmd("query-jobs")):
            return
        time.sleep(0.05)
    raise AssertionError(f"{job_id} still there")


def test_prefetch_on_open_makes_the_image_independent(tmp_path):
    base, top = chain(tmp_path / "a")
    simg("update", top, "prefetch=on-open", "prefetch-rate=adaptive")
    expected = tmp_path / "expected.raw"
    qimg("convert", "-O", "raw", top, expected)
    d, uri = start(tmp_path, top)
    try:
        q = d.connect()
        jobs = q.cmd("query-block-jobs")
        assert [j["device"] for j in jobs] in (["prefetch-top"], [])
        # A client reads and writes while the prefetch runs.
        h = nbd.NBD()
        h.connect_uri(uri)
        h.pwrite(b"\x77" * MiB, 40 * MiB)
        for off in range(0, 16 * MiB, MiB):
            assert h.pread(4096, off) == b"\x11" * 4096
        h.shutdown()
        wait_job_gone(q, "prefetch-top")
    finally:
        d.stop()
    chain_info = json.loads(qimg("info", "--output=json", "--backing-chain",
                                 top).stdout)
    assert len(chain_info) == 1 and "backing-filename" not in chain_info[0]
    assert qimg("check", top).returncode == 0
    qio(top, "read -P 0x77 40M 1M", "read -P 0x11 0 16M",
        "read -P 0x12 32M 8M", "read -P 0 16M 16M")
    # Opened again: independent now, nothing to prefetch, no job.
    d, uri = start(tmp_path, top)
    try:
        assert d.connect().cmd("query-jobs") == []
    finally:
        d.stop()


def test_prefetch_delay_then_cancelled_live(tmp_path):
    _, top = chain(tmp_path / "a")
    simg("update", top, "prefetch=on-open", "prefetch-delay=30",
         "prefetch-rate=8M")
    d, uri = start(tmp_path, top)
    try:
        q = d.connect()
        job = q.cmd("query-block-jobs")[0]
        assert job["device"] == "prefetch-top" and job["speed"] == 8 * MiB
        time.sleep(0.5)
        assert q.cmd("query-block-jobs")[0]["offset"] == 0   # waiting
        assert q.cmd("query-image-params",
                     {"node-name": "top"})["prefetch-job"] == "prefetch-top"
        q.cmd("block-set-image-params",
              {"node-name": "top", "params": {"prefetch-rate": "16M"}})
        assert q.cmd("query-block-jobs")[0]["speed"] == 16 * MiB
        q.cmd("block-set-image-params",
              {"node-name": "top", "params": {"prefetch": "off"}})
        wait_job_gone(q, "prefetch-top", timeout=10)
    finally:
        d.stop()
    chain_info = json.loads(qimg("info", "--output=json", "--backing-chain",
                                 top).stdout)
    assert len(chain_info) == 2          # still on its template
    assert local_ranges(top) == []
    assert qimg("check", top).returncode == 0


def test_strata_ctl_params(tmp_path):
    _, top = chain(tmp_path / "a")
    simg("update", top, "prefetch-delay=7")
    d, uri = start(tmp_path, top)
    ctl = [binary("strata-ctl"), "-s", d.qmp_path]
    try:
        out = subprocess.run(ctl + ["params", "top"], check=True,
                             capture_output=True, text=True).stdout
        assert out.splitlines() == [
            "stored:        prefetch-delay=7",
            "in force:      prefetch-delay=7",
            "copy-on-read:  off",
            "prefetch:      no job"]
        out = subprocess.run(ctl + ["params", "top", "copy-on-read=on",
                                    "--persist"], check=True,
                             capture_output=True, text=True).stdout
        assert out == "top: parameters changed and stored in the image\n"
        r = json.loads(subprocess.run(ctl + ["--json", "params", "top"],
                                      check=True, capture_output=True,
                                      text=True).stdout)
        assert r["stored"] == {"copy-on-read": True, "prefetch-delay": 7}
        assert r["copy-on-read"] is True
        bad = subprocess.run(ctl + ["params", "top", "prefetch=soon"],
                             capture_output=True, text=True)
        assert bad.returncode == 1
        assert "Parameter 'prefetch' expects 'off' or 'on-open'" in bad.stderr
    finally:
        d.stop()


def test_adaptive_prefetch_backs_off_for_a_busy_client(tmp_path):
    """A template behind a slow link (nbdkit's rate filter): while a
    client reads through the export, the adaptive prefetch's rate drops
    well below its ceiling; once the client stops, the prefetch ends
    and the image no longer needs the template."""
    import os
    import random
    import threading
    from conftest import require
    require("nbdkit")
    tmpl = tmp_path / "tmpl.raw"
    with open(tmpl, "wb") as f:
        for mib in range(32):
            f.write(bytes([mib + 1]) * MiB)
    tsock = tmp_path / "t.sock"
    # One request at a time through a 10 MB/s link: a guest's read waits
    # for the job's read before it, as on a link they share.
    srv = subprocess.Popen(["nbdkit", "-f", "-r", "-U", str(tsock),
                            "--filter=noparallel", "--filter=rate",
                            "file", str(tmpl), "serialize=all-requests",
                            "rate=80M", "burstiness=0.1"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_path(str(tsock), srv)
        top = tmp_path / "top.qcow2"
        qimg("create", "-q", "-f", "qcow2", "-b",
             f"nbd+unix:///?socket={tsock}", "-F", "raw", top, "32M")
        simg("update", top, "prefetch=on-open", "prefetch-delay=1")
        d, uri = start(tmp_path, top)
        try:
            q = d.connect()
            stop = threading.Event()

            def client():
                h = nbd.NBD()
                h.connect_uri(uri)
                rng = random.Random(7)
                while not stop.is_set():
                    off = rng.randrange(0, 32 * MiB // 4096) * 4096
                    assert h.pread(4096, off)[0] == off // MiB + 1
                    time.sleep(0.002)     # a guest, not a benchmark
                h.shutdown()

            t = threading.Thread(target=client)
            t.start()
            # Samples until the rate has come down, for at most 15 s:
            # on a loaded machine the client's reads come slower, and so
            # does the back-off they cause.
            speeds = []
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline:
                jobs = q.cmd("query-block-jobs")
                if not jobs and speeds:
                    break
                if jobs and jobs[0]["offset"] > 0:
                    speeds.append(jobs[0]["current-speed"])
                    if min(speeds) <= 32 * MiB:
                        break
                time.sleep(0.05)
            stop.set()
            t.join()
            assert speeds, "the prefetch never started"
            # It started at a sixteenth of the ceiling (nothing known
            # yet) and backed off: at least one halving below that.  How
            # far it goes depends on how often the client gets the CPU.
            assert speeds[0] == 64 * MiB, speeds
            assert min(speeds) <= 32 * MiB, speeds
            wait_job_gone(q, "prefetch-top", timeout=60)
        finally:
            d.stop()
    finally:
        srv.terminate()
        srv.wait()
    info = json.loads(qimg("info", "--output=json", "--backing-chain",
                           top).stdout)
    assert len(info) == 1
    out = tmp_path / "out.raw"
    qimg("convert", "-O", "raw", top, out)
    assert out.read_bytes() == tmpl.read_bytes()
