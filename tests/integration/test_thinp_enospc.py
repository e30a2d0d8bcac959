# SPDX-License-Identifier: BSD-3-Clause
"""The thin-provisioning acceptance, end to end on loop devices: a qcow2
image on a 64 MiB loop device, exported by stratad (werror=enospc, the
default), a client writing patterned data as fast as it can.  With
strata-thinp watching, the client sees no error, the data reads back,
qemu-img check is clean and the device grew in whole chunks; with a
chunk small enough that the writer outruns the agent, the export pauses
on ENOSPC (counted) and the same holds.  Without an agent, the writer
blocks on the pause and completes after a manual extend + cont."""
import os
import subprocess
import threading
import time

import pytest

from thinp_pause_util import (MiB, PausableDaemon, verify_fast, write_fast)
from thinp_util import Agent, LoopDevice

DEVICE = 64 * MiB
# The acceptance size: 1 GiB through a 64 MiB device, so the
# volume must grow sixteen-fold under the writer (about a minute for the
# four tests on 2 CPUs).  STRATA_THINP_TOTAL_MIB makes a quicker run.
TOTAL = int(os.environ.get("STRATA_THINP_TOTAL_MIB", "1024")) * MiB


@pytest.fixture
def managed():
    items = []
    yield items
    for item in reversed(items):
        try:
            item.stop() if hasattr(item, "stop") else item.detach()
        except Exception:
            pass


def loop_setup(tmp_path, managed):
    if os.geteuid() != 0:
        pytest.skip("loop devices need root")
    if not os.path.exists("/dev/loop-control"):
        pytest.skip("no loop device support")
    loop = LoopDevice(str(tmp_path / "backing.img"), DEVICE)
    managed.append(loop)
    subprocess.run(["qemu-img", "create", "-f", "qcow2", loop.dev,
                    str(TOTAL + 64 * MiB)], check=True, capture_output=True)
    d = PausableDaemon(tmp_path, [
        "--blockdev", f"driver=file,node-name=proto0,filename={loop.dev}",
        "--blockdev", "driver=qcow2,node-name=fmt0,file=proto0",
        "--export", "type=nbd,id=e0,node-name=fmt0,name=disk,writable=on"])
    managed.append(d)
    return loop, d


def check_clean(dev):
    """No corruption and no leak, ever: a write that failed with ENOSPC
    gives its clusters back before it is held and retried."""
    out = subprocess.run(["qemu-img", "check", dev], capture_output=True,
                         text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "No errors were found" in out.stdout


def pauses(events):
    return [e for e in events if e["event"] == "BLOCK_IO_ERROR"
            and e["data"]["action"] == "stop"]


class EventLog:
    """Every event one QMP client receives, read on a thread so the
    daemon never waits on a full socket."""

    def __init__(self, daemon):
        self.qmp = daemon.connect()
        self.events = []
        self.stop_flag = False
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        import json
        while not self.stop_flag:
            try:
                line = self.qmp.recv_line(0.2)
            except (ConnectionError, OSError):
                return
            if line:
                msg = json.loads(line)
                if "event" in msg:
                    self.events.append(msg)

    def stop(self):
        self.stop_flag = True
        self.thread.join(5)


def grew_in_chunks(agent, chunk):
    extends = [(int(e["from"]), int(e["to"])) for e in agent.lines("extend")]
    assert extends, agent.text()
    for (_, prev_to), (cur_from, _) in zip(extends, extends[1:]):
        assert cur_from == prev_to, extends    # one extension per crossing
    assert all(to - frm == chunk for frm, to in extends), extends
    return extends


def run_with_agent(tmp_path, managed, chunk):
    loop, d = loop_setup(tmp_path, managed)
    log = EventLog(d)
    managed.append(log)
    agent = Agent(tmp_path, ["-s", d.qmp_path, "--chunk", str(chunk),
                             "--poll-interval", "30"])
    managed.append(agent)
    t0 = time.monotonic()
    agent.wait_for(lambda: agent.lines("arm"), what="first arm")
    t1 = time.monotonic()
    failed, secs = write_fast(d.uri("disk"), TOTAL)
    assert failed == 0
    t2 = time.monotonic()
    extends = grew_in_chunks(agent, chunk)
    assert loop.size() == extends[-1][1]
    assert loop.size() >= TOTAL
    verify_fast(d.uri("disk"), TOTAL)
    t3 = time.monotonic()
    e = d.export("e0")
    assert (e["paused"], e["held-requests"], e["queued-requests"]) == \
        (False, 0, 0)
    d.qmp.cmd("quit")
    assert d.proc.wait(10) == 0
    log.stop()
    t4 = time.monotonic()
    print(f"arm {t1 - t0:.1f}s write {t2 - t1:.1f}s verify {t3 - t2:.1f}s "
          f"quit {t4 - t3:.1f}s")
    check_clean(loop.dev)
    return agent, pauses(log.events), e, secs


def test_agent_keeps_ahead_of_the_writer(tmp_path, managed):
    chunk = 64 * MiB
    agent, paused, e, secs = run_with_agent(tmp_path, managed, chunk)
    # Whether the writer ever caught up with the agent depends on the
    # machine; what matters is that no write failed and nothing is lost.
    assert len(paused) == e["pauses"]
    print(f"{TOTAL // MiB} MiB in {secs:.1f}s, {len(paused)} pauses, "
          f"{len(agent.lines('extend'))} extensions")


def test_small_chunk_forces_pauses_without_errors(tmp_path, managed):
    chunk = 4 * MiB
    agent, paused, e, secs = run_with_agent(tmp_path, managed, chunk)
    assert len(paused) > 0, "the writer never outran the agent"
    assert all(p["data"]["nospace"] for p in paused)
    assert len(paused) == e["pauses"]
    assert agent.lines("resume"), agent.text()
    print(f"{TOTAL // MiB} MiB in {secs:.1f}s, {len(paused)} pauses, "
          f"{len(agent.lines('extend'))} extensions")


def test_writer_blocks_until_manual_extend_and_cont(tmp_path, managed):
    loop, d = loop_setup(tmp_path, managed)
    total = 96 * MiB
    result = {}

    def writer():
        result["failed"], result["secs"] = write_fast(d.uri("disk"), total)

    t = threading.Thread(target=writer, daemon=True)
    t.start()
    ev = d.qmp.wait_event("BLOCK_IO_ERROR", timeout=30)
    assert ev["data"]["nospace"] is True
    assert ev["data"]["action"] == "stop"
    time.sleep(0.5)
    assert t.is_alive(), "the writer finished on a full device"
    e = d.export("e0")
    assert e["paused"] and e["io-status"] == "nospace"
    assert e["held-requests"] >= 1
    # The administrator's part: grow the volume, then cont.
    with open(loop.backing, "r+b") as f:
        f.truncate(total + 64 * MiB)
    subprocess.run(["losetup", "-c", loop.dev], check=True)
    d.qmp.cmd("cont")
    t.join(60)
    assert not t.is_alive()
    assert result["failed"] == 0
    verify_fast(d.uri("disk"), total)
    d.qmp.cmd("quit")
    assert d.proc.wait(10) == 0
    check_clean(loop.dev)


def test_agent_started_during_a_pause_resumes_it(tmp_path, managed):
    """The BLOCK_IO_ERROR went out before any agent listened: the agent
    finds the paused export when it connects, extends and resumes."""
    loop, d = loop_setup(tmp_path, managed)
    total = 96 * MiB
    result = {}

    def writer():
        result["failed"], result["secs"] = write_fast(d.uri("disk"), total)

    t = threading.Thread(target=writer, daemon=True)
    t.start()
    d.qmp.wait_event("BLOCK_IO_ERROR", timeout=30)
    agent = Agent(tmp_path, ["-s", d.qmp_path, "--chunk", "64M",
                             "--poll-interval", "30"])
    managed.append(agent)
    t.join(60)
    assert not t.is_alive(), agent.text()
    assert result["failed"] == 0
    assert agent.lines("paused-found"), agent.text()
    assert agent.lines("resume"), agent.text()
    verify_fast(d.uri("disk"), total)
