# SPDX-License-Identifier: BSD-3-Clause
"""The quorum driver: a node over three raw files exported over NBD.
Writes reach every child, reads outvote a corrupted child (and repair it
with rewrite-corrupted), too many bad children fail the read, fifo reads
the first child; each run under stratad and qemu-storage-daemon with the
same --blockdev, whose outcomes and QMP events must agree.  strata-img
info, map and convert on a json: quorum source equal qemu-img's."""
import json
import os
import shutil
import subprocess

import nbd
import pytest

from block_util import lock_bytes
from conftest import binary, run
from qmp_util import Daemon, wait_for_path

MiB = 1 << 20
SIZE = 4 * MiB
CHILDREN = ("c0", "c1", "c2")

DAEMONS = ["stratad", "qemu-storage-daemon"]


def daemon_binary(which):
    if which == "stratad":
        return binary("stratad")
    if shutil.which(which) is None:
        pytest.skip(f"{which} not installed")
    return which


def make_children(tmp_path, data=b"\x00"):
    paths = []
    for name in CHILDREN:
        p = tmp_path / f"{name}.raw"
        with open(p, "wb") as f:
            f.write(data * SIZE)
        paths.append(p)
    return paths


def quorum_spec(paths, **opts):
    spec = {"driver": "quorum", "node-name": "q", "vote-threshold": 2,
            "children": [{"driver": "file", "node-name": name,
                          "filename": str(p)}
                         for name, p in zip(CHILDREN, paths)]}
    spec.update(opts)
    return spec


def quorum_daemon(which, tmp_path, paths):
    """A daemon with a quorum node over paths and an NBD server, no
    export (the tests add their own)."""
    return Daemon(daemon_binary(which), tmp_path, [
        "--blockdev", json.dumps(quorum_spec(paths)),
        "--nbd-server", f"addr.type=unix,addr.path={tmp_path}/n.sock"])


class Served:
    """A daemon with the quorum node exported as "disk" and a QMP client
    to watch its events."""

    def __init__(self, which, tmp_path, spec):
        sock = str(tmp_path / "n.sock")
        self.daemon = Daemon(daemon_binary(which), tmp_path, [
            "--blockdev", json.dumps(spec),
            "--nbd-server", f"addr.type=unix,addr.path={sock}",
            "--export", "type=nbd,id=e0,node-name=q,name=disk,writable=on",
        ])
        try:
            wait_for_path(sock, self.daemon.proc)
            self.qmp = self.daemon.connect()
            self.nbd = nbd.NBD()
            self.nbd.connect_uri(f"nbd+unix:///disk?socket={sock}")
        except Exception:
            self.daemon.stop()
            raise

    def close(self):
        try:
            self.nbd.shutdown()
        except nbd.Error:
            pass          # the server dropped the connection already
        finally:
            self.daemon.stop()

    def events(self, name):
        """The events called name that arrived so far (data only)."""
        self.qmp.execute("query-version")   # collects pending events
        return [e["data"] for e in self.qmp.events if e["event"] == name]


def corrupt(path, offset, data):
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(data)


def content(path):
    with open(path, "rb") as f:
        return f.read()


def outcome(which, tmp_path, spec, action):
    """Runs action(served) against a fresh daemon; returns its result."""
    s = Served(which, tmp_path, spec)
    try:
        return action(s)
    finally:
        s.close()


@pytest.mark.parametrize("which", DAEMONS)
def test_writes_reach_every_child(tmp_path, which):
    paths = make_children(tmp_path)
    data = os.urandom(MiB)

    def act(s):
        s.nbd.pwrite(data, MiB)
        s.nbd.flush()
        return s.nbd.pread(MiB, MiB)
    assert outcome(which, tmp_path, quorum_spec(paths), act) == data
    for p in paths:
        assert content(p)[MiB:2 * MiB] == data
    assert content(paths[0]) == content(paths[1]) == content(paths[2])


def majority_read(tmp_path, which, **opts):
    """Child c1 corrupted at 64k; returns what the read gave, the
    QUORUM_REPORT_BAD events, and the children's content afterwards."""
    d = tmp_path / which[0]      # short: socket paths have a limit
    d.mkdir()
    paths = make_children(d, b"\x5a")
    corrupt(paths[1], 64 * 1024, b"\xff" * 512)

    def act(s):
        got = s.nbd.pread(128 * 1024, 0)
        return got, s.events("QUORUM_REPORT_BAD")
    got, events = outcome(which, d, quorum_spec(paths, **opts), act)
    return got, events, [content(p) for p in paths]


@pytest.mark.parametrize("which", DAEMONS)
def test_majority_outvotes_a_corrupted_child(tmp_path, which):
    got, events, files = majority_read(tmp_path, which)
    assert got == b"\x5a" * (128 * 1024)
    assert events[:1] == [{"type": "read", "node-name": "c1",
                           "sector-num": 0, "sectors-count": 256}]
    # Without rewrite-corrupted the bad child stays as it was.
    assert files[1][64 * 1024:64 * 1024 + 512] == b"\xff" * 512


@pytest.mark.parametrize("which", DAEMONS)
def test_rewrite_corrupted_repairs_the_child(tmp_path, which):
    got, _, files = majority_read(tmp_path, which, **{"rewrite-corrupted": True})
    assert got == b"\x5a" * (128 * 1024)
    assert files[0] == files[1] == files[2]


def test_daemons_agree_on_the_events(tmp_path):
    if shutil.which("qemu-storage-daemon") is None:
        pytest.skip("qemu-storage-daemon not installed")
    ours = majority_read(tmp_path, "stratad")
    theirs = majority_read(tmp_path, "qemu-storage-daemon")
    assert ours[0] == theirs[0]
    assert ours[1][:1] == theirs[1][:1]
    assert ours[2] == theirs[2]


@pytest.mark.parametrize("which", DAEMONS)
def test_no_quorum_fails_the_read(tmp_path, which):
    paths = make_children(tmp_path, b"\x5a")
    # Two children differ from the third and from each other: no content
    # has the two votes the threshold asks for.
    corrupt(paths[1], 0, b"\x01" * 512)
    corrupt(paths[2], 0, b"\x02" * 512)

    def act(s):
        # Elsewhere the children agree.
        assert s.nbd.pread(4096, MiB) == b"\x5a" * 4096
        # (qemu-storage-daemon also drops the connection after it.)
        with pytest.raises(nbd.Error):
            s.nbd.pread(4096, 0)
        return s.events("QUORUM_FAILURE")
    events = outcome(which, tmp_path, quorum_spec(paths), act)
    assert events[:1] == [{"reference": "q", "sector-num": 0,
                           "sectors-count": 8}]


@pytest.mark.parametrize("which", DAEMONS)
def test_fifo_reads_the_first_child(tmp_path, which):
    paths = make_children(tmp_path, b"\x5a")
    corrupt(paths[0], 0, b"\x01" * 512)

    def act(s):
        return s.nbd.pread(512, 0)
    spec = quorum_spec(paths, **{"read-pattern": "fifo"})
    assert outcome(which, tmp_path, spec, act) == b"\x01" * 512


# ---- strata-img against qemu-img ----

def json_name(paths, **opts):
    spec = {"driver": "quorum", "vote-threshold": 2,
            "children": [{"driver": "file", "filename": str(p)}
                         for p in paths]}
    spec.update(opts)
    return "json:" + json.dumps(spec)


def both(args):
    """(qemu-img, strata-img) results of the same command line."""
    q = subprocess.run(["qemu-img"] + args, capture_output=True, text=True)
    s = subprocess.run([binary("strata-img")] + args, capture_output=True,
                       text=True)
    return q, s


@pytest.mark.parametrize("args", [
    ["info"], ["info", "--output=json"], ["map", "--output=json"],
])
def test_img_inspection_matches_qemu_img(tmp_path, args):
    paths = make_children(tmp_path)
    for p in paths:
        corrupt(p, MiB, b"\x33" * 65536)
    q, s = both(args + [json_name(paths)])
    assert (s.returncode, s.stdout) == (q.returncode, q.stdout)


def test_img_convert_matches_qemu_img(tmp_path):
    paths = make_children(tmp_path, b"\x5a")
    corrupt(paths[2], 4096, b"\x99" * 4096)     # outvoted
    name = json_name(paths)
    run(["qemu-img", "convert", "-O", "qcow2", name,
         str(tmp_path / "q.qcow2")])
    run([binary("strata-img"), "convert", "-O", "qcow2", name,
         str(tmp_path / "s.qcow2")])
    run(["qemu-img", "compare", str(tmp_path / "q.qcow2"),
         str(tmp_path / "s.qcow2")])
    run(["qemu-img", "compare", "-f", "raw", str(paths[0]),
         str(tmp_path / "s.qcow2")])
    run(["qemu-img", "check", str(tmp_path / "s.qcow2")])


@pytest.mark.parametrize("opts", [
    {"vote-threshold": 0},
    {"vote-threshold": 4},
    {"read-pattern": "random"},
    {"blkverify": True},
    {"blkverify": True, "rewrite-corrupted": True},
    {"rewrite-corrupted": True},
    {"children": []},
])
def test_bad_options_give_qemu_img_errors(tmp_path, opts):
    paths = make_children(tmp_path)
    if opts.get("blkverify") and opts.get("rewrite-corrupted"):
        paths = paths[:2]     # reaches the check past the children count
    q, s = both(["info", json_name(paths, **opts)])
    assert q.returncode == s.returncode == 1
    assert s.stderr.replace("strata-img:", "qemu-img:", 1) == q.stderr


def test_children_links_match_qemu(tmp_path):
    """Nobody else may write a child; reading it is fine; a child cannot
    be deleted under the quorum node; every node is listed."""
    if shutil.which("qemu-storage-daemon") is None:
        pytest.skip("qemu-storage-daemon not installed")
    paths = make_children(tmp_path)
    replies = {}
    for which in DAEMONS:
        d = quorum_daemon(which, tmp_path, paths)
        try:
            c = d.connect()
            got = [c.execute("block-export-add", args) for args in (
                {"type": "nbd", "id": "e1", "node-name": "c0",
                 "writable": True},
                {"type": "nbd", "id": "e2", "node-name": "c1"},
                {"type": "nbd", "id": "e3", "node-name": "q",
                 "writable": True})]
            got.append(c.execute("blockdev-del", {"node-name": "c2"}))
            nodes = c.cmd("query-named-block-nodes", flat=True)
            got.append(sorted((n["node-name"], n["drv"]) for n in nodes))
            got.append(sorted(nodes, key=lambda n: n["node-name"]))
            replies[which] = got
        finally:
            d.stop()
    ours = replies["stratad"]
    assert "Permission conflict on node 'c0'" in ours[0]["error"]["desc"]
    assert ours[1] == ours[2] == {"return": {}}
    assert ours[4] == [("c0", "file"), ("c1", "file"), ("c2", "file"),
                       ("q", "quorum")]
    assert ours == replies["qemu-storage-daemon"]


def test_children_by_name_match_qemu(tmp_path):
    """Existing nodes as children: a writer of a child keeps the quorum
    node from being made, and the other way round; deleting the quorum
    node frees its children."""
    if shutil.which("qemu-storage-daemon") is None:
        pytest.skip("qemu-storage-daemon not installed")
    paths = make_children(tmp_path)
    add_q = {"driver": "quorum", "node-name": "q", "vote-threshold": 2,
             "children": list(CHILDREN)}
    replies = {}
    for which in DAEMONS:
        args = []
        for name, p in zip(CHILDREN, paths):
            args += ["--blockdev", f"driver=file,node-name={name},"
                     f"filename={p}"]
        d = Daemon(daemon_binary(which), tmp_path, args + [
            "--nbd-server", f"addr.type=unix,addr.path={tmp_path}/n.sock"])
        try:
            c = d.connect()
            got = [
                c.execute("block-export-add", {"type": "nbd", "id": "e1",
                                               "node-name": "c0",
                                               "writable": True}),
                c.execute("blockdev-add", add_q),
                c.execute("block-export-del", {"id": "e1"}),
            ]
            c.wait_event("BLOCK_EXPORT_DELETED")
            got += [
                c.execute("blockdev-add", add_q),
                c.execute("block-export-add", {"type": "nbd", "id": "e3",
                                               "node-name": "c1",
                                               "writable": True}),
                c.execute("blockdev-del", {"node-name": "q"}),
                c.execute("block-export-add", {"type": "nbd", "id": "e4",
                                               "node-name": "c1",
                                               "writable": True}),
            ]
            replies[which] = got
        finally:
            d.stop()
    ours = replies["stratad"]
    assert "unshared by node 'q'" in ours[1]["error"]["desc"]
    assert "unshared by node 'q'" in ours[4]["error"]["desc"]
    assert ours[3] == ours[5] == ours[6] == {"return": {}}
    assert ours == replies["qemu-storage-daemon"]


def test_other_processes_cannot_write_children(tmp_path):
    """The children's lock bytes: another process may read a child but
    not write it, before and after the quorum node gets a writer, whose
    write permission every child takes while it lasts."""
    if shutil.which("qemu-storage-daemon") is None:
        pytest.skip("qemu-storage-daemon not installed")
    paths = make_children(tmp_path)
    tries = (["qemu-io", "-f", "raw", "-c", "write 0 512", str(paths[0])],
             ["qemu-io", "-f", "raw", "-r", "-c", "read 0 512",
              str(paths[1])],
             ["qemu-img", "info", "-f", "raw", str(paths[2])])
    results = {}
    for which in DAEMONS:
        d = quorum_daemon(which, tmp_path, paths)
        try:
            c = d.connect()
            got = [subprocess.run(t, capture_output=True).returncode
                   for t in tries] + [lock_bytes(p) for p in paths]
            c.cmd("block-export-add", type="nbd", id="e0", **{
                "node-name": "q", "writable": True})
            got += [subprocess.run(t, capture_output=True).returncode
                    for t in tries] + [lock_bytes(p) for p in paths]
            c.cmd("block-export-del", id="e0")
            c.wait_event("BLOCK_EXPORT_DELETED")
            got += [lock_bytes(p) for p in paths]
            results[which] = got
        finally:
            d.stop()
    ours = results["stratad"]
    assert ours[0:3] == ours[6:9] == [1, 0, 0]
    # The writer's write permission reaches every child, and goes again.
    assert all(101 not in b for b in ours[3:6] + ours[12:15])
    assert all(101 in b for b in ours[9:12])
    assert results["stratad"] == results["qemu-storage-daemon"]


@pytest.mark.parametrize("failing", [1, 2])
def test_write_vote_matches_qemu(tmp_path, failing):
    """Children that fail writes (blkdebug): one of three is outvoted and
    the write succeeds; two leave fewer than vote-threshold and it fails.
    Outcome and QUORUM_* events as under qemu-storage-daemon."""
    if shutil.which("qemu-storage-daemon") is None:
        pytest.skip("qemu-storage-daemon not installed")
    paths = make_children(tmp_path)
    spec = quorum_spec(paths)
    for i in range(failing):
        spec["children"][i] = {
            "driver": "blkdebug", "node-name": f"b{i}",
            "image": spec["children"][i],
            "inject-error": [{"event": "pwritev", "errno": 5,
                              "immediately": True}]}
    results = {}
    for which in DAEMONS:
        s = Served(which, tmp_path, spec)
        try:
            try:
                s.nbd.pwrite(b"\x01" * 4096, 0)
                ok = True
            except nbd.Error:
                ok = False
            events = [(n, d) for n in ("QUORUM_REPORT_BAD", "QUORUM_FAILURE")
                      for d in s.events(n)]
            results[which] = (ok, events)
        finally:
            s.close()
    ok, events = results["stratad"]
    assert ok == (failing == 1)
    assert [e[1]["node-name"] for e in events
            if e[0] == "QUORUM_REPORT_BAD"] == [f"b{i}" for i in range(failing)]
    assert ("QUORUM_FAILURE" in [e[0] for e in events]) == (failing == 2)
    assert results["stratad"] == results["qemu-storage-daemon"]
    # The children that took the write hold it.
    for p in paths[failing:]:
        assert content(p)[:4096] == b"\x01" * 4096


def test_blkverify_mismatch_fails_the_read(tmp_path):
    """blkverify: two children, any difference is an error (QEMU ends
    the process there, so only stratad is run)."""
    paths = make_children(tmp_path, b"\x5a")[:2]
    corrupt(paths[1], 8192, b"\x00")
    spec = quorum_spec(paths, blkverify=True)

    def act(s):
        assert s.nbd.pread(4096, 0) == b"\x5a" * 4096
        with pytest.raises(nbd.Error):
            s.nbd.pread(4096, 8192)
        return s.events("QUORUM_FAILURE")
    events = outcome("stratad", tmp_path, spec, act)
    assert events == [{"reference": "q", "sector-num": 16,
                       "sectors-count": 8}]
