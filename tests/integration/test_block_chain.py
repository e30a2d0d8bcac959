# SPDX-License-Identifier: BSD-3-Clause
"""Backing chains opened by the block layer: relative names, loops,
and block status through the chain compared with qemu-img."""
import json
import os

from conftest import binary, run


def qimg(*args):
    return run(["qemu-img"] + list(args))


def test_relative_backing_from_other_cwd(tmp_path):
    d = tmp_path / "d"
    d.mkdir()
    qimg("create", "-q", "-f", "raw", str(d / "base.raw"), "1M")
    run(["qemu-io", "-f", "raw", "-c", "write -P 7 0 64k", str(d / "base.raw")])
    qimg("create", "-q", "-f", "qcow2", "-b", "base.raw", "-F", "raw",
         str(d / "mid.qcow2"), "1M")
    run(["qemu-io", "-f", "qcow2", "-c", "write -P 8 128k 64k", str(d / "mid.qcow2")])
    qimg("create", "-q", "-f", "qcow2", "-b", "d/mid.qcow2", "-F", "qcow2",
         str(tmp_path / "top.qcow2"), "1M")
    top = str(tmp_path / "top.qcow2")
    want = json.loads(qimg("map", "--output=json", top).stdout)
    # Run from a different directory: names resolve against the overlay.
    got = json.loads(run([binary("strata-img"), "map", "--output=json", top]).stdout)
    assert got == want
    assert any(e["data"] for e in got) and len(got) > 2


def test_backing_loop_is_refused(tmp_path):
    a, b = str(tmp_path / "a.qcow2"), str(tmp_path / "b.qcow2")
    qimg("create", "-q", "-f", "qcow2", "-u", "-b", "b.qcow2", "-F", "qcow2", a, "1M")
    qimg("create", "-q", "-f", "qcow2", "-u", "-b", "a.qcow2", "-F", "qcow2", b, "1M")
    p = run([binary("strata-img"), "map", a], check=False, timeout=30)
    assert p.returncode != 0
    assert "Could not open backing file" in p.stderr
    assert "forms a loop" in p.stderr


def test_missing_backing_message(tmp_path):
    ov = str(tmp_path / "ov.qcow2")
    qimg("create", "-q", "-f", "qcow2", "-u", "-b", "nope.img", "-F", "raw", ov, "1M")
    p = run([binary("strata-img"), "map", ov], check=False)
    q = run(["qemu-img", "map", ov], check=False)
    assert p.returncode != 0 and q.returncode != 0
    nope = os.path.join(str(tmp_path), "nope.img")
    assert (f"Could not open backing file: Could not open '{nope}': "
            "No such file or directory") in p.stderr
    assert p.stderr.split(": ", 1)[1] == q.stderr.split(": ", 1)[1]
