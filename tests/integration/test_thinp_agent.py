# SPDX-License-Identifier: BSD-3-Clause
"""strata-thinp end to end: a client writes patterned data through NBD
while the agent keeps the volume under the image ahead of it.  The
regular-file tests mark the image's node with --volume (physical = the
file's size); the loop-device test is the real layout, a qcow2 image on
a block device."""
import errno
import os
import subprocess
import time

import nbd
import pytest

from conftest import binary, require
from thinp_util import MiB, Agent, LoopDevice, image_daemon

CHUNK = 8 * MiB


def pattern(i, size):
    return bytes([(i * 7 + 1) & 0xff]) * size


def write_pattern(uri, total, block=MiB, start=0):
    h = nbd.NBD()
    h.connect_uri(uri)
    try:
        for i in range(total // block):
            h.pwrite(pattern(i, block), start + i * block)
        h.flush()
    finally:
        h.shutdown()


def verify_pattern(uri, total, block=MiB, start=0):
    h = nbd.NBD()
    h.connect_uri(uri)
    try:
        for i in range(total // block):
            assert h.pread(block, start + i * block) == pattern(i, block), \
                f"data at {start + i * block} differs"
    finally:
        h.shutdown()


def write_pattern_paced(uri, total, agent, image, step=MiB):
    """Writes what write_pattern writes, one step at a time, each step only
    once the agent has restored the headroom it keeps (its last "arm"
    line's free-limit).  The daemon then never writes past the file's end,
    so on a file volume, as on a block device, every byte of growth is one
    of the agent's extensions, however slow the agent is scheduled."""
    h = nbd.NBD()
    h.connect_uri(uri)
    try:
        for i in range(total // step):
            limit = int(agent.lines("arm")[-1]["free-limit"])
            agent.wait_for(lambda: os.path.getsize(image) > i * step + limit,
                           what=f"headroom before byte {i * step}")
            h.pwrite(pattern(i, step), i * step)
        h.flush()
    finally:
        h.shutdown()


def new_image(tmp_path, target, size="1G"):
    subprocess.run(["qemu-img", "create", "-f", "qcow2", target, size],
                   check=True, capture_output=True)
    return target


def check_clean(image):
    out = subprocess.run(["qemu-img", "check", image], capture_output=True,
                         text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "No errors were found" in out.stdout


def assert_one_extend_per_crossing(agent, device=False):
    """No node is extended twice for one crossing: every extension starts
    at or past where the previous one ended.  A block device only grows
    when the agent grows it, so there each starts exactly there; a file
    volume also grows when the daemon writes past its end, so under load
    the next extension may start further on."""
    extends = agent.lines("extend")
    sizes = [(int(e["from"]), int(e["to"])) for e in extends]
    for (_, prev_to), (cur_from, _) in zip(sizes, sizes[1:]):
        if device:
            assert cur_from == prev_to, sizes
        else:
            assert cur_from >= prev_to, sizes
    return sizes


@pytest.fixture
def managed(tmp_path):
    """Starts and always stops what a test asks for."""
    items = []
    yield items
    for item in reversed(items):
        try:
            item.stop() if hasattr(item, "stop") else item.detach()
        except Exception:
            pass


def test_agent_grows_file_volume_in_chunks(tmp_path, managed):
    require("qemu-img")
    image = new_image(tmp_path, str(tmp_path / "vol.qcow2"))
    d = image_daemon("strata", tmp_path, image)
    managed.append(d)
    agent = Agent(tmp_path, ["-s", d.qmp_path, "--volume", "fmt0",
                             "--chunk", "8M", "--poll-interval", "30"])
    managed.append(agent)
    agent.wait_for(lambda: agent.lines("arm"), what="first arm")
    write_pattern_paced(d.nbd_uri, 48 * MiB, agent, image)
    agent.wait_for(lambda: os.path.getsize(image) > 48 * MiB + 4 * MiB,
                   what="headroom after the writes")
    # Paced writes never grow the file themselves: each extension starts
    # where the one before ended, one chunk at a time (the first one also
    # rounds the header-sized file up to a MiB).
    sizes = assert_one_extend_per_crossing(agent, device=True)
    assert all(to - frm <= CHUNK + MiB for frm, to in sizes), sizes
    assert os.path.getsize(image) % MiB == 0
    # From under 1 MiB to past 52 MiB in steps of at most 9 MiB.
    assert len(sizes) >= 6
    events = [e for e in agent.lines("exceeded") if e["source"] == "event"]
    assert events, agent.text()
    verify_pattern(d.nbd_uri, 48 * MiB)
    d.stop()
    check_clean(image)


def test_agent_extends_volume_crossed_before_it_started(tmp_path, managed):
    image = new_image(tmp_path, str(tmp_path / "vol.qcow2"))
    subprocess.run(["truncate", "-s", "16M", image], check=True)
    d = image_daemon("strata", tmp_path, image)
    managed.append(d)
    q = d.connect()
    # Nobody armed anything while 20 MiB were written past the end.
    write_pattern(d.nbd_uri, 20 * MiB)
    assert q.cmd("query-block-allocation", {"node-name": "proto0"})[0][
        "write-threshold"] == 0
    agent = Agent(tmp_path, ["-s", d.qmp_path, "--volume", "proto0",
                             "--chunk", "8M", "--poll-interval", "30"])
    managed.append(agent)
    agent.wait_for(lambda: agent.lines("arm"), what="arming")
    first = agent.lines("exceeded")[0]
    assert first["source"] == "unarmed"
    info = q.cmd("query-block-allocation", {"node-name": "proto0"})[0]
    assert info["physical"] - info["allocation"] >= 4 * MiB
    assert info["write-threshold"] == info["physical"] - 4 * MiB


def test_agent_stops_at_max_size_with_one_line(tmp_path, managed):
    image = new_image(tmp_path, str(tmp_path / "small.qcow2"), "16M")
    d = image_daemon("strata", tmp_path, image)
    managed.append(d)
    agent = Agent(tmp_path, ["-s", d.qmp_path, "--volume", "fmt0",
                             "--chunk", "4M", "--poll-interval", "0.1"])
    managed.append(agent)
    agent.wait_for(lambda: agent.lines("arm"), what="first arm")
    write_pattern(d.nbd_uri, 16 * MiB)
    agent.wait_for(lambda: agent.lines("max-size"), what="max-size line")
    time.sleep(0.5)   # several poll rounds at maximum size
    assert len(agent.lines("max-size")) == 1, agent.text()
    max_size = int(agent.lines("max-size")[0]["max"])
    assert max_size == 18 * MiB     # round(16M * 1.1) up to a MiB
    assert os.path.getsize(image) <= max_size
    verify_pattern(d.nbd_uri, 16 * MiB)


def test_agent_extend_command_and_config_file(tmp_path, managed):
    image = new_image(tmp_path, str(tmp_path / "vol.qcow2"))
    d = image_daemon("strata", tmp_path, image)
    managed.append(d)
    calls = tmp_path / "calls"
    conf = tmp_path / "thinp.conf"
    conf.write_text(
        "# strata-thinp settings\n"
        f"socket = {d.qmp_path}\n"
        "chunk=4M\n"
        "free-percent=25\n"
        "volume=fmt0\n"
        "poll-interval=30\n"
        f"extend-cmd=echo {{node}} {{size}} >> {calls}; "
        "truncate -s {size} {path}\n")
    agent = Agent(tmp_path, ["--config", str(conf)])
    managed.append(agent)
    agent.wait_for(lambda: agent.lines("arm"), what="first arm")
    arm = agent.lines("arm")[-1]
    assert int(arm["free-limit"]) == 3 * MiB   # 75% of 4M
    write_pattern_paced(d.nbd_uri, 12 * MiB, agent, image)
    # 12 MiB of data with 3 MiB kept free, 4 MiB at a time.
    agent.wait_for(lambda: len(agent.lines("extended")) >= 3,
                   what="three extensions")
    assert all(e["method"] == "command" for e in agent.lines("extend"))
    lines = calls.read_text().split("\n")
    assert lines[0].startswith("proto0 ")
    assert os.path.getsize(image) == int(lines[-2].split()[1])


def test_agent_rearms_after_daemon_restart(tmp_path, managed):
    image = new_image(tmp_path, str(tmp_path / "vol.qcow2"))
    d = image_daemon("strata", tmp_path, image, name="first")
    managed.append(d)
    agent_args = ["-s", d.qmp_path, "--volume", "fmt0", "--chunk", "4M",
                  "--poll-interval", "30"]
    agent = Agent(tmp_path, agent_args)
    managed.append(agent)
    agent.wait_for(lambda: agent.lines("arm"), what="first arm")
    d.stop()
    agent.wait_for(lambda: agent.lines("disconnect"), what="disconnect")
    # Same socket path, new daemon: no threshold armed there.
    d2 = image_daemon("strata", tmp_path, image, name="first")
    managed.append(d2)
    agent.wait_for(lambda: len(agent.lines("connect")) >= 2,
                   what="reconnect")
    agent.wait_for(lambda: len(agent.lines("arm")) >= 2, what="re-arm")
    q = d2.connect()
    info = q.cmd("query-block-allocation", {"node-name": "proto0"})[0]
    assert info["write-threshold"] == int(agent.lines("arm")[-1]["threshold"])


def test_agent_grows_loop_device(tmp_path, managed):
    require("losetup")
    if os.geteuid() != 0:
        pytest.skip("loop devices need root")
    loop = LoopDevice(str(tmp_path / "backing.img"), 64 * MiB)
    managed.append(loop)
    subprocess.run(["qemu-img", "create", "-f", "qcow2", loop.dev, "1G"],
                   check=True, capture_output=True)
    d = image_daemon("strata", tmp_path, loop.dev)
    managed.append(d)
    agent = Agent(tmp_path, ["-s", d.qmp_path, "--chunk", "64M",
                             "--poll-interval", "30"])
    managed.append(agent)
    agent.wait_for(lambda: agent.lines("arm"), what="first arm")
    assert agent.lines("discover")[0]["block-device"] == "yes"
    # 1 MiB into a 64 MiB device with 32 MiB of headroom needs no
    # extension.  If it fails or makes the agent extend, the qcow2 driver
    # placed the new clusters past the device's end (it takes the file
    # node's size as the image end): nothing the agent can fix.
    h = nbd.NBD()
    h.connect_uri(d.nbd_uri)
    try:
        h.pwrite(pattern(0, MiB), 0)
        failed = False
    except nbd.Error as e:
        failed = e.errnum == errno.ENOSPC
        if not failed:
            raise
    finally:
        h.shutdown()
    time.sleep(0.2)
    assert not failed and not agent.lines("exceeded")
    write_pattern(d.nbd_uri, 160 * MiB)
    sizes = assert_one_extend_per_crossing(agent, device=True)
    assert sizes and all(e["method"] == "builtin-loop"
                         for e in agent.lines("extend"))
    assert all((to - frm) == 64 * MiB for frm, to in sizes), sizes
    assert loop.size() == sizes[-1][1]
    assert (loop.size() - 64 * MiB) % (64 * MiB) == 0
    verify_pattern(d.nbd_uri, 160 * MiB)
    d.stop()
    check_clean(loop.dev)
