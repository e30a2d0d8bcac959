# SPDX-License-Identifier: BSD-3-Clause
"""Live overlays over QMP: blockdev-create, blockdev-snapshot,
blockdev-snapshot-sync and transaction, against qemu-storage-daemon.

Every test starts stratad and qemu-storage-daemon with the same command
line on a copy of its own, sends both the same QMP lines and compares
the replies and the events (timestamps dropped, each peer's directory
written as DIR).  The main test replays what libvirt sends for an
external disk-only snapshot while a client writes through the NBD
export, then checks the data, both images and the chain with qemu-img.
"""
import hashlib
import json
import os
import subprocess
import threading
import time

import nbd
import pytest

from conftest import binary
from qmp_util import Daemon, QmpError

MiB = 1 << 20
SIZE = 64 * MiB
BLOCK = 64 * 1024
KINDS = ["strata", "qsd"]


def qimg(*args, check=True):
    return subprocess.run(["qemu-img", *map(str, args)], check=check,
                          capture_output=True, text=True)


def base_blockdevs(d):
    """The disk as libvirt names it: a file node and a qcow2 node."""
    return [
        "--blockdev", json.dumps({
            "driver": "file", "node-name": "libvirt-2-storage",
            "filename": str(d / "base.qcow2")}),
        "--blockdev", json.dumps({
            "driver": "qcow2", "node-name": "libvirt-2-format",
            "file": "libvirt-2-storage", "backing": None}),
    ]


class Peer:
    def __init__(self, kind, tmp_path, extra_images=()):
        self.kind = kind
        self.dir = tmp_path / kind
        self.dir.mkdir()
        base = self.dir / "base.qcow2"
        qimg("create", "-f", "qcow2", base, SIZE)
        subprocess.run(["qemu-io", "-f", "qcow2", "-c",
                        "write -P 0x5a 0 1M", "-c", "write -P 0x6b 40M 2M",
                        str(base)], check=True, capture_output=True)
        args = base_blockdevs(self.dir)
        for name in extra_images:
            qimg("create", "-f", "qcow2", self.dir / f"{name}.qcow2", SIZE)
            args += ["--blockdev", json.dumps({
                "driver": "qcow2", "node-name": name, "backing": None,
                "file": {"driver": "file",
                         "filename": str(self.dir / f"{name}.qcow2")}})]
        self.nbd_sock = self.dir / "nbd.sock"
        args += ["--nbd-server", f"addr.type=unix,addr.path={self.nbd_sock}",
                 "--export", "type=nbd,id=e0,node-name=libvirt-2-format,"
                 "name=disk,writable=on"]
        prog = binary("stratad") if kind == "strata" else \
            "qemu-storage-daemon"
        self.d = Daemon(prog, tmp_path, args, name=kind)
        self.q = self.d.connect()
        self.transcript = []

    def norm(self, v):
        return json.loads(json.dumps(v).replace(str(self.dir), "DIR"))

    def cmd(self, name, args=None):
        """Runs a command; records and returns its normalised outcome."""
        try:
            out = ("ok", self.q.cmd(name, args))
        except QmpError as e:
            out = ("error", e.cls, e.desc)
        out = self.norm(out)
        self.transcript.append((name, out))
        return out

    def events(self, quiet=0.3):
        """The events that came until none came for `quiet` seconds."""
        out = []
        while True:
            try:
                ev = self.q.wait_event(timeout=quiet)
            except TimeoutError:
                break
            ev.pop("timestamp", None)
            out.append(self.norm(ev))
        self.transcript.append(("events", out))
        return out

    def wait_job(self, job_id, timeout=30):
        """Events until job_id concluded (they stay in the transcript)."""
        out = []
        deadline = time.monotonic() + timeout
        while True:
            ev = self.q.wait_event("JOB_STATUS_CHANGE",
                                   timeout=deadline - time.monotonic())
            ev.pop("timestamp", None)
            out.append(ev)
            if ev["data"] == {"status": "concluded", "id": job_id}:
                break
        self.transcript.append(("job-events", out))
        return out

    def export_node(self):
        return self.q.cmd("query-block-exports")[0]["node-name"]

    def backing_of(self, node):
        for n in self.q.cmd("query-named-block-nodes"):
            if n["node-name"] == node:
                return n["image"].get("backing-image", {}).get("filename")
        raise KeyError(node)

    def stop(self):
        self.d.stop()


@pytest.fixture
def peers(tmp_path):
    made = []

    def make(**kw):
        for kind in KINDS:
            made.append(Peer(kind, tmp_path, **kw))
        return made

    yield make
    for p in made:
        p.stop()


def both(ps, fn):
    """Runs fn on each peer and checks they agree; returns strata's."""
    outs = [fn(p) for p in ps]
    assert outs[0] == outs[1], f"strata: {outs[0]}\nqsd:    {outs[1]}"
    return outs[0]


# ---- blockdev-create ----

CREATE_ERRORS = [
    {"job-id": "j", "options": {"driver": "raw"}},
    {"job-id": "j", "options": {"driver": "foo"}},
    {"job-id": "j"},
    {"options": {"driver": "file", "filename": "DIR/x", "size": 0}},
    {"job-id": "j", "options": {"driver": "file", "size": 0}},
    {"job-id": "j", "options": {"driver": "file", "filename": "DIR/x",
                                "size": "big"}},
    {"job-id": "j", "options": {"driver": "file", "filename": "DIR/x",
                                "size": 0, "preallocation": "lots"}},
    {"job-id": "j", "options": {"driver": "qcow2", "file": "x", "size": 0,
                                "bogus": 1}},
    {"job-id": "j", "options": {"driver": "qcow2", "file": "x", "size": 0,
                                "version": "v4"}},
    {"job-id": "j", "options": {"driver": "qcow2", "size": 0}},
    {"job-id": "j", "options": {"driver": "qcow2", "file": "x",
                                "size": 0, "backing-fmt": "nope"}},
    {"job-id": "1bad", "options": {"driver": "file", "filename": "DIR/x",
                                   "size": 0}},
    {"job-id": "j", "options": {"driver": "qcow2", "file": 5, "size": 0}},
    {"job-id": "j", "options": {"driver": "qcow2", "file": "x", "size": 1.5}},
    {"job-id": "j", "options": {"driver": "qcow2", "file": "x", "size": 0,
                                "refcount-bits": "x"}},
    {"job-id": "j", "options": {"driver": "qcow2", "file": "x", "size": 0,
                                "compression-type": "lz"}},
]


def args_in(p, args):
    return json.loads(json.dumps(args).replace("DIR", str(p.dir)))


def test_blockdev_create_argument_errors(peers):
    ps = peers()
    for a in CREATE_ERRORS:
        both(ps, lambda p: p.cmd("blockdev-create", args_in(p, a)))
    both(ps, lambda p: p.events())
    assert not any(os.path.exists(p.dir / "x") for p in ps)


# Jobs that fail when they run: the command succeeds, the job concludes
# with the error in query-jobs.
CREATE_JOB_FAILURES = [
    {"driver": "file", "filename": "DIR/nodir/f", "size": 0},
    {"driver": "qcow2", "file": "nonode", "size": MiB},
    {"driver": "qcow2", "file": "f-node", "size": 1000},
    {"driver": "qcow2", "file": "f-node", "size": MiB,
     "cluster-size": 3000},
    {"driver": "qcow2", "file": "f-node", "size": MiB, "version": "v2",
     "lazy-refcounts": True},
    {"driver": "qcow2", "file": "f-node", "size": MiB, "version": "v2",
     "refcount-bits": 8},
    {"driver": "qcow2", "file": "f-node", "size": MiB, "refcount-bits": 3},
    {"driver": "qcow2", "file": "f-node", "size": MiB,
     "backing-fmt": "qcow2"},
    {"driver": "qcow2", "file": "f-node", "size": MiB,
     "backing-file": "base.qcow2", "preallocation": "metadata"},
    {"driver": "qcow2", "size": MiB,
     "file": {"driver": "file", "filename": "DIR/nonexist.img"}},
    # What the running disk uses: its file is locked, its node taken.
    {"driver": "file", "filename": "DIR/base.qcow2", "size": 0},
    {"driver": "qcow2", "file": "base-file", "size": MiB},
    {"driver": "qcow2", "file": "libvirt-2-storage", "size": MiB},
]


def test_blockdev_create_job_failures(peers):
    ps = peers()
    both(ps, lambda p: p.cmd("blockdev-create", args_in(p, {
        "job-id": "mk", "options": {"driver": "file",
                                    "filename": "DIR/f.img", "size": 0}})))
    both(ps, lambda p: p.wait_job("mk"))
    both(ps, lambda p: p.cmd("job-dismiss", {"id": "mk"}))
    both(ps, lambda p: p.cmd("blockdev-add", args_in(p, {
        "driver": "file", "node-name": "f-node", "filename": "DIR/f.img"})))
    both(ps, lambda p: p.cmd("blockdev-add", args_in(p, {
        "driver": "file", "node-name": "base-file",
        "filename": "DIR/base.qcow2"})))
    for i, o in enumerate(CREATE_JOB_FAILURES):
        jid = f"fail{i}"
        both(ps, lambda p: p.cmd("blockdev-create",
                                 args_in(p, {"job-id": jid, "options": o})))
        both(ps, lambda p: p.norm(p.wait_job(jid)))
        both(ps, lambda p: p.cmd("query-jobs"))
        both(ps, lambda p: p.cmd("query-block-jobs"))
        both(ps, lambda p: p.cmd("block-job-dismiss", {"id": jid}))
        both(ps, lambda p: p.cmd("job-dismiss", {"id": jid}))
        both(ps, lambda p: p.events())
    # The running disk's image was left alone.
    both(ps, lambda p: hashlib.sha256(
        open(p.dir / "base.qcow2", "rb").read()).hexdigest())


# qcow2 variants: the images strata lays out must be byte-identical to
# the ones QEMU writes.
QCOW2_VARIANTS = [
    {},
    {"backing-file": "base.qcow2", "backing-fmt": "qcow2"},
    {"cluster-size": 4096, "lazy-refcounts": True, "refcount-bits": 8},
    {"version": "v2"},
    {"compression-type": "zstd", "cluster-size": 2 * MiB},
    {"preallocation": "metadata", "cluster-size": 16384},
    {"preallocation": "falloc"},
    {"extended-l2": False, "refcount-bits": 64},
]


def test_blockdev_create_qcow2_images(peers):
    ps = peers()
    for i, extra in enumerate(QCOW2_VARIANTS):
        path = f"DIR/v{i}.qcow2"
        both(ps, lambda p: p.cmd("blockdev-create", args_in(p, {
            "job-id": f"file{i}", "options": {
                "driver": "file", "filename": path, "size": 0}})))
        both(ps, lambda p: p.wait_job(f"file{i}"))
        both(ps, lambda p: p.cmd("job-dismiss", {"id": f"file{i}"}))
        both(ps, lambda p: p.cmd("blockdev-add", args_in(p, {
            "driver": "file", "node-name": f"proto{i}",
            "filename": path})))
        opts = dict({"driver": "qcow2", "file": f"proto{i}",
                     "size": 8 * MiB}, **extra)
        both(ps, lambda p: p.cmd("blockdev-create",
                                 {"job-id": f"fmt{i}", "options": opts}))
        both(ps, lambda p: p.wait_job(f"fmt{i}"))
        both(ps, lambda p: p.cmd("query-jobs"))
        both(ps, lambda p: p.cmd("job-dismiss", {"id": f"fmt{i}"}))
        both(ps, lambda p: p.cmd("blockdev-del",
                                 {"node-name": f"proto{i}"}))
        both(ps, lambda p: p.events())
        imgs = [open(p.dir / f"v{i}.qcow2", "rb").read() for p in ps]
        assert imgs[0] == imgs[1], f"variant {extra}: images differ"
        chk = qimg("check", "-U", ps[0].dir / f"v{i}.qcow2", check=False)
        assert chk.returncode == 0, chk.stdout + chk.stderr
    # An inline node as "file", and the file driver's own options.
    both(ps, lambda p: p.cmd("blockdev-create", args_in(p, {
        "job-id": "raw", "options": {
            "driver": "file", "filename": "DIR/r.img", "size": 3 * MiB,
            "preallocation": "full", "nocow": True,
            "extent-size-hint": MiB}})))
    both(ps, lambda p: p.wait_job("raw"))
    both(ps, lambda p: p.cmd("job-dismiss", {"id": "raw"}))
    both(ps, lambda p: os.path.getsize(p.dir / "r.img"))
    both(ps, lambda p: p.cmd("blockdev-create", args_in(p, {
        "job-id": "inline", "options": {
            "driver": "qcow2", "size": 4 * MiB,
            "file": {"driver": "file", "filename": "DIR/r.img"}}})))
    both(ps, lambda p: p.wait_job("inline"))
    # The node opened for the job is gone once it concluded.
    both(ps, lambda p: sorted(n["file"] for n in p.norm(
        p.q.cmd("query-named-block-nodes")) if n["drv"] == "file"))
    both(ps, lambda p: p.cmd("job-dismiss", {"id": "inline"}))
    assert ps[0].transcript == ps[1].transcript
    both(ps, lambda p: json.loads(qimg("info", "--output=json",
                                       p.dir / "r.img").stdout)
         ["virtual-size"])


# ---- the libvirt sequence under a writing client ----

class Writer(threading.Thread):
    """Writes block i (a pattern of its own) at offset i * BLOCK, each
    block once, with up to DEPTH writes in flight, and remembers when
    each was sent and when (and whether) it was acknowledged.  Bounded
    in count and time."""

    DEPTH = 8

    def __init__(self, sock, count):
        super().__init__(daemon=True)
        self.h = nbd.NBD()
        self.h.connect_uri(f"nbd+unix:///disk?socket={sock}")
        self.count = count
        self.sent = {}        # block -> monotonic time sent
        self.acked = {}       # block -> monotonic time acknowledged
        self.failed = []
        self.stop_flag = threading.Event()
        self.error = None

    @staticmethod
    def data(i):
        return bytes([(i * 7 + 1) % 251 + 1]) * BLOCK

    def _done(self, i, err):
        if err.value:
            self.failed.append((i, err.value))
        else:
            self.acked[i] = time.monotonic()
        return 1

    def run(self):
        deadline = time.monotonic() + 60
        bufs = {}
        try:
            i = 0
            while i < self.count and not self.stop_flag.is_set() and \
                    time.monotonic() < deadline:
                while self.h.aio_in_flight() < self.DEPTH and i < self.count:
                    bufs[i] = nbd.Buffer.from_bytearray(
                        bytearray(self.data(i)))
                    self.sent[i] = time.monotonic()
                    self.h.aio_pwrite(
                        bufs[i], i * BLOCK,
                        completion=lambda err, i=i: self._done(i, err))
                    i += 1
                self.h.poll(-1)
                time.sleep(0.001)
            while self.h.aio_in_flight() > 0 and time.monotonic() < deadline:
                self.h.poll(-1)
        except Exception as e:  # noqa: BLE001 - reported by the test
            self.error = e


def snapshot_as_libvirt(p, size):
    """The QMP libvirt sends for `virsh snapshot-create --disk-only`."""
    over = p.dir / "overlay.qcow2"
    p.cmd("blockdev-create", {
        "job-id": "create-libvirt-1-storage",
        "options": {"driver": "file", "filename": str(over), "size": 0}})
    p.wait_job("create-libvirt-1-storage")
    p.cmd("job-dismiss", {"id": "create-libvirt-1-storage"})
    p.cmd("blockdev-add", {
        "driver": "file", "filename": str(over),
        "node-name": "libvirt-1-storage", "auto-read-only": True,
        "discard": "unmap"})
    p.cmd("blockdev-create", {
        "job-id": "create-libvirt-1-format",
        "options": {"driver": "qcow2", "file": "libvirt-1-storage",
                    "size": size,
                    "backing-file": str(p.dir / "base.qcow2"),
                    "backing-fmt": "qcow2"}})
    p.wait_job("create-libvirt-1-format")
    p.cmd("job-dismiss", {"id": "create-libvirt-1-format"})
    p.cmd("blockdev-add", {
        "node-name": "libvirt-1-format", "read-only": False,
        "driver": "qcow2", "file": "libvirt-1-storage", "backing": None})
    t0 = time.monotonic()
    p.cmd("transaction", {"actions": [{
        "type": "blockdev-snapshot",
        "data": {"node": "libvirt-2-format",
                 "overlay": "libvirt-1-format"}}]})
    return t0, time.monotonic()


def run_libvirt_snapshot(p):
    base = p.dir / "base.qcow2"
    orig = p.dir / "orig.raw"
    qimg("convert", "-U", "-O", "raw", base, orig)
    w = Writer(p.nbd_sock, SIZE // BLOCK)
    w.start()
    # Let the client get going before the snapshot, and keep writing
    # after it.
    while len(w.acked) < 100 and w.is_alive():
        time.sleep(0.01)
    t_sent, t_done = snapshot_as_libvirt(p, SIZE)
    at_snapshot = p.dir / "base-at-snapshot.raw"
    qimg("convert", "-U", "-O", "raw", base, at_snapshot)
    n_before = len(w.acked)
    while len(w.acked) < n_before + 100 and w.is_alive():
        time.sleep(0.01)
    w.stop_flag.set()
    w.join(30)
    assert w.error is None, w.error
    assert not w.failed, w.failed
    assert p.transcript[-1] == ("transaction", ["ok", {}])
    # The old top is a backing node now; the new one is in use.
    p.cmd("blockdev-del", {"node-name": "libvirt-2-format"})
    p.cmd("blockdev-del", {"node-name": "libvirt-1-format"})
    p.cmd("blockdev-snapshot", {"node": "libvirt-2-format",
                                "overlay": "libvirt-1-format"})
    assert p.export_node() == "libvirt-1-format"
    assert p.backing_of("libvirt-1-format") == str(base)
    p.transcript.append(("graph", graph_state(p)))
    # The old top is read-only now and its file's write lock is gone:
    # another process may read the image (a backup tool, say).
    info = qimg("info", "--output=json", base, check=False)
    assert info.returncode == 0, info.stderr

    # Every acknowledged write reads back through the export.
    expected = bytearray(open(orig, "rb").read())
    for i in w.acked:
        expected[i * BLOCK:(i + 1) * BLOCK] = Writer.data(i)
    for i in w.acked:
        assert w.h.pread(BLOCK, i * BLOCK) == Writer.data(i), \
            f"block {i} lost"
    assert w.h.pread(MiB, 0)[:BLOCK] == bytes(expected[:BLOCK])
    w.h.shutdown()
    p.stop()

    # The base did not change after the snapshot point; writes
    # acknowledged before the command was sent went there, writes sent
    # after it returned went to the overlay.
    base_now = p.dir / "base-now.raw"
    qimg("convert", "-O", "raw", base, base_now)
    base_data = open(base_now, "rb").read()
    assert base_data == open(at_snapshot, "rb").read()
    before = [i for i, t in w.acked.items() if t < t_sent]
    after = [i for i in w.acked if w.sent[i] > t_done]
    assert len(before) >= 100 and len(after) >= 50
    for i in before:
        assert base_data[i * BLOCK:(i + 1) * BLOCK] == Writer.data(i)
    for i in after:
        assert base_data[i * BLOCK:(i + 1) * BLOCK] != Writer.data(i)

    over = p.dir / "overlay.qcow2"
    for img in (base, over):
        chk = qimg("check", img, check=False)
        assert chk.returncode == 0, chk.stdout + chk.stderr
    exp_raw = p.dir / "expected.raw"
    open(exp_raw, "wb").write(expected)
    cmp = qimg("compare", "-f", "qcow2", "-F", "raw", over, exp_raw,
               check=False)
    assert cmp.returncode == 0, cmp.stdout + cmp.stderr
    info = json.loads(qimg("info", "--backing-chain", "--output=json",
                           over).stdout)
    assert [i["filename"] for i in info] == [str(over), str(base)]
    assert info[0]["backing-filename"] == str(base)
    assert info[0]["backing-filename-format"] == "qcow2"
    return len(w.acked)


def test_libvirt_external_snapshot_under_writes(peers):
    ps = peers()
    for p in ps:
        run_libvirt_snapshot(p)
    assert ps[0].transcript == ps[1].transcript


# ---- transactions that fail ----

def graph_state(p):
    nodes = {n["node-name"]: n for n in p.q.cmd("query-named-block-nodes")
             if not n["node-name"].startswith("#")}
    return p.norm({
        "export": p.export_node(),
        "nodes": sorted((name, n["drv"], n["backing_file_depth"],
                         "backing-image" in n["image"], n["ro"])
                        for name, n in nodes.items()),
    })


def nbd_roundtrip(p, pattern, offset):
    h = nbd.NBD()
    h.connect_uri(f"nbd+unix:///disk?socket={p.nbd_sock}")
    h.pwrite(bytes([pattern]) * BLOCK, offset)
    data = h.pread(BLOCK, offset)
    h.shutdown()
    return data == bytes([pattern]) * BLOCK


def test_transaction_abort_changes_nothing(peers):
    ps = peers(extra_images=("ov", "ov2"))
    before = both(ps, graph_state)
    both(ps, lambda p: p.cmd("transaction", {"actions": [
        {"type": "blockdev-snapshot",
         "data": {"node": "libvirt-2-format", "overlay": "ov"}},
        {"type": "abort", "data": {}}]}))
    assert both(ps, graph_state) == before
    both(ps, lambda p: p.cmd("transaction", {"actions": [
        {"type": "abort", "data": {}}]}))
    both(ps, lambda p: p.cmd("transaction", {"actions": []}))
    assert both(ps, graph_state) == before
    assert all(nbd_roundtrip(p, 0x33, 5 * MiB) for p in ps)
    # The writes went to the base: the overlays are still empty.
    both(ps, lambda p: p.cmd("blockdev-snapshot", {
        "node": "libvirt-2-format", "overlay": "ov"}))
    both(ps, graph_state)
    assert all(nbd_roundtrip(p, 0x44, 6 * MiB) for p in ps)
    both(ps, lambda p: p.events())
    # A job on the node blocks a snapshot of it, as QEMU's op blocker.
    both(ps, lambda p: p.cmd("block-stream", {
        "job-id": "st", "device": "ov", "speed": 1}))
    assert both(ps, lambda p: p.cmd("blockdev-snapshot", {
        "node": "ov", "overlay": "ov2"}))[2].startswith("Node 'ov' is busy")
    both(ps, lambda p: p.cmd("job-cancel", {"id": "st"}))
    for p in ps:
        p.q.wait_event("BLOCK_JOB_CANCELLED", timeout=30)
        p.events()
    for p in ps:
        p.stop()
        base = p.dir / "base.qcow2"
        ov = p.dir / "ov.qcow2"
        r = subprocess.run(["qemu-io", "-f", "qcow2", "-c",
                            f"read -P 0x33 {5 * MiB} {BLOCK}", "-c",
                            f"read -P 0 {6 * MiB} {BLOCK}", str(base)],
                           capture_output=True, text=True)
        assert "Pattern verification failed" not in r.stdout, r.stdout
        r = subprocess.run(["qemu-io", "-f", "qcow2", "-c",
                            f"read -P 0x44 {6 * MiB} {BLOCK}", str(ov)],
                           capture_output=True, text=True)
        assert "Pattern verification failed" not in r.stdout, r.stdout
        assert qimg("check", ov, check=False).returncode == 0


FAILING_TRANSACTIONS = [
    # The second action fails: the first, prepared, is undone.
    [{"type": "blockdev-snapshot",
      "data": {"node": "libvirt-2-format", "overlay": "ov"}},
     {"type": "blockdev-snapshot",
      "data": {"node": "ov2", "overlay": "nope"}},
     {"type": "blockdev-snapshot",
      "data": {"node": "ov", "overlay": "ov2"}}],
    # snapshot-sync creates its file, then a later action fails.
    [{"type": "blockdev-snapshot-sync",
      "data": {"node-name": "libvirt-2-format",
               "snapshot-file": "DIR/sync.qcow2",
               "snapshot-node-name": "sync"}},
     {"type": "blockdev-snapshot",
      "data": {"node": "ov2", "overlay": "libvirt-2-format"}}],
    [{"type": "blockdev-snapshot",
      "data": {"node": "libvirt-2-format", "overlay": "ov"}},
     {"type": "blockdev-snapshot",
      "data": {"node": "libvirt-2-format", "overlay": "ov2"}}],
    [{"type": "blockdev-snapshot",
      "data": {"node": "ov2", "overlay": "ov"}},
     {"type": "blockdev-snapshot-sync",
      "data": {"node-name": "ov2", "snapshot-file": "DIR/s2.qcow2",
               "snapshot-node-name": "ov"}}],
    [{"type": "blockdev-snapshot",
      "data": {"node": "libvirt-2-format", "overlay": "ov"}}],
]

TRANSACTION_ARG_ERRORS = [
    {},
    {"actions": {}},
    {"actions": [1]},
    {"actions": [{"type": "foo", "data": {}}]},
    {"actions": [{"data": {}}]},
    {"actions": [{"type": "abort"}]},
    {"actions": [{"type": "abort", "data": {"x": 1}}]},
    {"actions": [{"type": "blockdev-snapshot", "data": {"node": "x"}}]},
    {"actions": [{"type": "blockdev-snapshot-sync",
                  "data": {"snapshot-file": "f", "mode": "bad"}}]},
    {"actions": [{"type": "abort", "data": {}}],
     "properties": {"completion-mode": "bad"}},
    {"actions": [{"type": "abort", "data": {}}], "properties": {"x": 1}},
    {"actions": [{"type": "blockdev-snapshot",
                  "data": {"node": "libvirt-2-format", "overlay": "ov"}}],
     "properties": {"completion-mode": "grouped"}},
    {"actions": [], "bogus": True},
]

SNAPSHOT_ERRORS = [
    ("blockdev-snapshot", {"node": "libvirt-2-format", "overlay": "nope"}),
    ("blockdev-snapshot", {"node": "nope", "overlay": "ov"}),
    ("blockdev-snapshot", {"node": "libvirt-2-format",
                           "overlay": "libvirt-2-format"}),
    ("blockdev-snapshot", {"node": "libvirt-2-format",
                           "overlay": "libvirt-2-storage"}),
    ("blockdev-snapshot", {"node": "libvirt-2-format"}),
    ("blockdev-snapshot", {"node": 1, "overlay": "ov"}),
    ("blockdev-snapshot-sync", {"node-name": "libvirt-2-format",
                                "snapshot-file": "DIR/s.qcow2"}),
    ("blockdev-snapshot-sync", {"snapshot-file": "DIR/s.qcow2"}),
    ("blockdev-snapshot-sync", {"device": "libvirt-2-format",
                                "snapshot-file": "DIR/s.qcow2"}),
    ("blockdev-snapshot-sync", {"node-name": "libvirt-2-format",
                                "snapshot-file": "DIR/s.qcow2",
                                "snapshot-node-name": "ov"}),
    ("blockdev-snapshot-sync", {"node-name": "libvirt-2-format",
                                "snapshot-file": "DIR/s.qcow2",
                                "snapshot-node-name": "s", "mode": "x"}),
    ("blockdev-snapshot-sync", {"node-name": "libvirt-2-format",
                                "snapshot-file": "DIR/s.qcow2",
                                "snapshot-node-name": "s",
                                "format": "raw"}),
    ("blockdev-snapshot-sync", {"node-name": "libvirt-2-format",
                                "snapshot-file": "DIR/missing.qcow2",
                                "snapshot-node-name": "s",
                                "mode": "existing"}),
]


def test_failing_transactions_leave_graph_unchanged(peers):
    ps = peers(extra_images=("ov", "ov2"))
    before = both(ps, graph_state)
    for a in TRANSACTION_ARG_ERRORS:
        both(ps, lambda p: p.cmd("transaction", a))
    for name, a in SNAPSHOT_ERRORS:
        both(ps, lambda p: p.cmd(name, args_in(p, a)))
    assert both(ps, graph_state) == before
    for actions in FAILING_TRANSACTIONS[:-1]:
        both(ps, lambda p: p.cmd("transaction",
                                 {"actions": args_in(p, actions)}))
        assert both(ps, graph_state) == before
        assert all(nbd_roundtrip(p, 0x21, 0) for p in ps)
    # As QEMU, the file snapshot-sync created stays after the abort.
    both(ps, lambda p: os.path.exists(p.dir / "sync.qcow2"))
    # Two disks at once: both overlays go on, or neither.
    both(ps, lambda p: p.cmd("transaction", {"actions": args_in(p, [
        {"type": "blockdev-snapshot-sync",
         "data": {"node-name": "ov2", "snapshot-file": "DIR/ov2-top.qcow2",
                  "snapshot-node-name": "ov2-top", "format": "qcow2"}},
        {"type": "abort", "data": {}}])}))
    assert both(ps, graph_state) == before
    assert both(ps, lambda p: p.cmd("transaction", {"actions": args_in(p, [
        {"type": "blockdev-snapshot-sync",
         "data": {"node-name": "ov2", "snapshot-file": "DIR/ov2-top.qcow2",
                  "snapshot-node-name": "ov2-top", "mode": "existing"}},
        {"type": "blockdev-snapshot-sync",
         "data": {"node-name": "ov2-top", "snapshot-file": "DIR/x.qcow2",
                  "snapshot-node-name": "x"}}])})) == ["ok", {}]
    # As QEMU: the old tops are read-only now, and overlays that no
    # export or node uses (the monitor does not own what
    # blockdev-snapshot-sync opens) are closed when the command ends.
    nodes = {n[0]: n for n in both(ps, graph_state)["nodes"]}
    assert nodes["ov2"][4] is True
    assert "ov2-top" not in nodes and "x" not in nodes
    # The one that works, and what is refused once it did.
    both(ps, lambda p: p.cmd("transaction", {
        "actions": FAILING_TRANSACTIONS[-1]}))
    both(ps, graph_state)
    both(ps, lambda p: p.cmd("blockdev-snapshot", {
        "node": "libvirt-2-format", "overlay": "ov2"}))
    both(ps, lambda p: p.cmd("blockdev-snapshot-sync", args_in(p, {
        "node-name": "ov", "snapshot-file": "DIR/top.qcow2",
        "snapshot-node-name": "top"})))
    both(ps, graph_state)
    both(ps, lambda p: p.cmd("blockdev-del", {"node-name": "top"}))
    both(ps, lambda p: p.cmd("blockdev-del", {"node-name": "ov"}))
    assert all(nbd_roundtrip(p, 0x77, 7 * MiB) for p in ps)
    both(ps, lambda p: p.events())
    for p in ps:
        p.stop()
    # As QEMU, the header of the file blockdev-snapshot-sync made names
    # the node it went on by its json: name (ov was opened without the
    # backing link it has now).
    both(ps, lambda p: p.norm(json.loads(qimg(
        "info", "--output=json", p.dir / "top.qcow2").stdout)
        .get("backing-filename")))
    for p in ps:
        for img in ("ov.qcow2", "base.qcow2"):
            assert qimg("check", p.dir / img, check=False).returncode == 0
        top = json.dumps({"driver": "qcow2", "backing": None, "file": {
            "driver": "file", "filename": str(p.dir / "top.qcow2")}})
        assert qimg("check", "json:" + top, check=False).returncode == 0
        for img in ("ov.qcow2", "base.qcow2"):
            cmp = qimg("compare", ps[1].dir / img, p.dir / img, check=False)
            assert cmp.returncode == 0, cmp.stdout


def test_abort_under_writes_loses_nothing(peers):
    """Transactions that put an overlay on and take it off again while
    a client keeps writes in flight: every acknowledged write is in the
    base afterwards, none in the overlay."""
    ps = peers(extra_images=("ov", "ov2"))
    for p in ps:
        w = Writer(p.nbd_sock, SIZE // BLOCK)
        w.start()
        while len(w.acked) < 50 and w.is_alive():
            time.sleep(0.01)
        for r in range(20):
            # Creating a file between the change and its undo leaves
            # writes time to arrive meanwhile.
            p.cmd("transaction", {"actions": [
                {"type": "blockdev-snapshot",
                 "data": {"node": "libvirt-2-format", "overlay": "ov"}},
                {"type": "blockdev-snapshot-sync",
                 "data": {"node-name": "ov2",
                          "snapshot-file": str(p.dir / f"t{r}.qcow2"),
                          "snapshot-node-name": "t"}},
                {"type": "abort", "data": {}}]})
            time.sleep(0.005)
        n = len(w.acked)
        while len(w.acked) < n + 50 and w.is_alive():
            time.sleep(0.01)
        w.stop_flag.set()
        w.join(30)
        assert w.error is None and not w.failed
        w.h.shutdown()
        p.stop()
        base = open_raw(p, "base.qcow2")
        for i in w.acked:
            assert base[i * BLOCK:(i + 1) * BLOCK] == Writer.data(i), \
                f"{p.kind}: block {i} lost"
        m = json.loads(qimg("map", "--output=json", p.dir / "ov.qcow2").stdout)
        assert not any(e["data"] for e in m), m
    assert ps[0].transcript == ps[1].transcript


def open_raw(p, name):
    out = p.dir / (name + ".raw")
    qimg("convert", "-O", "raw", p.dir / name, out)
    return open(out, "rb").read()
