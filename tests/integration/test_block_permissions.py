# SPDX-License-Identifier: BSD-3-Clause
"""Permission conflicts between the users of one node inside one daemon,
side by side with qemu-storage-daemon: a second qcow2 node on a file
another qcow2 node writes, an export writing under a format, and what
stays allowed (readers, force-share, backing nodes, filters).  Every
reply of the same QMP sequence must be equal; after a refusal the graph
is unchanged, so the nodes can be deleted and the image is intact."""
import pathlib
import subprocess

import pytest

from conftest import require
from qmp_util import Daemon


def file_node(name, path, **extra):
    return ("blockdev-add", {"driver": "file", "node-name": name,
                             "filename": str(path), **extra})


def node(driver, name, file, **extra):
    return ("blockdev-add", {"driver": driver, "node-name": name,
                             "file": file, **extra})


def export(eid, node_name, writable):
    return ("block-export-add", {"type": "nbd", "id": eid,
                                 "node-name": node_name,
                                 "writable": writable})


def delete(name):
    return ("blockdev-del", {"node-name": name})


def scenarios(d):
    base, top = d / "base.qcow2", d / "top.qcow2"
    return {
        "two-writers": [
            file_node("f", base), node("qcow2", "a", "f"),
            node("qcow2", "b", "f"),
            node("qcow2", "c", "f", **{"read-only": True}),
            delete("a"), node("qcow2", "b", "f"), delete("b"),
            delete("f")],
        "reader-then-writer": [
            file_node("f", base, **{"read-only": True}),
            node("qcow2", "a", "f", **{"read-only": True}),
            node("qcow2", "b", "f", **{"read-only": True}),
            file_node("g", base), node("qcow2", "d", "f")],
        "raw-and-exports-under-qcow2": [
            file_node("f", base), node("qcow2", "a", "f"),
            node("raw", "r", "f"),
            export("e1", "r", True), export("e2", "f", True),
            export("e3", "f", False), export("e4", "r", False),
            ("block-export-del", {"id": "e4"}),
            export("e5", "a", True), delete("r")],
        "export-then-format": [
            file_node("f", base), export("e1", "f", True),
            node("qcow2", "a", "f"),
            node("qcow2", "b", "f", **{"read-only": True}),
            ("block-export-del", {"id": "e1"})],
        "read-only-export-then-format": [
            file_node("f", base), export("e1", "f", False),
            node("qcow2", "a", "f"),
            node("qcow2", "b", "f", **{"read-only": True})],
        "force-share": [
            file_node("f", base, **{"read-only": True,
                                    "force-share": True}),
            node("qcow2", "a", "f", **{"read-only": True}),
            export("e1", "f", False), node("qcow2", "b", "f"),
            node("raw", "r", "f"), export("e2", "r", True)],
        "backing-nodes": [
            ("blockdev-add", {"driver": "qcow2", "node-name": "top",
                              "file": {"driver": "file",
                                       "filename": str(top)},
                              "backing": {"driver": "qcow2",
                                          "node-name": "base",
                                          "file": {"driver": "file",
                                                   "node-name": "bf",
                                                   "filename": str(base)}}}),
            export("e1", "top", True), export("e2", "base", True),
            export("e3", "bf", True), node("raw", "r", "bf"),
            export("e4", "r", False)],
        "stream-intermediate": [
            ("blockdev-add", {
                "driver": "qcow2", "node-name": "top",
                "file": {"driver": "file", "filename": str(d / "s3.qcow2")},
                "backing": {
                    "driver": "qcow2", "node-name": "mid", "read-only": False,
                    "file": {"driver": "file", "read-only": False,
                             "filename": str(d / "s2.qcow2")},
                    "backing": {"driver": "qcow2", "node-name": "bot",
                                "read-only": False,
                                "file": {"driver": "file", "read-only": False,
                                         "filename": str(d / "s1.qcow2")}}}}),
            export("e1", "mid", True),
            ("block-stream", {"job-id": "j1", "device": "top", "speed": 1}),
            ("block-export-del", {"id": "e1"}),
            ("block-stream", {"job-id": "j2", "device": "top", "speed": 1}),
            export("e3", "mid", True), export("e4", "mid", False),
            export("e5", "bot", True), export("e6", "top", True),
            ("block-job-cancel", {"device": "j2", "force": True})],
        "blkdebug-and-cor": [
            file_node("f", base), node("qcow2", "a", "f"),
            ("blockdev-add", {"driver": "blkdebug", "node-name": "dbg",
                              "image": "f"}),
            node("copy-on-read", "cor", "a"),
            export("e1", "cor", True), export("e2", "a", True),
            export("e3", "dbg", True), export("e4", "f", False)],
    }


def run(binary, workdir, steps, sock):
    d = Daemon(binary, workdir, ["--nbd-server",
                                 f"addr.type=unix,addr.path={sock}"],
               name="perm")
    try:
        c = d.connect()
        return [c.execute(cmd, args).get("error", {})
                for cmd, args in steps]
    finally:
        d.stop()


@pytest.mark.parametrize("name", sorted(scenarios(pathlib.Path("."))))
def test_permission_conflicts_match_qsd(stratad_bin, tmp_path, name):
    require("qemu-storage-daemon")
    require("qemu-img")
    base, top = tmp_path / "base.qcow2", tmp_path / "top.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", base, "1M"],
                   check=True)
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-b", base,
                    "-F", "qcow2", top], check=True)
    s1, s2, s3 = (tmp_path / f"s{i}.qcow2" for i in (1, 2, 3))
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", s1, "4M"],
                   check=True)
    subprocess.run(["qemu-io", "-f", "qcow2", "-c", "write 0 4M", s1],
                   check=True, capture_output=True)
    for img, back in ((s2, s1), (s3, s2)):
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-b", back,
                        "-F", "qcow2", img], check=True)
    steps = scenarios(tmp_path)[name]
    theirs = run("qemu-storage-daemon", tmp_path, steps, tmp_path / "q.sock")
    ours = run(stratad_bin, tmp_path, steps, tmp_path / "s.sock")
    for (cmd, args), q, s in zip(steps, theirs, ours):
        assert s == q, (cmd, args)
    # A refused second writer never touched the image.
    check = subprocess.run(["qemu-img", "check", base], capture_output=True,
                           text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    # The scenarios are not vacuous: each has at least one refusal.
    assert any(theirs), name
