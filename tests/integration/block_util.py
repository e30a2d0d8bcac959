# SPDX-License-Identifier: BSD-3-Clause
"""Helpers for the block-layer integration tests (locking, file/raw).

LockHolder starts a process that keeps an image open (stratad or
qemu-storage-daemon with the same --blockdev arguments) and waits until
its OFD locks are visible, so tests need no sleeps.
"""
import os
import subprocess
import time

from nbd_util import stop


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
        stop(self.proc)
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


class LoopDevice:
    """A loop device over a new sparse file, with the given logical block
    size.  detach() is idempotent; tests call it from a finalizer so a
    failing test never leaves the device behind.  Only this device is
    ever touched."""

    def __init__(self, backing, size, sector_size=512):
        with open(backing, "wb") as f:
            f.truncate(size)
        self.backing = str(backing)
        out = subprocess.run(["losetup", "--find", "--show",
                              "--sector-size", str(sector_size), self.backing],
                             capture_output=True, text=True)
        if out.returncode != 0:
            raise RuntimeError(f"losetup failed: {out.stderr.strip()}")
        self.dev = out.stdout.strip()

    def grow(self, size):
        """Makes the backing file size bytes and the device follow."""
        os.truncate(self.backing, size)
        subprocess.run(["losetup", "-c", self.dev], check=True,
                       capture_output=True)

    def size(self):
        """The device's size as a reader sees it now."""
        with open(self.dev, "rb") as f:
            return f.seek(0, os.SEEK_END)

    def read(self, offset, length):
        """Reads the device itself (what a reader after us would see)."""
        fd = os.open(self.dev, os.O_RDONLY)
        try:
            return os.pread(fd, length, offset)
        finally:
            os.close(fd)

    def allocated(self):
        """Bytes the backing file occupies on its file system."""
        return os.stat(self.backing).st_blocks * 512

    def detach(self):
        if self.dev:
            subprocess.run(["losetup", "-d", self.dev], capture_output=True)
            self.dev = None
