# SPDX-License-Identifier: BSD-3-Clause
"""strata-img compare, rebase, commit and resize against qemu-img."""
import json

import pytest

from img_util import MiB, map_json, qimg, qio, same_stderr, simg, write_raw


def compare_both(a, b, *args):
    ours = simg("compare", *args, a, b, check=False)
    theirs = qimg("compare", *args, a, b, check=False)
    assert (ours.returncode, ours.stdout) == (theirs.returncode,
                                              theirs.stdout), (ours, theirs)
    return ours


@pytest.fixture
def images(tmp_path):
    base = tmp_path / "base.qcow2"
    top = tmp_path / "top.qcow2"
    qimg("create", "-f", "qcow2", base, 8 * MiB)
    qio(base, "write -P 0xaa 0 1M")
    qimg("create", "-f", "qcow2", "-b", "base.qcow2", "-F", "qcow2", top)
    qio(top, "write -P 0xbb 512k 1M", "write -P 0xcc 4100 300")
    flat = tmp_path / "base.raw"
    qimg("convert", "-O", "raw", base, flat)
    return dict(base=base, top=top, flat=flat, dir=tmp_path)


def test_compare_outcomes(images):
    b, t, flat = images["base"], images["top"], images["flat"]
    assert compare_both(b, flat).returncode == 0
    assert compare_both(b, t).returncode == 1
    compare_both(b, t, "-q")
    compare_both(b, flat, "-s")
    compare_both(b, b, "-s")


def test_compare_size_mismatch(images, tmp_path):
    longer = tmp_path / "long.raw"
    longer.write_bytes(images["flat"].read_bytes() + bytes(MiB))
    r = compare_both(images["base"], longer, "-F", "raw")
    assert r.stdout.startswith("Warning: Image size mismatch!")
    assert r.returncode == 0
    with open(longer, "r+b") as f:
        f.seek(8 * MiB + 12345)
        f.write(b"x")
    assert compare_both(longer, images["base"], "-f", "raw").returncode == 1
    assert compare_both(images["base"], longer, "-s",
                        "-F", "raw").returncode == 1


def test_compare_open_error_exit_2(images, tmp_path):
    ours = simg("compare", images["base"], tmp_path / "nope", check=False)
    theirs = qimg("compare", images["base"], tmp_path / "nope", check=False)
    assert ours.returncode == theirs.returncode == 2


def test_rebase_safe_keeps_content(images, tmp_path):
    top = images["top"]
    before = tmp_path / "before.raw"
    qimg("convert", "-O", "raw", top, before)
    other = tmp_path / "other.qcow2"
    qimg("create", "-f", "qcow2", other, 8 * MiB)
    qio(other, "write -P 0x55 2M 1M", "write -P 0xaa 0 256k")
    simg("rebase", "-b", "other.qcow2", "-F", "qcow2", top)
    info = json.loads(qimg("info", "--output=json", top).stdout)
    assert info["backing-filename"] == "other.qcow2"
    assert qimg("compare", "-F", "raw", top, before,
                check=False).returncode == 0
    assert qimg("check", top, check=False).returncode == 0


def test_rebase_remove_backing(images, tmp_path):
    top = images["top"]
    before = tmp_path / "before.raw"
    qimg("convert", "-O", "raw", top, before)
    simg("rebase", "-b", "", top)
    info = json.loads(qimg("info", "--output=json", top).stdout)
    assert "backing-filename" not in info
    assert qimg("compare", "-F", "raw", top, before,
                check=False).returncode == 0


def test_rebase_unsafe_only_header(images, tmp_path):
    top = images["top"]
    m_before = map_json(qimg, top)
    images["base"].rename(images["dir"] / "renamed.qcow2")
    simg("rebase", "-u", "-b", "renamed.qcow2", "-F", "qcow2", top)
    info = json.loads(qimg("info", "--output=json", top).stdout)
    assert info["backing-filename"] == "renamed.qcow2"
    assert info["backing-filename-format"] == "qcow2"
    r = simg("info", top)
    assert "backing file: renamed.qcow2" in r.stdout
    assert qimg("check", top, check=False).returncode == 0
    # Nothing was copied: the map is the same as before.
    assert map_json(qimg, top) == m_before


def test_rebase_errors(images, tmp_path):
    top = images["top"]
    for args in (["-b", "nothere", "-F", "qcow2"], ["-b", "base.qcow2"]):
        ours = simg("rebase", *args, top, check=False)
        theirs = qimg("rebase", *args, top, check=False)
        assert ours.returncode == theirs.returncode == 1, args
        assert (ours.stderr.replace("strata-img", "qemu-img") ==
                theirs.stderr), (ours.stderr, theirs.stderr)


def test_commit(images, tmp_path):
    top, base = images["top"], images["base"]
    before = tmp_path / "before.raw"
    qimg("convert", "-O", "raw", top, before)
    r = simg("commit", top)
    assert r.stdout == "Image committed.\n"
    assert qimg("compare", "-F", "raw", base, before,
                check=False).returncode == 0
    assert qimg("compare", "-F", "raw", top, before,
                check=False).returncode == 0
    # The top is empty again: everything comes from the base.
    assert all(e["depth"] == 1 or not e["present"] for e in
               map_json(qimg, top))
    assert qimg("check", base, check=False).returncode == 0
    assert qimg("check", top, check=False).returncode == 0


def test_commit_drop_and_no_backing(images, tmp_path):
    top, base = images["top"], images["base"]
    simg("commit", "-d", top)
    assert any(e["depth"] == 0 and e["data"] for e in map_json(qimg, top))
    r = simg("commit", base, check=False)
    assert r.returncode == 1
    assert "Image does not have a backing file" in r.stderr


def test_resize(tmp_path):
    img = tmp_path / "r.qcow2"
    qimg("create", "-f", "qcow2", img, 4 * MiB)
    assert simg("resize", img, "+1M").stdout == "Image resized.\n"
    assert json.loads(qimg("info", "--output=json", img).stdout)[
        "virtual-size"] == 5 * MiB
    ours = simg("resize", img, "--", "-1M", check=False)
    assert ours.returncode == 1
    assert "Use the --shrink option" in ours.stderr
    simg("resize", "--shrink", img, "--", "-1M")
    assert json.loads(qimg("info", "--output=json", img).stdout)[
        "virtual-size"] == 4 * MiB
    raw = tmp_path / "r.raw"
    write_raw(raw, bytes(MiB))
    simg("resize", "-f", "raw", raw, "3M")
    assert raw.stat().st_size == 3 * MiB
    r = simg("resize", img, "1Z", check=False)
    assert r.returncode == 1
    r = simg("resize", "--preallocation=bogus", img, "+1M", check=False)
    assert r.returncode == 1
    assert "Invalid preallocation mode 'bogus'" in r.stderr
    assert qimg("check", img, check=False).returncode == 0


def test_commit_of_a_raw_top_matches_qemu_img(tmp_path):
    """A raw top cannot be emptied: qemu-img commits and says so all the
    same."""
    outs = []
    for tool, d in ((simg, tmp_path / "s"), (qimg, tmp_path / "q")):
        d.mkdir()
        qimg("create", "-q", "-f", "raw", d / "base.raw", MiB)
        qimg("create", "-q", "-f", "qcow2", "-b", d / "base.raw", "-F",
             "raw", d / "mid.qcow2")
        qio(d / "mid.qcow2", "write -P 0x5 0 64k")
        outs.append(tool("commit", d / "mid.qcow2", check=False))
        raw_top = d / "top.raw"
        qimg("create", "-q", "-f", "raw", raw_top, MiB)
        outs.append(tool("commit", "-f", "raw", raw_top, check=False))
    for ours, theirs in zip(outs[:2], outs[2:]):
        assert (ours.returncode, ours.stdout) == (theirs.returncode,
                                                  theirs.stdout)
        assert same_stderr(ours.stderr, theirs.stderr)
    assert_same = qimg("compare", tmp_path / "s" / "base.raw",
                       tmp_path / "q" / "base.raw", check=False)
    assert assert_same.returncode == 0


@pytest.mark.parametrize("size", ["0", "100", "1000", "4096", "5000", "1M"])
@pytest.mark.parametrize("prealloc", ["off", "falloc"])
def test_raw_create_allocates_the_first_block_as_qemu_img(tmp_path, size,
                                                          prealloc):
    """QEMU writes the first block of a new file (for O_DIRECT alignment
    probing), so 'qemu-img map' of a fresh raw image shows it as data
    (iotest 150)."""
    maps = []
    for tool, name in ((simg, "s.raw"), (qimg, "q.raw")):
        tool("create", "-q", "-f", "raw", "-o", f"preallocation={prealloc}",
             tmp_path / name, size)
        maps.append(qimg("map", "--output=json", "-f", "raw",
                         tmp_path / name).stdout.replace(name, "X"))
    assert maps[0] == maps[1]
