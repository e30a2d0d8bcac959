# SPDX-License-Identifier: BSD-3-Clause
"""Malformed images: strata-img gives a clear one-line error and exit
code 1 (never a crash: a signal exit fails the test), and images held
by qemu-storage-daemon are refused unless -U."""
import os
import struct

import pytest

from img_util import (MiB, first_l2_entry_offset, poke, qcow2_header, qimg,
                      qio, qsd_factory, simg)  # noqa: F401 (fixture)


@pytest.fixture
def good(tmp_path):
    img = tmp_path / "good.qcow2"
    qimg("create", "-f", "qcow2", img, 4 * MiB)
    qio(img, "write -P 0x11 0 128k")
    return img


def corrupt_copy(tmp_path, good, name, mutate):
    path = tmp_path / name
    path.write_bytes(good.read_bytes())
    mutate(path)
    return path


def truncate_header(p):
    with open(p, "r+b") as f:
        f.truncate(40)


MUTATIONS = {
    "truncated header": truncate_header,
    "bad version": lambda p: poke(p, 4, ">I", 9),
    "cluster bits 40": lambda p: poke(p, 20, ">I", 40),
    "cluster bits 5": lambda p: poke(p, 20, ">I", 5),
    "huge size": lambda p: poke(p, 24, ">Q", 1 << 62),
    "l1 beyond eof": lambda p: poke(p, 40, ">Q", 1 << 40),
    "l1 misaligned": lambda p: poke(p, 40, ">Q", 0x30001),
    "huge l1 size": lambda p: poke(p, 36, ">I", 0x7fffffff),
    "refcount table beyond eof": lambda p: poke(p, 48, ">Q", 1 << 40),
    "refcount table misaligned": lambda p: poke(p, 48, ">Q", 0x10008),
    "refcount table huge": lambda p: poke(p, 56, ">I", 0x7fffffff),
    "l1 overlaps header": lambda p: poke(p, 40, ">Q", 0),
    "unknown incompatible bit": lambda p: poke(p, 72, ">Q", 1 << 40),
    "backing name beyond eof": lambda p: (poke(p, 8, ">Q", 1 << 30),
                                          poke(p, 16, ">I", 10)),
    "backing name too long": lambda p: (poke(p, 8, ">Q", 0x200),
                                        poke(p, 16, ">I", 5000)),
    "refcount order 7": lambda p: poke(p, 96, ">I", 7),
}


@pytest.mark.parametrize("name", sorted(MUTATIONS))
def test_malformed_header(tmp_path, good, name):
    bad = corrupt_copy(tmp_path, good, "bad.qcow2", MUTATIONS[name])
    for cmd in (["info"], ["map"], ["convert", "-O", "raw"], ["check"]):
        args = [*cmd, "-f", "qcow2", bad]
        if cmd[0] == "convert":
            args.append(tmp_path / "out.raw")
        r = simg(*args, check=False)  # a crash fails inside simg
        if r.returncode == 0:
            # Some headers are odd but legal; then qemu-img accepts too.
            q = qimg(*args, check=False)
            assert q.returncode == 0, (name, cmd, r.stdout)
            continue
        assert r.returncode in (1, 2, 3), (name, cmd, r.returncode)
        assert r.stderr.startswith("strata-img: "), (name, cmd, r.stderr)
        assert "bad.qcow2" in r.stderr or cmd[0] == "check", (name, r.stderr)


def test_l2_entry_beyond_eof(tmp_path, good):
    def mutate(p):
        poke(p, first_l2_entry_offset(p), ">Q", (1 << 63) | (1 << 40))
    bad = corrupt_copy(tmp_path, good, "bad.qcow2", mutate)
    # Like qemu-img, data beyond the end of the file reads as zeroes.
    r = simg("convert", "-O", "raw", bad, tmp_path / "o.raw", check=False)
    q = qimg("convert", "-O", "raw", bad, tmp_path / "q.raw", check=False)
    assert r.returncode == q.returncode
    if r.returncode == 0:
        assert (tmp_path / "o.raw").read_bytes() == \
            (tmp_path / "q.raw").read_bytes()
    r = simg("check", bad, check=False)
    q = qimg("check", bad, check=False)
    assert r.returncode == q.returncode == 2
    summary = lambda out: [l for l in out.splitlines()
                           if not l.startswith("Image end offset")]
    assert summary(r.stdout) == summary(q.stdout)


def test_l2_entry_beyond_eof_end_offset(tmp_path, good):
    # qemu-img reports the end of the data it counted, not the bogus
    # offset of an entry beyond the end of the file.
    def mutate(p):
        poke(p, first_l2_entry_offset(p), ">Q", (1 << 63) | (1 << 40))
    bad = corrupt_copy(tmp_path, good, "bad.qcow2", mutate)
    r = simg("check", "--output=json", bad, check=False)
    q = qimg("check", "--output=json", bad, check=False)
    assert r.stdout == q.stdout


def test_l2_entry_misaligned(tmp_path, good):
    def mutate(p):
        poke(p, first_l2_entry_offset(p), ">Q", (1 << 63) | 0x50200)
    bad = corrupt_copy(tmp_path, good, "bad.qcow2", mutate)
    r = simg("convert", "-O", "raw", bad, tmp_path / "o.raw", check=False)
    assert r.returncode == 1
    r = simg("check", bad, check=False)
    assert r.returncode in (1, 2)


def test_l2_points_at_refcount_table(tmp_path, good):
    def mutate(p):
        h = qcow2_header(p)
        poke(p, first_l2_entry_offset(p), ">Q", (1 << 63) | h["rt_off"])
    bad = corrupt_copy(tmp_path, good, "bad.qcow2", mutate)
    r = simg("check", bad, check=False)
    q = qimg("check", bad, check=False)
    assert r.returncode == q.returncode == 2


def test_backing_loop(tmp_path):
    a = tmp_path / "a.qcow2"
    b = tmp_path / "b.qcow2"
    qimg("create", "-f", "qcow2", a, MiB)
    qimg("create", "-f", "qcow2", "-b", "a.qcow2", "-F", "qcow2", b)
    qimg("rebase", "-u", "-b", "b.qcow2", "-F", "qcow2", a)
    for cmd in (["info", "--backing-chain"], ["map"], ["convert", "-O", "raw"],
                ["commit"]):
        args = [*cmd, b]
        if cmd[0] == "convert":
            args.append(tmp_path / "o.raw")
        r = simg(*args, check=False)
        assert r.returncode == 1, (cmd, r.stdout, r.stderr)
        assert r.stderr.startswith("strata-img: "), r.stderr
        assert r.stderr.count("\n") <= 2, r.stderr
    r = simg("info", "--backing-chain", b, check=False)
    q = qimg("info", "--backing-chain", b, check=False)
    assert r.stderr.replace("strata-img", "qemu-img") == q.stderr


def test_not_an_image(tmp_path):
    junk = tmp_path / "junk.qcow2"
    junk.write_bytes(b"QFI\xfb" + os.urandom(200))
    r = simg("info", "-f", "qcow2", junk, check=False)
    assert r.returncode == 1
    assert "junk.qcow2" in r.stderr


def test_locked_by_qsd(tmp_path, good, qsd_factory):
    qsd_factory(good)
    for cmd in (["info"], ["check"], ["map"]):
        r = simg(*cmd, good, check=False)
        q = qimg(*cmd, good, check=False)
        assert r.returncode == q.returncode == 1, (cmd, r.stderr)
        assert 'Failed to get shared "write" lock' in r.stderr
        assert r.stderr.replace("strata-img", "qemu-img") == q.stderr
    r = simg("resize", good, "+1M", check=False)
    assert r.returncode == 1
    assert 'Failed to get "write" lock' in r.stderr
    # -U (force share, read-only) works.
    assert simg("info", "-U", good).returncode == 0
    assert simg("map", "-U", good).returncode == 0
    assert simg("check", "-U", good, check=False).returncode == 0
    assert simg("compare", "-U", good, good).returncode == 0
    r = simg("check", "-U", "-r", "leaks", good, check=False)
    assert r.returncode == 1
