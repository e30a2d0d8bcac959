# SPDX-License-Identifier: BSD-3-Clause
"""strata-img check against qemu-img check on damaged qcow2 images.

Each image is made by qemu-img/qemu-io, damaged with struct, and copied;
strata-img checks one copy and qemu-img the other.  The JSON results
(corruptions, leaks, check-errors, image-end-offset, total/allocated/
fragmented/compressed clusters), the exit codes and the stderr lines
must be equal; after `-r leaks` / `-r all` both tools must judge both
repaired files alike, the files must be byte-identical (strata rebuilds
refcount structures exactly where QEMU does), and the guest data must
read back as before where the damage did not destroy it.
"""
import filecmp

import pytest

from qcow2meta_util import (OFLAG_COPIED, Image, both, check_human,
                            check_json, make_image, normalize_stderr,
                            qemu_img, qemu_io, qemu_io_then_crash,
                            strata_img)

WRITES = ("write -P 0x11 0 256k", "write -P 0x22 1M 64k",
          "write -P 0x33 3M 64k")


def base_image(tmp_path, opts="", writes=WRITES):
    return make_image(str(tmp_path / "base.qcow2"), size="4M", opts=opts,
                      writes=writes)


# ---- damage: each takes the Image and breaks one thing ----

def leak_appended(im):
    """A refcount on a cluster appended to the file (nothing uses it)."""
    n = (im.file_size() + im.cs - 1) // im.cs
    with open(im.path, "r+b") as f:
        f.truncate((n + 2) * im.cs)
    im.set_refcount(n, 1)
    im.set_refcount(n + 1, 1)


def leak_past_end(im):
    """A refcount for a cluster past the end of the file: invisible to
    QEMU's check (it only compares clusters inside the file)."""
    n = (im.file_size() + im.cs - 1) // im.cs
    im.set_refcount(n + 3, 1)


def data_refcount_zero(im):
    im.set_refcount(im.host_cluster(0), 0)


def l2_refcount_two(im):
    im.set_refcount(im.l2_table(0) >> im.cluster_bits, 2)


def l2_refcount_zero(im):
    im.set_refcount(im.l2_table(0) >> im.cluster_bits, 0)


def refblock_refcounts_zero(im):
    im.set_refcount(im.refblock(0) >> im.cluster_bits, 0)
    im.set_refcount(im.rt_off >> im.cluster_bits, 0)


def l2_entry_misaligned(im):
    o = im.l2_entry_offset(0)
    im.put_u64(o, im.u64(o) + 0x200)


def l2_entry_beyond_eof(im):
    o = im.l2_entry_offset(64 * 1024)
    im.put_u64(o, OFLAG_COPIED | (im.file_size() + 16 * im.cs))


def oflag_copied_cleared(im):
    for o in (im.l2_entry_offset(0), im.l1_entry_offset(0)):
        im.put_u64(o, im.u64(o) & ~OFLAG_COPIED)


def oflag_copied_set_on_shared(im):
    """Data cluster shared by two L2 entries (refcount 2), COPIED kept."""
    host = im.host_cluster(0)
    im.set_refcount(host, 2)
    o = im.l2_entry_offset(128 * 1024)
    im.put_u64(o, OFLAG_COPIED | (host << im.cluster_bits))


def l2_points_at_refcount_table(im):
    o = im.l2_entry_offset(64 * 1024)
    im.put_u64(o, OFLAG_COPIED | im.rt_off)


def refblock_outside_image(im):
    im.put_u64(im.rt_off + 8, im.file_size() + 4 * im.cs)


def preallocated_zero_misaligned(im):
    o = im.l2_entry_offset(2 * 64 * 1024)
    im.put_u64(o, OFLAG_COPIED | 0x1 | ((im.host_cluster(0) << im.cluster_bits)
                                        + 0x200))


def reftable_reserved_bit(im):
    im.put_u64(im.rt_off, im.u64(im.rt_off) | 1)


def refblock_misaligned(im):
    im.put_u64(im.rt_off, im.u64(im.rt_off) + 0x200)


def refcount_overflow(im):
    """With 1-bit refcounts a cluster used twice cannot be counted."""
    host = im.host_cluster(0)
    o = im.l2_entry_offset(1 << 20)
    im.put_u64(o, OFLAG_COPIED | (host << im.cluster_bits))


class Case:
    def __init__(self, damage, plain, repaired, data_kept, opts=""):
        self.damage = damage
        self.plain = plain          # exit code of `check`
        self.repaired = repaired    # (exit code of -r all, check after)
        self.data_kept = data_kept  # guest data survives the damage
        self.opts = opts


CASES = {
    "leak": Case(leak_appended, 3, (0, 0), True),
    "leak-past-end": Case(leak_past_end, 0, (0, 0), True),
    "data-refcount-zero": Case(data_refcount_zero, 2, (0, 0), True),
    "l2-refcount-two": Case(l2_refcount_two, 2, (0, 0), True),
    "l2-refcount-zero": Case(l2_refcount_zero, 2, (0, 0), True),
    "refblock-refcounts-zero": Case(refblock_refcounts_zero, 2, (0, 0), True),
    "l2-misaligned": Case(l2_entry_misaligned, 2, (2, 2), False),
    "l2-beyond-eof": Case(l2_entry_beyond_eof, 2, (2, 2), False),
    "oflag-copied-cleared": Case(oflag_copied_cleared, 2, (0, 0), True),
    "oflag-copied-shared": Case(oflag_copied_set_on_shared, 2, (0, 0), False),
    "overlap-refcount-table": Case(l2_points_at_refcount_table, 2, (0, 0),
                                   False),
    "refblock-outside-image": Case(refblock_outside_image, 2, (0, 0), True),
    "prealloc-zero-misaligned": Case(preallocated_zero_misaligned, 2, (0, 0),
                                     False),
    # The rebuild cannot place its first block: both tools stop with an
    # overlap error, mark the image corrupt and exit 1.
    "reftable-reserved-bit": Case(reftable_reserved_bit, 2, (1, 2), True),
    "refblock-misaligned": Case(refblock_misaligned, 1, (1, 1), True),
    "refcount-overflow": Case(refcount_overflow, 2, (2, 2), False,
                              "refcount_bits=1"),
}


def damaged(tmp_path, name):
    img = base_image(tmp_path, CASES[name].opts)
    pristine = tmp_path / "pristine.qcow2"
    pristine.write_bytes(open(img, "rb").read())
    CASES[name].damage(Image(img))
    return img, str(pristine)


def assert_same_check(ours, theirs, *args):
    """Same exit code, JSON and stderr from both tools; returns the code."""
    rc_o, doc_o, err_o = check_json(strata_img, ours, *args)
    rc_q, doc_q, err_q = check_json(qemu_img, theirs, *args)
    assert (rc_o, doc_o) == (rc_q, doc_q), (err_o, err_q)
    assert normalize_stderr(err_o) == err_q
    return rc_o


@pytest.mark.parametrize("name", sorted(CASES))
def test_check_reports_like_qemu(tmp_path, name):
    img, _ = damaged(tmp_path, name)
    ours, theirs = both(tmp_path, img, "c")
    assert assert_same_check(ours, theirs) == CASES[name].plain
    # Human output too (stdout is what scripts grep).
    o, q = check_human(strata_img, ours), check_human(qemu_img, theirs)
    assert o[:2] == q[:2]
    # A check without -r changes nothing.
    assert filecmp.cmp(ours, img, shallow=False)


@pytest.mark.parametrize("mode", ["leaks", "all"])
@pytest.mark.parametrize("name", sorted(CASES))
def test_repair_like_qemu(tmp_path, name, mode):
    img, pristine = damaged(tmp_path, name)
    ours, theirs = both(tmp_path, img, "r")
    rc = assert_same_check(ours, theirs, "-r", mode)
    # Both tools judge both repaired files alike, and the files match.
    rc_after = assert_same_check(ours, theirs)
    assert_same_check(theirs, ours)
    assert filecmp.cmp(ours, theirs, shallow=False)
    if mode == "all":
        assert (rc, rc_after) == CASES[name].repaired
        if CASES[name].data_kept:
            assert qemu_img("compare", "-U", pristine, ours).returncode == 0


@pytest.mark.parametrize("opts", ["cluster_size=512", "cluster_size=4k",
                                  "refcount_bits=1", "refcount_bits=8",
                                  "refcount_bits=64", "compat=0.10"])
def test_rebuild_variants_identical(tmp_path, opts):
    """The rebuild lays out refcount blocks and table like QEMU for every
    refcount width and cluster size."""
    img = make_image(str(tmp_path / "v.qcow2"), size="64M", opts=opts,
                     writes=WRITES + ("write -P 0x44 32M 1M",))
    pristine = tmp_path / "pristine.qcow2"
    pristine.write_bytes(open(img, "rb").read())
    im = Image(img)
    im.set_refcount(im.host_cluster(0), 0)
    ours, theirs = both(tmp_path, img, "v")
    assert assert_same_check(ours, theirs, "-r", "all") == 0
    assert filecmp.cmp(ours, theirs, shallow=False)
    assert qemu_img("compare", str(pristine), ours).returncode == 0


def test_leaks_repair_refuses_rebuild(tmp_path):
    """-r leaks cannot fix a zero refcount: both fail with exit 1."""
    img, _ = damaged(tmp_path, "data-refcount-zero")
    ours, theirs = both(tmp_path, img, "l")
    assert assert_same_check(ours, theirs, "-r", "leaks") == 1


def test_dirty_after_kill(tmp_path):
    """qemu-io killed (SIGKILL) after writing to a lazy_refcounts image:
    the dirty bit stays set and refcounts are missing."""
    img = make_image(str(tmp_path / "d.qcow2"), size="8M",
                     opts="lazy_refcounts=on", writes=("write -P 0x11 0 64k",))
    qemu_img("check", img)
    qemu_io_then_crash(img, "write -P 0x22 1M 128k", "write -P 0x33 5M 64k")
    assert Image(img).incompat & 1
    ours, theirs = both(tmp_path, img, "d")
    assert assert_same_check(ours, theirs) == 2
    assert assert_same_check(ours, theirs, "-r", "all") == 0
    assert filecmp.cmp(ours, theirs, shallow=False)
    assert Image(ours).incompat & 1 == 0
    assert assert_same_check(ours, theirs) == 0
    qemu_io(ours, "read -P 0x11 0 64k", "read -P 0x22 1M 128k",
            "read -P 0x33 5M 64k")


def test_dirty_leaks_repair_fails_like_qemu(tmp_path):
    img = make_image(str(tmp_path / "d.qcow2"), size="8M",
                     opts="lazy_refcounts=on")
    qemu_io_then_crash(img, "write -P 0x22 1M 128k")
    ours, theirs = both(tmp_path, img, "d")
    assert assert_same_check(ours, theirs, "-r", "leaks") == 1
    # Unrepaired (refcounts still missing), yet QEMU's close clears the
    # dirty bit all the same: the two files must stay identical.
    assert Image(ours).incompat == Image(theirs).incompat
    assert filecmp.cmp(ours, theirs, shallow=False)


@pytest.mark.parametrize("mode", ["leaks", "all"])
def test_corrupt_bit_cleared_by_repair(tmp_path, mode):
    img = base_image(tmp_path)
    im = Image(img)
    im.set_incompat(2)
    ours, theirs = both(tmp_path, img, "x")
    assert assert_same_check(ours, theirs) == 0
    assert assert_same_check(ours, theirs, "-r", mode) == 0
    assert Image(ours).incompat == Image(theirs).incompat == 0
    assert filecmp.cmp(ours, theirs, shallow=False)


def test_corrupt_bit_kept_without_repair(tmp_path):
    img = base_image(tmp_path)
    Image(img).set_incompat(2)
    ours, theirs = both(tmp_path, img, "x")
    assert assert_same_check(ours, theirs) == 0
    assert Image(ours).incompat == 2


# ---- clean images of every shape: counts (fragmented, compressed...) ----

FRAG_WRITES = ("write -P 1 0 64k", "write -P 2 1M 64k", "write -P 3 64k 64k",
               "write -P 4 3M 128k", "write -P 5 128k 64k", "write -z 2M 64k",
               "write -P 6 2M 64k", "write -z 2M 64k", "discard 3M 64k")


@pytest.mark.parametrize("opts,writes", [
    ("", FRAG_WRITES),
    ("cluster_size=4k", FRAG_WRITES),
    ("refcount_bits=1", FRAG_WRITES),
    ("compat=0.10", FRAG_WRITES[:5]),
    ("lazy_refcounts=on", FRAG_WRITES),
    ("preallocation=metadata", ()),
    ("preallocation=falloc", FRAG_WRITES[:2]),
])
def test_clean_counts_match(tmp_path, opts, writes):
    img = make_image(str(tmp_path / "c.qcow2"), size="8M", opts=opts,
                     writes=writes)
    assert assert_same_check(img, img) == 0


def test_compressed_counts_and_damage(tmp_path):
    src = make_image(str(tmp_path / "src.qcow2"), size="8M",
                     writes=FRAG_WRITES)
    img = str(tmp_path / "comp.qcow2")
    qemu_img("convert", "-c", "-O", "qcow2", src, img)
    qemu_io(img, "write -P 9 64k 4k")
    assert assert_same_check(img, img) == 0
    # COPIED must never be set on a compressed entry.
    im = Image(img)
    o = im.l2_entry_offset(0)
    assert im.u64(o) & (1 << 62)
    im.put_u64(o, im.u64(o) | OFLAG_COPIED)
    ours, theirs = both(tmp_path, img, "c")
    assert assert_same_check(ours, theirs) == 2


def test_internal_snapshots(tmp_path):
    """Snapshot L1/L2 tables are counted; shared clusters have refcount
    2 and no COPIED flag.  (strata refuses to write such images, so only
    the read-only check is compared.)"""
    img = make_image(str(tmp_path / "s.qcow2"), size="8M",
                     writes=FRAG_WRITES[:3])
    qemu_img("snapshot", "-c", "s1", img)
    qemu_io(img, "write -P 7 0 128k")
    qemu_img("snapshot", "-c", "second", img)
    qemu_io(img, "write -P 8 0 64k")
    assert assert_same_check(img, img) == 0
    # A leak and a wrong COPIED flag on a shared cluster.
    leak_appended(Image(img))
    o = Image(img).l2_entry_offset(1 << 20)
    Image(img).put_u64(o, Image(img).u64(o) | OFLAG_COPIED)
    assert assert_same_check(img, img) == 2


def test_persistent_bitmaps_counted(tmp_path):
    img = make_image(str(tmp_path / "b.qcow2"), size="8M",
                     writes=FRAG_WRITES[:3])
    qemu_img("bitmap", "--add", img, "bm0")
    qemu_img("bitmap", "--add", "-g", "4k", img, "bm1")
    qemu_io(img, "write -P 8 0 64k")
    assert assert_same_check(img, img) == 0


def test_open_repairs_dirty_image(tmp_path):
    """A read-write open of a dirty image repairs it (as QEMU does)."""
    from qcow2_util import strata_io
    img = make_image(str(tmp_path / "d.qcow2"), size="8M",
                     opts="lazy_refcounts=on", writes=("write -P 0x11 0 64k",))
    qemu_io_then_crash(img, "write -P 0x22 1M 128k")
    assert qemu_img("check", img, check=False).returncode == 2
    r = strata_io(img, "read 0 65536 17")
    assert "Rebuilding refcount structure" in r.stderr
    assert Image(img).incompat & 1 == 0
    assert qemu_img("check", img, check=False).returncode == 0
    qemu_io(img, "read -P 0x11 0 64k", "read -P 0x22 1M 128k")


def test_repair_that_cannot_grow_the_file_like_qemu(tmp_path):
    """A refcount block listed a TiB past the end: the repair grows the
    file to reach it.  Where the file may not grow (a size limit here, a
    full disk in life), both tools report the failed resize alike, with
    its errno, and go on to rebuild the refcounts the same way."""
    import resource
    import signal
    import subprocess
    from conftest import binary

    img = base_image(tmp_path)
    im = Image(img)
    im.put_u64(im.rt_off + 8, 1 << 40)
    ours, theirs = both(tmp_path, img, "r")

    def limited():
        resource.setrlimit(resource.RLIMIT_FSIZE, (64 << 20, 64 << 20))
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)

    def repair(tool, path):
        p = subprocess.run([tool, "check", "-r", "all", path],
                           preexec_fn=limited, capture_output=True,
                           text=True)
        return p.returncode, p.stdout, normalize_stderr(p.stderr)

    mine = repair(binary("strata-img"), ours)
    qemu = repair("qemu-img", theirs)
    assert mine == qemu
    assert "ERROR could not resize image: File too large" in mine[2]
    assert filecmp.cmp(ours, theirs, shallow=False)
    assert_same_check(ours, theirs)
