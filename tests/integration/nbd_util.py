# SPDX-License-Identifier: BSD-3-Clause
"""Helpers for the NBD integration tests: a raw-socket NBD client that
shows the exact bytes a server sends, and launchers for strata's NBD
server and for qemu-storage-daemon as the reference peer."""
import json
import os
import socket
import struct
import subprocess
import time

from conftest import BUILD

NBDMAGIC = 0x4e42444d41474943
IHAVEOPT = 0x49484156454F5054
REPLY_MAGIC = 0x3e889045565a9
SIMPLE_MAGIC = 0x67446698
STRUCT_MAGIC = 0x668e33ef
REQUEST_MAGIC = 0x25609513

OPT_EXPORT_NAME, OPT_ABORT, OPT_LIST = 1, 2, 3
OPT_STARTTLS, OPT_INFO, OPT_GO, OPT_STRUCTURED_REPLY = 5, 6, 7, 8
OPT_LIST_META_CONTEXT, OPT_SET_META_CONTEXT, OPT_EXTENDED_HEADERS = 9, 10, 11

REP_ACK, REP_SERVER, REP_INFO, REP_META_CONTEXT = 1, 2, 3, 4
REP_ERR = 1 << 31

INFO_EXPORT, INFO_NAME, INFO_DESCRIPTION, INFO_BLOCK_SIZE = 0, 1, 2, 3

CMD_READ, CMD_WRITE, CMD_DISC, CMD_FLUSH = 0, 1, 2, 3
CMD_TRIM, CMD_CACHE, CMD_WRITE_ZEROES, CMD_BLOCK_STATUS = 4, 5, 6, 7
FLAG_FUA, FLAG_NO_HOLE, FLAG_DF, FLAG_REQ_ONE, FLAG_FAST_ZERO = 1, 2, 4, 8, 16

CHUNK_NONE, CHUNK_OFFSET_DATA, CHUNK_OFFSET_HOLE = 0, 1, 2
CHUNK_BLOCK_STATUS, CHUNK_ERROR, CHUNK_ERROR_OFFSET = 5, 0x8001, 0x8002


class RawClient:
    """A deliberately low-level NBD client over a unix socket."""

    def __init__(self, path, timeout=10):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(path)
        self.structured = False

    def close(self):
        self.sock.close()

    def recv_exact(self, n):
        buf = b""
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise EOFError(f"server closed after {len(buf)}/{n} bytes")
            buf += chunk
        return buf

    def send(self, data):
        self.sock.sendall(data)

    # ---- handshake ----
    def greeting(self, client_flags=3):
        magic, opt, flags = struct.unpack(">QQH", self.recv_exact(18))
        assert magic == NBDMAGIC and opt == IHAVEOPT
        self.send(struct.pack(">I", client_flags))
        return flags

    def send_option(self, opt, data=b""):
        self.send(struct.pack(">QII", IHAVEOPT, opt, len(data)) + data)

    def recv_option_reply(self):
        magic, opt, rtype, length = struct.unpack(">QIII", self.recv_exact(20))
        assert magic == REPLY_MAGIC, hex(magic)
        return opt, rtype, self.recv_exact(length)

    def option(self, opt, data=b""):
        """Sends an option and collects replies up to ACK or an error."""
        self.send_option(opt, data)
        replies = []
        while True:
            r = self.recv_option_reply()
            replies.append(r)
            if r[1] == REP_ACK or r[1] & REP_ERR:
                return replies

    @staticmethod
    def info_data(name, infos=()):
        n = name.encode()
        return (struct.pack(">I", len(n)) + n + struct.pack(">H", len(infos))
                + b"".join(struct.pack(">H", i) for i in infos))

    @staticmethod
    def meta_data(name, queries):
        n = name.encode()
        out = struct.pack(">I", len(n)) + n + struct.pack(">I", len(queries))
        for q in queries:
            out += struct.pack(">I", len(q)) + q.encode()
        return out

    def go(self, name, infos=(), opt=OPT_GO):
        """Returns (export size, transmission flags, replies)."""
        replies = self.option(opt, self.info_data(name, infos))
        size = flags = None
        for _, rtype, data in replies:
            if rtype == REP_INFO and struct.unpack(">H", data[:2])[0] == 0:
                size, flags = struct.unpack(">QH", data[2:12])
        return size, flags, replies

    def connect(self, name, structured=True, contexts=()):
        """Full handshake the way qemu-img does it; returns (size, flags)."""
        self.greeting()
        if structured:
            r = self.option(OPT_STRUCTURED_REPLY)
            assert r[-1][1] == REP_ACK
            self.structured = True
        if contexts:
            self.option(OPT_SET_META_CONTEXT, self.meta_data(name, contexts))
        size, flags, replies = self.go(name)
        assert replies[-1][1] == REP_ACK, replies
        return size, flags

    # ---- transmission ----
    def request(self, cmd, offset=0, length=0, flags=0, cookie=1, data=b""):
        self.send(struct.pack(">IHHQQI", REQUEST_MAGIC, flags, cmd, cookie,
                              offset, length) + data)

    def reply(self, read_len=0):
        """Reads one complete reply.  Returns ("simple", err, cookie, data)
        or ("structured", cookie, [(type, flags, payload)...])."""
        magic = struct.unpack(">I", self.recv_exact(4))[0]
        if magic == SIMPLE_MAGIC:
            err, cookie = struct.unpack(">IQ", self.recv_exact(12))
            data = self.recv_exact(read_len) if err == 0 and read_len else b""
            return ("simple", err, cookie, data)
        assert magic == STRUCT_MAGIC, hex(magic)
        chunks = []
        while True:
            flags, ctype, cookie, length = struct.unpack(">HHQI",
                                                         self.recv_exact(16))
            chunks.append((ctype, flags, self.recv_exact(length)))
            if flags & 1:
                return ("structured", cookie, chunks)
            assert struct.unpack(">I", self.recv_exact(4))[0] == STRUCT_MAGIC

    def cmd(self, cmd, offset=0, length=0, flags=0, cookie=1, data=b""):
        self.request(cmd, offset, length, flags, cookie, data)
        return self.reply(length if cmd == CMD_READ else 0)


# strata sends structured READs shorter than this as one data chunk
# (src/nbd/export-io.c, NBD_SPARSE_READ_MIN); qsd splits every read
# into data and hole chunks.  Both are correct NBD.
SPARSE_READ_MIN = 64 * 1024


def read_content(reply, offset, length):
    """The bytes a READ reply carries, holes filled with zeroes, or None
    when it is not a successful reply."""
    if reply[0] == "simple":
        return reply[3] if reply[1] == 0 else None
    out = bytearray(length)
    for ctype, _, payload in reply[2]:
        if ctype == CHUNK_OFFSET_DATA:
            off = struct.unpack(">Q", payload[:8])[0] - offset
            out[off:off + len(payload) - 8] = payload[8:]
        elif ctype != CHUNK_OFFSET_HOLE:
            return None
    return bytes(out)


def comparable_read(reply, offset, length):
    """A READ reply as the differential tests compare it: the chunk
    layout from SPARSE_READ_MIN up, only the content below it (where the
    layouts differ on purpose); errors as they are."""
    if reply[0] == "structured" and length < SPARSE_READ_MIN:
        data = read_content(reply, offset, length)
        if data is not None:
            return ("content", reply[1], data)
    return reply


def decode_error_chunk(payload):
    err, mlen = struct.unpack(">IH", payload[:6])
    return err, payload[6:6 + mlen].decode()


def decode_status_chunk(payload):
    ctx = struct.unpack(">I", payload[:4])[0]
    ext = [struct.unpack(">II", payload[i:i + 8])
           for i in range(4, len(payload), 8)]
    return ctx, ext


def wait_for_socket(path, proc, timeout=15):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited {proc.returncode}")
        if os.path.exists(path):
            try:
                s = socket.socket(socket.AF_UNIX)
                s.connect(path)
                s.close()
                return
            except OSError:
                pass
        time.sleep(0.02)
    raise TimeoutError(f"{path} did not appear")


def list_exports(path):
    """Export names from NBD_OPT_LIST."""
    c = RawClient(path)
    try:
        c.greeting()
        names = []
        for _, rtype, data in c.option(OPT_LIST):
            if rtype == REP_SERVER:
                n = struct.unpack(">I", data[:4])[0]
                names.append(data[4:4 + n].decode())
        c.option(OPT_ABORT)
        return names
    finally:
        c.close()


def wait_for_exports(path, proc, names, timeout=15):
    """The listening socket appears when the server starts, before the
    exports on the command line are added (stratad accepts on its own
    thread at once): wait until every export is listed."""
    deadline = time.time() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited {proc.returncode}")
        if set(names) <= set(list_exports(path)):
            return
        if time.time() > deadline:
            raise TimeoutError(f"exports {names} did not appear on {path}")
        time.sleep(0.02)


# Exit codes make check gives ASan and UBSan reports (see the Makefile).
SANITIZER_EXIT_CODES = (86, 87)


def stop(proc):
    """Stops a daemon; fails if it ended with a sanitizer report (a leak
    found at exit, say), which would otherwise go unnoticed."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if proc.returncode in SANITIZER_EXIT_CODES:
        report = ""
        err = getattr(proc, "stderr", None)
        if err is not None and not err.closed:
            try:
                report = err.read()
            except (OSError, ValueError):
                pass
        raise AssertionError(f"{proc.args[0]} exited {proc.returncode} "
                             f"with a sanitizer report:\n{report}")


# ---- servers ----

def _strata_binary():
    """stratad from the build directory; None when it is not built."""
    for sub in ("src/stratad/stratad", "stratad"):
        path = os.path.join(BUILD, sub)
        if os.path.exists(path):
            return path
    return None


def keyval(d, prefix=""):
    """Flattens a dict into QEMU's dotted key=value syntax."""
    out = []
    for k, v in d.items():
        key = prefix + k
        if isinstance(v, dict):
            out.append(keyval(v, key + "."))
        else:
            if isinstance(v, bool):
                v = "on" if v else "off"
            out.append(f"{key}={str(v).replace(',', ',,')}")
    return ",".join(out)


class Server:
    """A running NBD server (strata or qemu-storage-daemon)."""

    def __init__(self, kind, proc, sock):
        self.kind = kind
        self.proc = proc
        self.sock = sock

    def uri(self, name=""):
        return f"nbd+unix:///{name}?socket={self.sock}"

    def client(self):
        return RawClient(self.sock)

    def stop(self):
        stop(self.proc)


def start_server(kind, tmp_path, blockdevs, exports, max_connections=None,
                 server_opts="", pre_args=(), list_exports_first=True):
    """Starts kind ("strata" or "qsd") serving blockdevs (list of
    blockdev-add dicts) with exports (list of block-export-add dicts),
    with the same command line: stratad takes qemu-storage-daemon's.
    The daemon's stderr goes to <kind>.log in tmp_path (a pipe nobody
    reads could fill up and stall it).  pre_args go first (--object);
    list_exports_first=False skips waiting for the exports to be listed
    (a TLS-only server lists nothing in plaintext)."""
    sock = str(tmp_path / f"{kind}.sock")
    if kind == "qsd":
        cmd = ["qemu-storage-daemon"]
    else:
        binary = _strata_binary()
        if binary is None:
            import pytest
            pytest.skip(f"stratad is not built in {BUILD}")
        cmd = [binary]
    cmd += list(pre_args)
    for b in blockdevs:
        cmd += ["--blockdev", json.dumps(b)]
    ns = "addr.type=unix,addr.path=" + sock
    if max_connections is not None:
        ns += f",max-connections={max_connections}"
    if server_opts:
        ns += "," + server_opts
    cmd += ["--nbd-server", ns]
    for e in exports:
        # Both accept JSON; stratad is also given the dotted form users
        # type, so that parser is covered too.
        cmd += ["--export", json.dumps(e) if kind == "qsd" else keyval(e)]
    log = open(tmp_path / f"{kind}.log", "w")
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=log)
    log.close()
    try:
        wait_for_socket(sock, proc)
        if list_exports_first:
            wait_for_exports(sock, proc,
                             [e.get("name", e["node-name"]) for e in exports])
    except Exception:
        stop(proc)
        raise RuntimeError((tmp_path / f"{kind}.log").read_text())
    return Server(kind, proc, sock)


def _run(*cmd):
    subprocess.run(cmd, check=True, capture_output=True)


def qcow2_chain(tmp_path, name="img"):
    """A 2-layer image: a 4 MiB raw base with data at 0 and 1M, a qcow2
    overlay with data at 64k..1M.  Returns (base, top)."""
    base = str(tmp_path / f"{name}-base.raw")
    top = str(tmp_path / f"{name}-top.qcow2")
    _run("qemu-img", "create", "-f", "raw", base, "4M")
    _run("qemu-io", "-f", "raw", "-c", "write -P 0x11 0 64k",
         "-c", "write -P 0x22 1M 64k", base)
    _run("qemu-img", "create", "-f", "qcow2", "-b", base, "-F", "raw", top)
    _run("qemu-io", "-f", "qcow2", "-c", "write -P 0x33 64k 960k", top)
    return base, top


def qcow2_blockdev(path, node="disk", read_only=False):
    return {"driver": "qcow2", "node-name": node, "read-only": read_only,
            "file": {"driver": "file", "filename": path}}


def raw_blockdev(path, node="disk", read_only=False):
    return {"driver": "raw", "node-name": node, "read-only": read_only,
            "file": {"driver": "file", "filename": path}}


def qcow2_chain3(tmp_path, name="c3"):
    """A 3-layer qcow2 chain with every kind of run block status can
    report: data in each layer, data shadowed by a higher layer, zero
    clusters hiding lower data, partial clusters, a zero cluster inside a
    data run, different cluster sizes per layer, and a top larger than
    its backing chain (the tail is allocated nowhere).  Returns the top's
    path; the top is 8 MiB."""
    base = str(tmp_path / f"{name}-base.qcow2")
    mid = str(tmp_path / f"{name}-mid.qcow2")
    top = str(tmp_path / f"{name}-top.qcow2")
    _run("qemu-img", "create", "-f", "qcow2", base, "6M")
    _run("qemu-io", "-f", "qcow2",
         "-c", "write -P 0x11 0 128k",
         "-c", "write -P 0x12 1M 64k",
         "-c", "write -P 0x13 3M 4k",
         "-c", "write -P 0x14 5M 256k",
         "-c", "write -z 5184k 64k", base)
    _run("qemu-img", "create", "-f", "qcow2", "-o", "cluster_size=32k",
         "-b", base, "-F", "qcow2", mid, "6M")
    _run("qemu-io", "-f", "qcow2",
         "-c", "write -P 0x21 64k 128k",
         "-c", "write -z 1M 32k",
         "-c", "write -P 0x22 2M 32k",
         "-c", "write -P 0x23 4100k 3k", mid)
    _run("qemu-img", "create", "-f", "qcow2", "-b", mid, "-F", "qcow2",
         top, "8M")
    _run("qemu-io", "-f", "qcow2",
         "-c", "write -P 0x31 512k 8k",
         "-c", "write -z 3M 64k",
         "-c", "write -z -u 2M 64k",
         "-c", "write -P 0x32 7M 1M",
         "-c", "write -P 0x33 6M 1k", top)
    return top


def sparse_raw(tmp_path, name="sparse"):
    """An 8 MiB raw file with holes (file-system holes, found with
    SEEK_DATA/SEEK_HOLE) between runs of data, one of them a run of
    written zeroes, and data in the last 4 KiB."""
    path = str(tmp_path / f"{name}.raw")
    with open(path, "wb") as f:
        f.truncate(8 << 20)
        for off, data in [(1 << 20, b"\x41" * 65536),
                          ((4 << 20) + 4096, b"\x42" * 4096),
                          (5 << 20, bytes(65536)),
                          ((8 << 20) - 4096, b"\x43" * 4096)]:
            f.seek(off)
            f.write(data)
    return path
