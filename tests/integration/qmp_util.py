# SPDX-License-Identifier: BSD-3-Clause
"""A small QMP client and daemon launcher for strata's integration tests.

Reusable by every area:

    with Daemon(stratad_bin, tmp_path, ["--blockdev", "..."]) as d:
        qmp = d.connect()            # greeting read, capabilities negotiated
        qmp.cmd("query-version")     # -> the "return" value (raises QmpError)
        qmp.execute("x", {...})      # -> the whole reply dict
        qmp.wait_event("BLOCK_WRITE_THRESHOLD", timeout=5)

Daemon also runs qemu-storage-daemon (binary="qemu-storage-daemon") for
side-by-side tests; the command lines are the same.
"""
import json
import os
import socket
import subprocess
import time

from nbd_util import stop as stop_process


NO_ID = object()   # execute(): send no "id" member (id=None sends null)


class QmpError(Exception):
    """An {"error": ...} reply; .cls and .desc hold its members."""

    def __init__(self, reply):
        self.reply = reply
        self.cls = reply["error"]["class"]
        self.desc = reply["error"]["desc"]
        super().__init__(f"{self.cls}: {self.desc}")


class QmpClient:
    def __init__(self, path, negotiate=True, timeout=10):
        # qemu-storage-daemon creates its socket file before it listens:
        # a connection refused right after the file appears is retried.
        deadline = time.monotonic() + timeout
        while True:
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.settimeout(timeout)
            try:
                self.sock.connect(path)
                break
            except ConnectionRefusedError:
                self.sock.close()
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)
        self.buf = b""
        self.events = []
        self.greeting = self.recv()
        if negotiate:
            self.sync_greeting()
            self.execute("qmp_capabilities")

    # -- raw wire access --
    def send_raw(self, data):
        if isinstance(data, str):
            data = data.encode()
        self.sock.sendall(data)

    def recv_line(self, timeout=10):
        """Returns one raw line (bytes, CRLF included) or None on timeout."""
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                return None
            if not chunk:
                raise ConnectionError("QMP server closed the connection")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return line + b"\n"

    def recv(self, timeout=10):
        """Returns the next message as a dict (events included)."""
        line = self.recv_line(timeout)
        if line is None:
            raise TimeoutError("no QMP message within %ss" % timeout)
        return json.loads(line)

    def sync_greeting(self, timeout=10):
        """Makes sure no greeting is still on its way: qemu-storage-daemon
        sometimes sends its greeting twice (its monitor's I/O thread and
        main thread both see the connection open), the second one after
        the client has started talking.  Sends a request that changes
        nothing, and drops every greeting up to its reply.  Before
        negotiation only."""
        self.send_raw('{"execute": "query-version", "id": "__greeting"}\n')
        while True:
            msg = self.recv(timeout)
            if msg.get("id") == "__greeting":
                return
            if "QMP" in msg:
                continue
            raise AssertionError(f"unexpected message {msg} before sync")

    # -- commands --
    def execute(self, name, arguments=None, id=NO_ID, timeout=30):
        """Sends a command and returns the whole reply, keeping events."""
        req = {"execute": name}
        if arguments is not None:
            req["arguments"] = arguments
        if id is not NO_ID:
            req["id"] = id
        self.send_raw(json.dumps(req) + "\n")
        while True:
            msg = self.recv(timeout)
            if "event" in msg:
                self.events.append(msg)
                continue
            if "QMP" in msg:
                # A late second greeting (see sync_greeting).
                continue
            return msg

    def cmd(self, name, arguments=None, **kwargs):
        """Runs a command; returns "return" or raises QmpError."""
        if kwargs:
            arguments = dict(arguments or {}, **kwargs)
        reply = self.execute(name, arguments)
        if "error" in reply:
            raise QmpError(reply)
        return reply["return"]

    def wait_event(self, name=None, timeout=10):
        """Returns the next event (named name, if given)."""
        deadline = time.monotonic() + timeout
        while True:
            for i, ev in enumerate(self.events):
                if name is None or ev["event"] == name:
                    return self.events.pop(i)
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no event {name} within {timeout}s")
            msg = self.recv(left)
            if "event" in msg:
                self.events.append(msg)

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def wait_for_path(path, proc=None, timeout=10):
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(
                f"daemon exited with {proc.returncode}: {proc.stderr.read()}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} did not appear")
        time.sleep(0.02)


class Daemon:
    """stratad (or qemu-storage-daemon) with one QMP monitor socket."""

    def __init__(self, binary, tmp_path, args=(), monitor=True, env=None,
                 name="d", cwd=None):
        self.binary = binary
        self.dir = str(tmp_path)
        self.qmp_path = os.path.join(self.dir, f"{name}-qmp.sock")
        cmd = [binary]
        if monitor:
            cmd += ["--chardev",
                    f"socket,path={self.qmp_path},server=on,wait=off,id=m0",
                    "--monitor", "chardev=m0"]
        cmd += list(args)
        self.cmdline = cmd
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True,
                                     env=env, cwd=cwd)
        self.clients = []
        if monitor:
            wait_for_path(self.qmp_path, self.proc)

    def connect(self, negotiate=True):
        # qemu-storage-daemon now and then drops a connection it has just
        # greeted (under load, its monitor's two threads racing over a new
        # client); while it runs it gets another try.  stratad never does:
        # a reset from it is a failure.  A daemon that exited is reported
        # with what it printed.
        peer = os.path.basename(self.binary) == "qemu-storage-daemon"
        for attempt in range(3):
            try:
                c = QmpClient(self.qmp_path, negotiate=negotiate)
                break
            except (ConnectionResetError, BrokenPipeError) as e:
                if self.proc.poll() is not None:
                    raise RuntimeError(
                        f"{self.binary} exited with {self.proc.returncode}: "
                        f"{self.proc.stderr.read()}") from e
                if attempt == 2 or not peer:
                    raise
                time.sleep(0.1)
        self.clients.append(c)
        return c

    def wait(self, timeout=10):
        return self.proc.wait(timeout)

    def stop(self):
        for c in self.clients:
            c.close()
        stop_process(self.proc)
        for f in (self.proc.stdout, self.proc.stderr):
            if f:
                f.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
