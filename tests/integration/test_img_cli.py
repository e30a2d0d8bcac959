# SPDX-License-Identifier: BSD-3-Clause
"""strata-img command line: create's output line, -o help, help/version,
and qemu-img's answers to bad arguments (exit 1, never a crash)."""
import json
import subprocess

import pytest

from img_util import MiB, qimg, qio, same_stderr, simg


@pytest.mark.parametrize("args", [
    ["-f", "qcow2", "{img}", "64M"],
    ["-f", "qcow2", "-o", "cluster_size=4k,refcount_bits=1", "{img}", "1G"],
    ["-f", "qcow2", "-o", "compat=0.10", "{img}", "1G"],
    ["-f", "qcow2", "-o", "lazy_refcounts=on,preallocation=metadata", "{img}",
     "1M"],
    ["-f", "qcow2", "-o", "size=1M,cluster_size=2M", "-o", "refcount_bits=64",
     "{img}"],
    ["-f", "qcow2", "{img}", "1.5M"],
    ["-f", "qcow2", "-o", "encryption=off", "{img}", "64M"],     # iotest 049
    ["-f", "raw", "{img}", "10M"],
    ["{img}", "1G"],
    ["-f", "qcow2", "-b", "base.qcow2", "-F", "qcow2", "{img}"],
    ["-f", "qcow2", "-u", "-b", "nothere.qcow2", "-F", "qcow2", "{img}", "1G"],
])
def test_create_line_and_image_match(tmp_path, monkeypatch, args):
    monkeypatch.chdir(tmp_path)
    qimg("create", "-q", "-f", "qcow2", "base.qcow2", 32 * MiB)
    ours = simg("create", *[a.format(img="s.img") for a in args])
    theirs = qimg("create", *[a.format(img="q.img") for a in args])
    assert ours.stdout.replace("s.img", "q.img") == theirs.stdout
    si = json.loads(qimg("info", "--output=json", "s.img").stdout)
    qi = json.loads(qimg("info", "--output=json", "q.img").stdout)
    for info in (si, qi):
        info.pop("filename")
        info.pop("actual-size")
    assert si == qi
    if si["format"] == "qcow2" and "-u" not in args:
        assert qimg("check", "s.img", check=False).returncode == 0


@pytest.mark.parametrize("args", [
    ["-f", "qcow2", "{img}"],
    ["-f", "qcow2", "{img}", "12Q"],
    ["-f", "qcow2", "-o", "bogus=1", "{img}", "1M"],
    ["-f", "qcow2", "-o", "cluster_size=abc", "{img}", "1M"],
    ["-f", "qcow2", "-o", "refcount_bits=abc", "{img}", "1M"],
    ["-f", "qcow2", "-o", "lazy_refcounts=maybe", "{img}", "1M"],
    ["-f", "qcow2", "-o", "size=1M", "{img}", "2M"],
    ["-f", "qcow2", "-b", "nothere.qcow2", "-F", "qcow2", "{img}", "1G"],
    ["-f", "qcow2", "-u", "-b", "nothere", "{img}", "1M"],
    # iotest 111: the backing file's open error comes before the missing -F
    ["-f", "qcow2", "-b", "nothere.qcow2", "{img}", "1M"],
    ["-f", "qcow2", "-b", "", "{img}", "1M"],                    # iotest 049
    ["-f", "qcow2", "-o", "backing_file=", "{img}", "1M"],
    ["-f", "qcow2", "-o", "encryption=maybe", "{img}", "1M"],
    ["-f", "qcow2", "-b", "base.qcow2", "-F", "foo", "{img}", "1M"],
    ["-f", "qcow2", "-b", "nothere.qcow2", "-F", "foo", "{img}", "1M"],
    ["-f", "qcow2", "-u", "-b", "base.qcow2", "-F", "qcow2", "{img}"],
    ["-f", "qcow2", "-b", "base.qcow2", "{img}"],
    ["-f", "qcow2", "-b", "base.qcow2", "-F", "qcow2", "base.qcow2"],
    ["-f", "qcow2", "{img}", "1M", "2M"],
    ["-f", "foo", "{img}", "1M"],
])
def test_create_errors_match(tmp_path, monkeypatch, args):
    monkeypatch.chdir(tmp_path)
    qimg("create", "-q", "-f", "qcow2", "base.qcow2", MiB)
    ours = simg("create", *[a.format(img="x.img") for a in args], check=False)
    theirs = qimg("create", *[a.format(img="x.img") for a in args],
                  check=False)
    assert ours.returncode == theirs.returncode == 1
    assert same_stderr(ours.stderr, theirs.stderr), (ours.stderr, theirs.stderr)


@pytest.mark.parametrize("fmt", ["qcow2", "raw"])
def test_create_option_help(tmp_path, fmt):
    ours = simg("create", "-f", fmt, "-o", "help")
    theirs = qimg("create", "-f", fmt, "-o", "help")
    assert ours.stdout == theirs.stdout
    # With a file name the protocol's options are merged in.
    ours = simg("create", "-f", fmt, "-o", "help", tmp_path / "x")
    theirs = qimg("create", "-f", fmt, "-o", "help", tmp_path / "x")
    assert ours.stdout == theirs.stdout
    assert "nocow=" in ours.stdout


def test_help_and_version():
    for args in (["--help"], ["-h"], ["info", "-h"], ["convert", "--help"]):
        r = simg(*args)
        assert "usage: strata-img" in r.stdout
        for cmd in ("create", "info", "check", "map", "compare", "convert",
                    "rebase", "commit", "resize"):
            assert f"  {cmd} " in r.stdout
    r = simg("--version")
    assert r.stdout.startswith("strata-img version ")


def test_help_lists_drivers_as_qemu_img():
    """A line of --help names the drivers in qemu-img's format: sorted,
    each one QEMU's name for it, each one usable with -f."""
    def formats(out):
        lines = [l for l in out.split("\n")
                 if l.startswith("Supported formats:")]
        assert len(lines) == 1
        return lines[0].split()[2:]
    ours = formats(simg("--help").stdout)
    theirs = formats(subprocess.run(["qemu-img", "--help"], text=True,
                                    capture_output=True).stdout)
    assert ours == sorted(ours)
    assert {"file", "qcow2", "raw", "quorum", "blkdebug", "nbd"} <= set(ours)
    assert set(ours) <= set(theirs)
    for name in ours:
        r = simg("info", "-f", name, "/nonexistent/x", check=False)
        assert "Unknown driver" not in r.stderr, (name, r.stderr)


@pytest.mark.parametrize("name", ["/nonexistent/x", "http://x/y",
                                  "nbd+unix:///e?socket=/nonexistent/s"])
def test_nbd_filename_errors_as_qemu_img(name):
    """Scripts probe for NBD support by these texts."""
    ours = simg("info", "-f", "nbd", name, check=False)
    theirs = qimg("info", "-f", "nbd", name, check=False)
    assert ours.returncode == theirs.returncode == 1
    assert same_stderr(ours.stderr, theirs.stderr), (ours.stderr,
                                                     theirs.stderr)


@pytest.mark.parametrize("args", [
    [],
    ["foo"],
    ["info"],
    ["info", "a", "b"],
    ["info", "--bogus", "x"],
    ["info", "-f"],
    ["check", "-r"],
    ["map"],
    ["compare", "a"],
    ["resize", "x"],
    ["rebase", "x"],
])
def test_bad_arguments_match(args):
    ours = simg(*args, check=False)
    theirs = qimg(*args, check=False)
    assert ours.returncode == theirs.returncode == 1, (ours, theirs)
    assert same_stderr(ours.stderr.replace("strata-img", "qemu-img"),
                       theirs.stderr), (ours.stderr, theirs.stderr)


def test_open_errors_name_the_file(tmp_path):
    missing = tmp_path / "missing.qcow2"
    for cmd in (["info"], ["check"], ["map"], ["resize"]):
        extra = ["1G"] if cmd == ["resize"] else []
        ours = simg(*cmd, missing, *extra, check=False)
        theirs = qimg(*cmd, missing, *extra, check=False)
        assert ours.returncode == theirs.returncode == 1
        assert same_stderr(ours.stderr, theirs.stderr), (ours.stderr,
                                                         theirs.stderr)


def test_wrong_format_error(tmp_path):
    raw = tmp_path / "r.raw"
    qimg("create", "-f", "raw", raw, MiB)
    ours = simg("info", "-f", "qcow2", raw, check=False)
    theirs = qimg("info", "-f", "qcow2", raw, check=False)
    assert ours.returncode == theirs.returncode == 1
    assert same_stderr(ours.stderr, theirs.stderr), (ours.stderr,
                                                     theirs.stderr)


def test_messages_name_the_program_as_called(tmp_path):
    """Like qemu-img, messages carry the basename of argv[0]: a qemu-img
    link to strata-img prints what qemu-img prints."""
    import os
    from img_util import strata_img_path
    link = tmp_path / "qemu-img"
    os.symlink(strata_img_path(), link)
    for args in (["info", str(tmp_path / "nonexistent")], ["foo"], ["info"]):
        ours = subprocess.run([str(link), *args], capture_output=True,
                              text=True)
        theirs = qimg(*args, check=False)
        assert ours.returncode == theirs.returncode == 1
        assert ours.stderr == theirs.stderr
