# SPDX-License-Identifier: BSD-3-Clause
"""qcow2 announces QEMU's internal debug events (l1_update, cluster_free,
empty_image_prepare, ...) to a blkdebug node below it, at the points QEMU
does: an error injected on such an event makes strata-img fail as
qemu-img fails, and leaves the image qemu-img leaves.  Both tools run on
copies of the same starting image with the same rules; qemu-img check
judges what each left behind, and must say the same of both."""
import os
import shutil

import pytest

from img_util import qimg, qio, simg

MiB = 1 << 20


def overlay(path):
    """QEMU's iotest 098 image: an overlay with 64k of data over an
    empty backing file."""
    qimg("create", "-q", "-f", "qcow2", f"{path}.base", "64M")
    qimg("create", "-q", "-f", "qcow2", "-b", f"{path}.base", "-F", "qcow2",
         path, "64M")
    qio(path, "write 0 64k")


def one_snapshot(path):
    """QEMU's iotest 217 image, with data in two clusters."""
    qimg("create", "-q", "-f", "qcow2", path, "64M")
    qio(path, "write 0 64k", "write 1M 64k")
    qimg("snapshot", "-c", "foo", path)


def two_snapshots(path):
    one_snapshot(path)
    qio(path, "write 0 4k")
    qimg("snapshot", "-c", "bar", path)


def run_both(tmp_path, make, event, *op):
    """Runs op on blkdebug:CONF:IMAGE with an error on event, with both
    tools on identical images; returns {tool: (exit code, stderr, check
    code, check output)} with the tools' image paths made equal."""
    start = tmp_path / "start.qcow2"
    make(str(start))
    out = {}
    for tool, runner in (("qemu", qimg), ("strata", simg)):
        d = tmp_path / tool
        d.mkdir()
        img = d / "t.qcow2"
        shutil.copy(start, img)
        if os.path.exists(f"{start}.base"):
            shutil.copy(f"{start}.base", f"{img}.base")
        conf = d / "blkdebug.conf"
        conf.write_text(f'[inject-error]\nevent = "{event}"\n')
        proc = runner(*op, f"blkdebug:{conf}:{img}", check=False)
        err = proc.stderr.replace(str(d), "DIR").replace("strata-img",
                                                          "qemu-img")
        chk = qimg("check", img, check=False)
        # Where the file ends depends on where each tool puts new
        # clusters, which the event does not decide.
        report = "\n".join(ln for ln in (chk.stdout + chk.stderr).splitlines()
                           if not ln.startswith("Image end offset"))
        out[tool] = (proc.returncode, err, chk.returncode, report)
    return out


@pytest.mark.parametrize("event, leftover", [
    ("l1_update", "No errors were found"),
    ("empty_image_prepare", "Leaked cluster 5 refcount=1 reference=0"),
    ("reftable_update", "ERROR cluster 3 refcount=0 reference=1"),
    ("refblock_alloc", "ERROR cluster 3 refcount=0 reference=1"),
])
def test_commit_empty_fails_as_qemu(tmp_path, event, leftover):
    """Emptying the committed overlay writes the new L1 table, refcount
    table and refcount block in QEMU's order: an error after any step
    leaves what qemu-img leaves (iotest 098)."""
    res = run_both(tmp_path, overlay, event, "commit")
    assert res["strata"] == res["qemu"]
    rc, err, _, report = res["strata"]
    assert rc == 1
    assert err == ("qemu-img: Failed to empty blkdebug:DIR/blkdebug.conf:"
                   "DIR/t.qcow2: Input/output error\n")
    assert leftover in report


def test_snapshot_delete_cluster_free_fails_as_qemu(tmp_path):
    """The snapshot leaves the table first; the failed free that follows
    only leaks (iotest 217)."""
    res = run_both(tmp_path, one_snapshot, "cluster_free",
                   "snapshot", "-d", "foo")
    assert res["strata"] == res["qemu"]
    rc, err, chk_rc, report = res["strata"]
    assert rc == 1
    assert err == ("qcow2_free_clusters failed: Input/output error\n"
                   "qemu-img: Could not delete snapshot 'foo': Failed to "
                   "free the cluster and L1 table: Input/output error\n")
    assert chk_rc == 3  # leaks only
    assert "Leaked cluster 4 refcount=2 reference=1" in report


@pytest.mark.parametrize("make, event, op", [
    (two_snapshots, "cluster_free", ("snapshot", "-d", "foo")),
    (one_snapshot, "cluster_free", ("snapshot", "-c", "new")),
    (two_snapshots, "l2_load", ("snapshot", "-d", "foo")),
    (one_snapshot, "cluster_alloc", ("snapshot", "-c", "new")),
    (two_snapshots, "cluster_alloc", ("snapshot", "-d", "foo")),
    (one_snapshot, "refblock_alloc", ("snapshot", "-d", "foo")),
])
def test_snapshot_events_fail_as_qemu(tmp_path, make, event, op):
    """Other events the snapshot code raises through allocation, freeing
    and table loads: same failure, same messages, same leftovers."""
    res = run_both(tmp_path, make, event, *op)
    assert res["strata"] == res["qemu"]
    # Never worse than leaks.
    assert res["strata"][2] in (0, 3), res["strata"][3]


def test_rules_on_events_without_a_format_above(tmp_path):
    """On a raw image nothing raises qcow2's events: a rule on one of them
    never fires, and the copy succeeds as with qemu-img."""
    src = tmp_path / "src.raw"
    src.write_bytes(b"\x5a" * MiB)
    conf = tmp_path / "blkdebug.conf"
    conf.write_text('[inject-error]\nevent = "l1_update"\n')
    for tool, runner in (("qemu", qimg), ("strata", simg)):
        dst = tmp_path / f"{tool}.raw"
        runner("convert", "-f", "raw", "-O", "raw", f"blkdebug:{conf}:{src}",
               dst)
        assert dst.read_bytes() == src.read_bytes()
