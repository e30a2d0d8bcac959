# SPDX-License-Identifier: BSD-3-Clause
"""strata-img info and map against qemu-img: JSON output must be equal
(key order aside) for raw and qcow2, with and without backing files."""
import os

import pytest

from img_util import MiB, info_json, map_json, qimg, qio, simg


@pytest.fixture
def chain(tmp_path):
    """base.qcow2 <- top.qcow2 with data in both, a zero run in the top
    and a range the top overwrites; plus a raw image."""
    base = tmp_path / "base.qcow2"
    top = tmp_path / "top.qcow2"
    raw = tmp_path / "disk.raw"
    qimg("create", "-f", "qcow2", base, 16 * MiB)
    qio(base, "write -P 0xaa 0 1M", "write -P 0xab 3M 128k")
    qimg("create", "-f", "qcow2", "-b", base.name, "-F", "qcow2", top)
    qio(top, "write -P 0xbb 512k 1M", "write -z 4M 1M", "write -P 1 8M 4k")
    qimg("create", "-f", "raw", raw, 8 * MiB)
    qio(raw, "write -P 0xcc 1M 64k", fmt="raw")
    return dict(base=base, top=top, raw=raw, dir=tmp_path)


def test_info_json_equal(chain):
    os.chdir(chain["dir"])
    for name in ("base.qcow2", "top.qcow2", "disk.raw"):
        assert info_json(simg, name) == info_json(qimg, name), name


def test_info_json_backing_chain_equal(chain):
    os.chdir(chain["dir"])
    ours = info_json(simg, "top.qcow2", "--backing-chain")
    theirs = info_json(qimg, "top.qcow2", "--backing-chain")
    assert ours == theirs
    assert len(ours) == 2


def test_info_json_other_directory(chain):
    # Relative backing names resolve against the image's directory.
    top = str(chain["top"])
    assert info_json(simg, top) == info_json(qimg, top)
    assert (info_json(simg, top, "--backing-chain") ==
            info_json(qimg, top, "--backing-chain"))


@pytest.mark.parametrize("opts", ["compat=0.10", "cluster_size=4k,refcount_bits=1",
                                  "lazy_refcounts=on", "cluster_size=2M,refcount_bits=64"])
def test_info_json_variants(tmp_path, opts):
    img = tmp_path / "v.qcow2"
    qimg("create", "-f", "qcow2", "-o", opts, img, 4 * MiB)
    qio(img, "write -P 7 0 64k")
    assert info_json(simg, img) == info_json(qimg, img)


def test_info_human_equal(chain):
    os.chdir(chain["dir"])
    for args in (["top.qcow2"], ["--backing-chain", "top.qcow2"],
                 ["disk.raw"], ["-f", "raw", "disk.raw"]):
        ours = simg("info", *args)
        theirs = qimg("info", *args)
        assert ours.stdout == theirs.stdout, args


def test_info_missing_backing_still_works(tmp_path):
    img = tmp_path / "orphan.qcow2"
    qimg("create", "-f", "qcow2", "-u", "-b", "gone.qcow2", "-F", "qcow2",
         img, 1 * MiB)
    assert info_json(simg, img) == info_json(qimg, img)
    r = simg("info", "--backing-chain", img, check=False)
    assert r.returncode == 1
    assert "gone.qcow2" in r.stderr


def test_map_json_equal(chain):
    os.chdir(chain["dir"])
    for name in ("base.qcow2", "top.qcow2"):
        assert map_json(simg, name) == map_json(qimg, name), name
    assert (map_json(simg, "disk.raw", "-f", "raw") ==
            map_json(qimg, "disk.raw", "-f", "raw"))


def test_map_ranges_equal(chain):
    os.chdir(chain["dir"])
    for extra in (["--start-offset=100000", "--max-length=3000000"],
                  ["--start-offset=100M"], ["--max-length=1"]):
        assert (map_json(simg, "top.qcow2", *extra) ==
                map_json(qimg, "top.qcow2", *extra)), extra


def test_map_human_equal(chain):
    os.chdir(chain["dir"])
    ours = simg("map", "top.qcow2")
    theirs = qimg("map", "top.qcow2")
    assert ours.stdout == theirs.stdout


def test_map_compressed(tmp_path):
    src = tmp_path / "s.qcow2"
    comp = tmp_path / "c.qcow2"
    qimg("create", "-f", "qcow2", src, 2 * MiB)
    qio(src, "write -P 3 0 256k")
    qimg("convert", "-c", "-O", "qcow2", src, comp)
    assert map_json(simg, comp) == map_json(qimg, comp)
    # Human output cannot show compressed clusters: same error, exit 1.
    ours = simg("map", comp, check=False)
    assert ours.returncode == 1
    assert "compressed clusters" in ours.stderr


def test_bad_output_format(chain):
    r = simg("info", "--output=xml", chain["raw"], check=False)
    assert r.returncode == 1
    assert "--output must be used with human or json" in r.stderr


def test_map_backing_shorter_and_three_layers(tmp_path, monkeypatch):
    """Past the end of a shorter backing file qemu-img reports the layer
    whose backing ended (depth 0 here), not the bottom of the chain."""
    monkeypatch.chdir(tmp_path)
    qimg("create", "-q", "-f", "qcow2", "b.qcow2", 1 * MiB)
    qio("b.qcow2", "write -P 1 0 1M")
    qimg("create", "-q", "-f", "qcow2", "-b", "b.qcow2", "-F", "qcow2",
         "m.qcow2", 4 * MiB)
    qio("m.qcow2", "write -P 2 2M 64k")
    qimg("create", "-q", "-f", "qcow2", "-b", "m.qcow2", "-F", "qcow2",
         "t.qcow2", 8 * MiB)
    qio("t.qcow2", "write -P 3 5M 64k", "write -z 512k 64k")
    for name in ("m.qcow2", "t.qcow2"):
        assert map_json(simg, name) == map_json(qimg, name), name
        assert simg("map", name).stdout == qimg("map", name).stdout, name
    assert (info_json(simg, "t.qcow2", "--backing-chain") ==
            info_json(qimg, "t.qcow2", "--backing-chain"))


@pytest.mark.parametrize("mode", ["metadata", "falloc", "full"])
def test_map_preallocated_image_matches_qemu(tmp_path, mode):
    """A qcow2 image preallocated with metadata has data clusters whose
    host clusters are holes: QEMU detects such an image and reports
    those clusters as zeroes too; strata's map says the same."""
    img = tmp_path / "p.qcow2"
    qimg("create", "-q", "-f", "qcow2", "-o", f"preallocation={mode}", img,
         "4M")
    qio(img, "write -P 0x1a 1m 64k", "write -P 0x1b 3m 4k")
    assert (simg("map", "--output=json", img).stdout ==
            qimg("map", "--output=json", img).stdout)
