# SPDX-License-Identifier: BSD-3-Clause
"""strata-img check against qemu-img check: outputs, JSON and exit codes
on clean images, leaked clusters and corruptions, and repair."""
import json
import os

import pytest

from img_util import (MiB, first_l2_entry_offset, peek, poke, qcow2_header,
                      qimg, qio, set_refcount, simg)


def make_image(path, opts="", size=4 * MiB):
    args = ["create", "-f", "qcow2"]
    if opts:
        args += ["-o", opts]
    qimg(*args, path, size)
    qio(path, "write -P 0x11 0 256k", "write -P 0x22 1M 64k")


def add_leak(path, count=2):
    """Appends clusters to the file and marks them used: leaked clusters."""
    h = qcow2_header(path)
    cs = 1 << h["cluster_bits"]
    size = os.path.getsize(path)
    first = (size + cs - 1) // cs
    with open(path, "r+b") as f:
        f.truncate((first + count) * cs)
    for i in range(count):
        set_refcount(path, first + i, 1)
    return first


def both_check(path, *args):
    ours = simg("check", *args, path, check=False)
    theirs = qimg("check", *args, path, check=False)
    return ours, theirs


def test_clean_human_and_json(tmp_path):
    img = tmp_path / "clean.qcow2"
    make_image(img)
    ours, theirs = both_check(img)
    assert (ours.returncode, ours.stdout) == (theirs.returncode, theirs.stdout)
    assert ours.returncode == 0
    ours, theirs = both_check(img, "--output=json")
    assert json.loads(ours.stdout) == json.loads(theirs.stdout)


@pytest.mark.parametrize("opts", ["cluster_size=4k", "compat=0.10",
                                  "refcount_bits=1", "refcount_bits=64"])
def test_clean_variants_agree(tmp_path, opts):
    img = tmp_path / "v.qcow2"
    make_image(img, opts)
    ours, theirs = both_check(img, "--output=json")
    assert ours.returncode == theirs.returncode == 0
    assert json.loads(ours.stdout) == json.loads(theirs.stdout)


def test_leaks_exit_3_and_repair(tmp_path):
    img = tmp_path / "leak.qcow2"
    make_image(img)
    add_leak(img)
    ours, theirs = both_check(img)
    assert ours.returncode == theirs.returncode == 3
    assert ours.stdout == theirs.stdout
    ours, theirs = both_check(img, "--output=json")
    assert json.loads(ours.stdout) == json.loads(theirs.stdout)

    copy = tmp_path / "leak-q.qcow2"
    copy.write_bytes(img.read_bytes())
    ours = simg("check", "-r", "leaks", img, check=False)
    theirs = qimg("check", "-r", "leaks", copy, check=False)
    assert ours.returncode == theirs.returncode == 0
    assert ours.stdout == theirs.stdout
    assert "The following inconsistencies were found and repaired" in ours.stdout
    # qemu-img agrees the repaired image is clean.
    assert qimg("check", img, check=False).returncode == 0


def test_repair_json_reports_fixed(tmp_path):
    img = tmp_path / "leak.qcow2"
    make_image(img)
    add_leak(img, 1)
    copy = tmp_path / "leak-q.qcow2"
    copy.write_bytes(img.read_bytes())
    ours = json.loads(simg("check", "-r", "all", "--output=json", img).stdout)
    theirs = json.loads(qimg("check", "-r", "all", "--output=json",
                             copy).stdout)
    ours["filename"] = theirs["filename"]
    assert ours == theirs
    assert ours["leaks-fixed"] == 1


def test_corruption_exit_2(tmp_path):
    img = tmp_path / "bad.qcow2"
    make_image(img)
    # Refcount of a data cluster dropped to 0 while an L2 entry uses it.
    l2 = first_l2_entry_offset(img)
    entry = peek(img, l2, ">Q")[0]
    host = entry & 0x00fffffffffffe00
    set_refcount(img, host >> qcow2_header(img)["cluster_bits"], 0)
    ours, theirs = both_check(img)
    assert ours.returncode == theirs.returncode == 2
    ours, theirs = both_check(img, "--output=json")
    assert json.loads(ours.stdout) == json.loads(theirs.stdout)


def test_raw_not_supported(tmp_path):
    img = tmp_path / "r.raw"
    qimg("create", "-f", "raw", img, 1 * MiB)
    ours, theirs = both_check(img)
    assert ours.returncode == theirs.returncode == 63
    assert "This image format does not support checks" in ours.stderr
    ours, _ = both_check(img, "--output=json")
    assert ours.returncode == 63


def test_bad_repair_argument(tmp_path):
    img = tmp_path / "c.qcow2"
    make_image(img)
    r = simg("check", "-r", "some", img, check=False)
    assert r.returncode == 1
    assert "expecting 'leaks' or 'all'" in r.stderr


def test_strata_made_images_pass_qemu_check(tmp_path):
    src = tmp_path / "src.raw"
    src.write_bytes(os.urandom(64 * 1024) * 8 + bytes(512 * 1024))
    for opts in ("cluster_size=4k", "refcount_bits=1", "compat=0.10"):
        dst = tmp_path / f"d-{opts.replace('=', '')}.qcow2"
        simg("convert", "-f", "raw", "-O", "qcow2", "-o", opts, src, dst)
        assert qimg("check", dst, check=False).returncode == 0, opts
        ours, theirs = both_check(dst, "--output=json")
        assert json.loads(ours.stdout) == json.loads(theirs.stdout)
