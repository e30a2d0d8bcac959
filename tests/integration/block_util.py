"""Helpers for the block-layer integration tests (locking, file/raw).

LockHolder starts a process that keeps an image open (stratad or
qemu-storage-daemon with the same --blockdev arguments) and waits until
its OFD locks are visible, so tests need no sleeps.
"""
import os
import subprocess
import time


def lock_bytes(path):
    """QEMU lock bytes (100-103, 200-203) held on path, per /proc/locks."""
    dev_ino = os.stat(path)
    ino = dev_ino.st_ino
    held = set()
    with open("/proc/locks") as f:
        for line in f:
            parts = line.split()
            # "1: OFDLCK ADVISORY READ -1 fe:00:123 100 101"
            if len(parts) < 8 or parts[1] != "OFDLCK":
                continue
            if int(parts[5].rsplit(":", 1)[1]) != ino:
                continue
            start, end = int(parts[6]), int(parts[7])
            for b in range(max(start, 100), min(end, 203) + 1):
                if 100 <= b <= 103 or 200 <= b <= 203:
                    held.add(b)
    return sorted(held)


class LockHolder:
    """Runs binary with args until stop(); waits for locks on path."""

    def __init__(self, binary, args, path, expect_locks=True, timeout=10):
        self.proc = subprocess.Popen([binary] + args, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + timeout
        # Locks are taken as the graph is built (the protocol node first,
        # then the bytes its parents ask for), so wait until the set is
        # non-empty and has stopped changing.
        last = None
        while expect_locks:
            held = lock_bytes(path)
            if held and held == last:
                break
            last = held
            if self.proc.poll() is not None:
                out, err = self.proc.communicate()
                raise AssertionError(f"{binary} exited {self.proc.returncode}: {err}")
            if time.monotonic() > deadline:
                self.stop()
                raise AssertionError(f"{binary} took no locks on {path}")
            time.sleep(0.05)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout:
            self.proc.stdout.close()
        if self.proc.stderr:
            self.proc.stderr.close()


def blockdev_args(path, fmt, read_only=False, force_share=False):
    """--blockdev arguments for a file node plus a format node."""
    ro = ",read-only=on" if read_only else ""
    fs = ",force-share=on" if force_share else ""
    args = ["--blockdev", f"driver=file,node-name=f0,filename={path}{ro}{fs}"]
    if fmt != "file":
        args += ["--blockdev", f"driver={fmt},node-name=fmt0,file=f0{ro}{fs}"]
    return args
