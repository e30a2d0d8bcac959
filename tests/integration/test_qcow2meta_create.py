# SPDX-License-Identifier: BSD-3-Clause
"""strata-img create -f qcow2 against qemu-img create: for the same
options and size the two files must be byte-identical (header, feature
table, refcount table and blocks, L1 table, preallocated L2 tables and
data clusters), and refused options must fail with QEMU's exit code and
message.

Known, deliberate differences (not tested for equality):
- encrypt.*: strata refuses it with a clear "not supported by strata"
  error, QEMU creates the image.
"""
import filecmp

import pytest

from qcow2meta_util import normalize_stderr, qemu_img, strata_img

LAYOUTS = [
    # cluster sizes, with and without metadata preallocation
    ("cluster_size=512", "1000000"),
    ("cluster_size=512,preallocation=metadata", "3M"),
    ("cluster_size=4k", "16M"),
    ("cluster_size=4k,preallocation=metadata", "16M"),
    ("cluster_size=64k,preallocation=metadata", "100M"),
    ("cluster_size=2M", "16M"),
    ("cluster_size=2M,preallocation=metadata", "16M"),
    # refcount widths
    ("refcount_bits=1,preallocation=metadata", "16M"),
    ("refcount_bits=8,cluster_size=4k,preallocation=metadata", "8M"),
    ("refcount_bits=64,cluster_size=512,preallocation=metadata", "2M"),
    # compatibility levels and features
    ("compat=0.10", "16M"),
    ("compat=0.10,preallocation=metadata", "16M"),
    ("compat=v3,lazy_refcounts=on", "16M"),
    ("compression_type=zstd", "16M"),
    # data preallocation
    ("preallocation=falloc", "1M"),
    ("preallocation=full,cluster_size=4k", "1M"),
    ("preallocation=falloc,refcount_bits=1,cluster_size=4k", "1000000"),
    # sizes
    ("", "0"),
    ("", "1000"),
    ("", "1T"),
]


def create_both(tmp_path, opts, size, extra=()):
    ours, theirs = tmp_path / "strata.qcow2", tmp_path / "qemu.qcow2"
    base = ["create", "-q", "-f", "qcow2", *extra]
    if opts:
        base += ["-o", opts]
    sz = [size] if size else []
    ro = strata_img(*base, str(ours), *sz, check=False)
    rq = qemu_img(*base, str(theirs), *sz, check=False)
    return ours, theirs, ro, rq


@pytest.mark.parametrize("opts,size", LAYOUTS)
def test_layout_byte_identical(tmp_path, opts, size):
    ours, theirs, ro, rq = create_both(tmp_path, opts, size)
    assert ro.returncode == rq.returncode == 0, (ro.stderr, rq.stderr)
    assert filecmp.cmp(ours, theirs, shallow=False)
    # And strata's own check agrees the new image is clean.
    assert strata_img("check", str(ours)).returncode == 0


@pytest.mark.parametrize("compat", ["1.1", "0.10"])
def test_backing_layout_byte_identical(tmp_path, compat):
    back = tmp_path / "back.qcow2"
    qemu_img("create", "-q", "-f", "qcow2", str(back), "16M")
    ours, theirs, ro, rq = create_both(
        tmp_path, f"compat={compat}", "", ("-b", str(back), "-F", "qcow2"))
    assert ro.returncode == rq.returncode == 0, (ro.stderr, rq.stderr)
    assert filecmp.cmp(ours, theirs, shallow=False)


@pytest.mark.parametrize("opts", [
    "cluster_size=3000", "cluster_size=256", "cluster_size=4M",
    "refcount_bits=3", "refcount_bits=128", "compat=0.10,refcount_bits=1",
    "compat=0.10,lazy_refcounts=on", "foo=bar", "compat=2.0",
    "preallocation=bogus", "compression_type=lz4",
    "compat=0.10,compression_type=zstd",
])
def test_refusals_match_qemu(tmp_path, opts):
    ours, theirs, ro, rq = create_both(tmp_path, opts, "1M")
    assert ro.returncode == rq.returncode == 1
    assert normalize_stderr(ro.stderr) == rq.stderr.replace(str(theirs),
                                                            str(ours))
    assert not ours.exists() and not theirs.exists()


@pytest.mark.parametrize("opts", ["encrypt.format=luks"])
def test_unsupported_features_refused(tmp_path, opts):
    ours = tmp_path / "u.qcow2"
    r = strata_img("create", "-q", "-f", "qcow2", "-o", opts, str(ours), "1M",
                   check=False)
    assert r.returncode == 1
    assert "not supported by strata" in r.stderr
