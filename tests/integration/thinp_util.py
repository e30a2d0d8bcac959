# SPDX-License-Identifier: BSD-3-Clause
"""Helpers for the thin-provisioning tests: daemons serving a qcow2 image
through a named protocol node, qemu-io over NBD, loop devices that are
always detached, and the strata-thinp agent as a managed process."""
import json
import os
import re
import subprocess
import time

from block_util import LoopDevice
from conftest import BUILD, binary
from nbd_util import stop as stop_process
from qmp_util import Daemon, wait_for_path

MiB = 1024 * 1024


def daemon_binary(kind):
    return "qemu-storage-daemon" if kind == "qsd" else binary("stratad")


def image_daemon(kind, tmp_path, image, discard="ignore", name=None,
                 proto_driver="file"):
    """qsd or stratad with proto0 (the image's file) under fmt0 (qcow2),
    fmt0 exported writable over NBD as "fmt0"."""
    name = name or kind
    nbd_sock = os.path.join(str(tmp_path), f"{name}-nbd.sock")
    args = [
        "--blockdev", f"driver={proto_driver},node-name=proto0,"
                      f"filename={image},discard={discard}",
        "--blockdev", f"driver=qcow2,node-name=fmt0,file=proto0,"
                      f"discard={discard}",
        "--nbd-server", f"addr.type=unix,addr.path={nbd_sock}",
        "--export", "type=nbd,id=e0,node-name=fmt0,writable=on",
    ]
    d = Daemon(daemon_binary(kind), tmp_path, args, name=name)
    try:
        wait_for_path(nbd_sock, d.proc)
    except Exception:
        d.stop()
        raise
    d.nbd_sock = nbd_sock
    d.nbd_uri = f"nbd+unix:///fmt0?socket={nbd_sock}"
    return d


def qemu_io(uri, *commands, check=True):
    """Runs qemu-io commands over NBD; returns the CompletedProcess."""
    cmd = ["qemu-io", "-f", "raw"]
    for c in commands:
        cmd += ["-c", c]
    cmd.append(uri)
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    failed = proc.returncode != 0 or re.search(
        r"(failed|error|Pattern verification)", proc.stdout + proc.stderr,
        re.IGNORECASE)
    if check and failed:
        raise AssertionError(f"qemu-io {commands} failed:\n{proc.stdout}\n"
                             f"{proc.stderr}")
    return proc


def drain_events(qmp, settle=0.3):
    """Returns every event that arrives within settle seconds."""
    deadline = time.monotonic() + settle
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        line = qmp.recv_line(left)
        if line is None:
            break
        msg = json.loads(line)
        if "event" in msg:
            qmp.events.append(msg)
    out, qmp.events = qmp.events, []
    return out


class Agent:
    """strata-thinp in the foreground, its log kept in a file."""

    def __init__(self, tmp_path, args):
        self.log_path = os.path.join(str(tmp_path), "thinp.log")
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen([binary("strata-thinp")] + list(args),
                                     stdin=subprocess.DEVNULL,
                                     stdout=self.log, stderr=subprocess.STDOUT)

    def text(self):
        with open(self.log_path) as f:
            return f.read()

    def lines(self, action=None):
        """Structured lines as dicts (key=value), optionally one action."""
        out = []
        for line in self.text().splitlines():
            fields = dict(re.findall(r'(\w[\w-]*)=("[^"]*"|\S+)', line))
            fields = {k: v.strip('"') for k, v in fields.items()}
            if action is None or fields.get("action") == action:
                out.append(fields)
        return out

    def wait_for(self, pred, timeout=30, what="condition"):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if pred():
                return
            if self.proc.poll() is not None:
                raise AssertionError(f"strata-thinp exited "
                                     f"{self.proc.returncode}:\n{self.text()}")
            time.sleep(0.05)
        raise AssertionError(f"timed out waiting for {what}:\n{self.text()}")

    def stop(self):
        stop_process(self.proc)
        self.log.close()


__all__ = ["BUILD", "MiB", "image_daemon", "qemu_io", "drain_events",
           "LoopDevice", "Agent", "daemon_binary"]
