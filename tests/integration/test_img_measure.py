# SPDX-License-Identifier: BSD-3-Clause
"""strata-img measure against qemu-img measure: the same source and
options give byte-identical stdout and stderr and the same exit code,
for a matrix of sources (qcow2 and raw, sparse and full, zero clusters,
backing chains, bitmaps, odd sizes) and targets (qcow2 with each option
that changes the size, raw), in human and json output; --size alone;
and every error qemu-img words on its command line."""
import pytest

from img_util import MiB, qimg, qio, same_stderr, simg


def _qcow2(path, size, *opts):
    qimg("create", "-q", "-f", "qcow2", *opts, path, size)


def _raw(path, size):
    qimg("create", "-q", "-f", "raw", path, size)


def _empty(d):
    p = d / "empty.qcow2"
    _qcow2(p, 10 * MiB)
    return p


def _partial(d):
    p = d / "partial.qcow2"
    _qcow2(p, 10 * MiB)
    qio(p, "write -P 0x11 0 100k", "write -P 0x22 3000k 1k",
        "write -P 0x33 9m 64k", "write -P 0x44 5000000 4096")
    return p


def _full(d):
    p = d / "full.qcow2"
    _qcow2(p, 4 * MiB)
    qio(p, "write -P 0x55 0 4m")
    return p


def _zeroes(d):
    p = d / "zeroes.qcow2"
    _qcow2(p, 8 * MiB)
    qio(p, "write -P 0x66 0 2m", "write -z 512k 1m", "write -z 4m 2m",
        "write -z -u 1m 64k")
    return p


def _chain(d):
    base = d / "chain-base.qcow2"
    _qcow2(base, 6 * MiB)
    qio(base, "write -P 0x77 0 1m", "write -P 0x78 4m 512k")
    top = d / "chain-top.qcow2"
    _qcow2(top, 6 * MiB, "-b", base, "-F", "qcow2")
    qio(top, "write -P 0x79 512k 1m", "write -z 4m 64k")
    return top


def _short_backing(d):
    base = d / "short-base.qcow2"
    _qcow2(base, MiB)
    qio(base, "write -P 0x7a 0 1m")
    top = d / "short-top.qcow2"
    _qcow2(top, 5 * MiB, "-b", base, "-F", "qcow2")
    qio(top, "write -P 0x7b 3m 4k")
    return top


def _raw_backing(d):
    base = d / "rawbase.raw"
    _raw(base, 2 * MiB)
    qio(base, "write -P 0x7c 1m 100k", fmt="raw")
    top = d / "rawbase-top.qcow2"
    _qcow2(top, 2 * MiB, "-b", base, "-F", "raw")
    return top


def _small_clusters(d):
    p = d / "small.qcow2"
    _qcow2(p, 3 * MiB, "-o", "cluster_size=512")
    qio(p, "write -P 0x12 1536 512", "write -P 0x13 70000 3000",
        "write -P 0x14 2m 300k")
    return p


def _odd_size(d):
    p = d / "odd.qcow2"
    _qcow2(p, 1234567)
    qio(p, "write -P 0x15 1200000 34567")
    return p


def _v2(d):
    p = d / "v2.qcow2"
    _qcow2(p, 4 * MiB, "-o", "compat=0.10")
    qio(p, "write -P 0x16 1m 64k")
    return p


def _bitmaps(d):
    p = d / "bitmaps.qcow2"
    _qcow2(p, 64 * MiB)
    qio(p, "write -P 0x17 0 64k")
    qimg("bitmap", "--add", "-g", "512", p, "b1")
    qimg("bitmap", "--add", "-g", "2M", p, "a-much-longer-bitmap-name")
    return p


def _prealloc(mode):
    def make(d):
        p = d / f"prealloc-{mode}.qcow2"
        _qcow2(p, 4 * MiB, "-o", f"preallocation={mode}")
        qio(p, "write -P 0x1a 1m 64k", "write -P 0x1b 3m 4k")
        return p
    return make


def _snapshot(d):
    p = d / "snap.qcow2"
    _qcow2(p, 8 * MiB)
    qio(p, "write -P 0x1c 0 1m")
    qimg("snapshot", "-c", "s1", p)
    qio(p, "write -P 0x1d 2m 3m", "write -z 0 64k")
    return p


def _extended_l2(d):
    p = d / "subclusters.qcow2"
    _qcow2(p, 6 * MiB, "-o", "extended_l2=on,cluster_size=128k")
    qio(p, "write -P 0x1e 4k 4k", "write -P 0x1f 1m 200k",
        "write -z 2m 128k")
    return p


def _raw_sparse(d):
    p = d / "sparse.raw"
    _raw(p, 5 * MiB)
    qio(p, "write -P 0x18 4096 4096", "write -P 0x19 3m 700k", fmt="raw")
    return p


def _raw_full(d):
    p = d / "full.raw"
    with open(p, "wb") as f:
        f.write(bytes(range(256)) * (3 * MiB // 256))
    return p


def _raw_odd(d):
    p = d / "odd.raw"
    with open(p, "wb") as f:
        f.write(b"\x5a" * 12345)
    return p


SOURCES = {
    "empty": _empty, "partial": _partial, "full": _full, "zeroes": _zeroes,
    "chain": _chain, "short-backing": _short_backing,
    "raw-backing": _raw_backing, "small-clusters": _small_clusters,
    "odd-size": _odd_size, "v2": _v2, "bitmaps": _bitmaps,
    "prealloc-metadata": _prealloc("metadata"),
    "prealloc-falloc": _prealloc("falloc"),
    "prealloc-full": _prealloc("full"),
    "snapshot": _snapshot,
    "extended-l2": _extended_l2,
    "raw-sparse": _raw_sparse, "raw-full": _raw_full, "raw-odd": _raw_odd,
}

TARGETS = [
    [],
    ["-O", "raw"],
    ["-O", "qcow2"],
    ["-O", "qcow2", "-o", "cluster_size=512"],
    ["-O", "qcow2", "-o", "cluster_size=64k"],
    ["-O", "qcow2", "-o", "cluster_size=2M"],
    ["-O", "qcow2", "-o", "refcount_bits=1"],
    ["-O", "qcow2", "-o", "refcount_bits=64"],
    ["-O", "qcow2", "-o", "preallocation=metadata"],
    ["-O", "qcow2", "-o", "preallocation=full"],
    ["-O", "qcow2", "-o", "preallocation=falloc,cluster_size=4k"],
    ["-O", "qcow2", "-o", "compat=0.10"],
    ["-O", "qcow2", "-o", "extended_l2=on,cluster_size=128k"],
    ["-O", "qcow2", "-o", "backing_file=/nonexistent.qcow2"],
    ["-O", "qcow2", "-o", "data_file=/nonexistent.data,lazy_refcounts=on"],
]


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    d = tmp_path_factory.mktemp("measure-src")
    return {name: make(d) for name, make in SOURCES.items()}


def both(*args):
    return (simg("measure", *args, check=False),
            qimg("measure", *args, check=False))


def assert_same(ours, theirs):
    assert ours.returncode == theirs.returncode, (ours.stderr, theirs.stderr)
    assert ours.stdout == theirs.stdout
    assert same_stderr(ours.stderr, theirs.stderr), (ours.stderr,
                                                     theirs.stderr)


@pytest.mark.parametrize("target", TARGETS, ids=lambda t: " ".join(t) or
                         "default")
@pytest.mark.parametrize("source", sorted(SOURCES))
def test_measure_source_matches_qemu_img(sources, source, target):
    path = sources[source]
    for output in ("human", "json"):
        ours, theirs = both(f"--output={output}", *target, path)
        assert theirs.returncode == 0, theirs.stderr
        assert_same(ours, theirs)


@pytest.mark.parametrize("extra", [["-f", "qcow2"], ["-f", "raw"], ["-U"],
                                   ["--force-share"]])
def test_measure_source_options(sources, extra):
    for src in ("partial", "chain"):
        ours, theirs = both(*extra, "-O", "qcow2", sources[src])
        assert theirs.returncode == 0
        assert_same(ours, theirs)


@pytest.mark.parametrize("param", ["s1", "1", "snapshot.name=s1",
                                   "snapshot.id=1",
                                   "snapshot.id=1,snapshot.name=s1", "s2",
                                   "snapshot.name=s2"])
def test_measure_internal_snapshot(sources, param):
    """iotest 178: -l measures the source as its snapshot holds it."""
    for target in ([], ["-O", "qcow2"], ["--output=json", "-O", "qcow2"]):
        assert_same(*both(*target, "-l", param, sources["snapshot"]))


def test_measure_image_opts(sources):
    spec = f"driver=qcow2,file.driver=file,file.filename={sources['chain']}"
    for output in ("human", "json"):
        ours, theirs = both(f"--output={output}", "--image-opts", "-O",
                            "qcow2", spec)
        assert theirs.returncode == 0, theirs.stderr
        assert_same(ours, theirs)
    assert_same(*both("--image-opts", "-f", "qcow2", spec))
    # Without a driver the format is probed, as for a file name.
    for src in ("chain", "raw-sparse"):
        assert_same(*both("-O", "qcow2", "--image-opts",
                          f"file.filename={sources[src]}"))
    assert_same(*both("--image-opts", f"file.filename={spec}.nothere"))
    assert_same(*both("--image-opts", "foo=bar"))


@pytest.mark.parametrize("size", ["0", "1", "512", "1000", "65537", "10M",
                                  "1G", "1.5G", "2G", "64G", "256G", "1T",
                                  "2T", "0x100000", "64T", "256T", "2P",
                                  "7E"])
@pytest.mark.parametrize("target", [
    [], ["-O", "raw"], ["-O", "qcow2"],
    ["-O", "qcow2", "-o", "cluster_size=512"],
    ["-O", "qcow2", "-o", "cluster_size=2M,refcount_bits=1"],
    ["-O", "qcow2", "-o", "preallocation=full,refcount_bits=64"],
    ["-O", "qcow2", "-o", "extended_l2=on"],
    ["-O", "qcow2", "-o", "size=5G"],
], ids=lambda t: " ".join(t) or "default")
def test_measure_size_matches_qemu_img(size, target):
    for output in ("human", "json"):
        assert_same(*both(f"--output={output}", *target, "--size", size))


@pytest.mark.parametrize("args", [
    [],
    ["--object", "secret,id=sec0,data=MTIzNDU2,format=base64"],
    ["-l", "snapshot.foo=bar"],
    ["--output", "foo"],
    ["-O", "foo", "{img}"],
    ["--size", "1G", "{img}"],
    ["{img}", "{img}"],
    ["-f", "qcow2"],
    ["-l", "snap"],
    ["--image-opts"],
    ["--size", "99999999999T"],
    ["--size", "9E"],
    ["--size", "8E"],
    ["--size", "-1"],
    ["--size", "abc"],
    ["--size", ""],
    ["--output=xml", "--size", "1"],
    ["--size", "1G", "-O", "foo"],
    ["--size", "1G", "-O", "file"],
    ["--size", "1G", "-O", "vmdk"],
    ["--size", "1G", "-O", "copy-on-read"],
    ["--size", "1G", "-O", "qcow2", "-o", "foo=1"],
    ["--size", "1G", "-O", "qcow2", "-o", "help"],
    ["--size", "1G", "-O", "qcow2", "-o", ","],
    ["--size", "1G", "-O", "qcow2", "-o", ""],
    ["--size", "1G", "-O", "qcow2", "-o", "a=b,"],
    ["--size", "1G", "-O", "qcow2", "-o", "cluster_size=3"],
    ["--size", "1G", "-O", "qcow2", "-o", "cluster_size=4M"],
    ["--size", "1G", "-O", "qcow2", "-o", "cluster_size=abc"],
    ["--size", "1G", "-O", "qcow2", "-o", "cluster_size="],
    ["--size", "1G", "-O", "qcow2", "-o", "cluster_size=16E"],
    ["--size", "1G", "-O", "qcow2", "-o", "cluster_size=99999999999999999999"],
    ["--size", "1G", "-O", "qcow2", "-o", "cluster_size= 4k"],
    ["--size", "1G", "-O", "qcow2", "-o", "cluster_size=0x1000"],
    ["--size", "1G", "-O", "qcow2", "-o", "cluster_size=1.5k"],
    ["--size", "1G", "-O", "qcow2", "-o", "refcount_bits=3"],
    ["--size", "1G", "-O", "qcow2", "-o", "refcount_bits=128"],
    ["--size", "1G", "-O", "qcow2", "-o", "refcount_bits=0"],
    ["--size", "1G", "-O", "qcow2", "-o", "refcount_bits=x"],
    ["--size", "1G", "-O", "qcow2", "-o", "refcount_bits=0x10"],
    ["--size", "1G", "-O", "qcow2", "-o", "refcount_bits=010"],
    ["--size", "1G", "-O", "qcow2", "-o", "refcount_bits= 16"],
    ["--size", "1G", "-O", "qcow2", "-o", "refcount_bits=-1"],
    ["--size", "1G", "-O", "qcow2", "-o", "refcount_bits=99999999999999999999"],
    ["--size", "1G", "-O", "qcow2", "-o", "refcount_bits=16abc"],
    ["--size", "1G", "-O", "qcow2", "-o", "compat=0.10,refcount_bits=1"],
    ["--size", "1G", "-O", "qcow2", "-o", "compat=v3"],
    ["--size", "1G", "-O", "qcow2", "-o", "preallocation=foo"],
    ["--size", "1G", "-O", "qcow2", "-o", "preallocation="],
    ["--size", "1G", "-O", "qcow2", "-o", "extended_l2=on,cluster_size=4k"],
    ["--size", "1G", "-O", "qcow2", "-o", "extended_l2=maybe"],
    ["--size", "1G", "-O", "qcow2", "-o", "extended_l2"],
    ["--size", "1G", "-O", "qcow2", "-o", "nocow=x"],
    ["--size", "1G", "-O", "qcow2", "-o", "encrypt.format=luks"],
    ["--size", "1G", "-O", "raw", "-o", "cluster_size=64k"],
    ["--size", "1G", "-O", "raw", "-o", "preallocation=whatever"],
    ["--size", "8E", "-O", "qcow2"],
    ["--size", "9223372036854775807", "-O", "qcow2", "-o",
     "cluster_size=2M"],
    ["--size", "9223372036854775807"],
    ["--size", "2T", "-O", "qcow2", "-o", "cluster_size=512"],
    ["{img}.nothere"],
    ["-l", "snap", "{img}"],
    ["-l", "snapshot.id=1", "{img}"],
    ["-l", "snapshot.foo=1", "{img}"],
    ["-l", "snap", "{raw}"],
    ["--image-opts", "driver=qcow2,file.filename={img}.nothere"],
])
def test_measure_errors_match_qemu_img(sources, args):
    args = [a.format(img=sources["partial"], raw=sources["raw-sparse"])
            for a in args]
    assert_same(*both(*args))


@pytest.mark.parametrize("args", [["-x"], ["--bogus"], ["-O"], ["-h"],
                                  ["--help"]])
def test_measure_bad_option_gives_help(args):
    """Like qemu-img measure, an unknown option or a missing argument is
    named by getopt and answered with the help, exit 0."""
    ours, theirs = both(*args)
    assert ours.returncode == theirs.returncode == 0
    assert ours.stderr == theirs.stderr
    assert ours.stdout.startswith("strata-img version")


def test_measure_huge_bitmap_source(tmp_path):
    """iotest 190: a 2T image with 2M clusters and two bitmaps."""
    p = tmp_path / "huge.qcow2"
    _qcow2(p, "2T", "-o", "cluster_size=2M")
    for args in (["-O", "raw"], ["-O", "qcow2", "-o", "cluster_size=64k"],
                 ["-O", "qcow2", "-o", "cluster_size=2M"]):
        assert_same(*both(*args, "-f", "qcow2", p))
    qimg("bitmap", "--add", "--granularity", "512", "-f", "qcow2", p, "b1")
    qimg("bitmap", "--add", "-g", "2M", "-f", "qcow2", p, "b2")
    for args in (["-O", "raw"], ["-O", "qcow2", "-o", "compat=0.10"],
                 ["-O", "qcow2", "-o", "cluster_size=64k"],
                 ["--output=json", "-O", "qcow2", "-o", "cluster_size=2M"]):
        assert_same(*both(*args, "-f", "qcow2", p))
    ours = simg("measure", "-O", "qcow2", "-o", "cluster_size=64k",
                "-f", "qcow2", p).stdout
    cluster, size = 64 * 1024, 2 << 40
    b1 = (size // 512 // 8 + cluster - 1) // cluster
    b2 = (size // (2 * MiB) // 8 + cluster - 1) // cluster
    expected = (b1 * cluster + (b1 * 8 + cluster - 1) // cluster * cluster +
                b2 * cluster + (b2 * 8 + cluster - 1) // cluster * cluster +
                cluster)
    assert f"bitmaps size: {expected}\n" in ours


def test_measure_convert_fits(sources, tmp_path):
    """The required size is enough for what convert writes (iotest 178's
    check): qemu-img convert's output is never larger."""
    import os
    for name in ("partial", "chain", "zeroes", "raw-sparse"):
        for opts in ("cluster_size=64k", "cluster_size=512,refcount_bits=1"):
            out = tmp_path / f"{name}.qcow2"
            qimg("convert", "-O", "qcow2", "-o", opts, sources[name], out)
            req = int(simg("measure", "-O", "qcow2", "-o", opts,
                           sources[name]).stdout.split("\n")[0].split()[-1])
            assert os.path.getsize(out) <= req


def _bitmap_dir(path):
    """(offset of the extension's fields, directory offset) of a qcow2 v3
    image's bitmaps extension."""
    import struct
    with open(path, "rb") as f:
        data = f.read(65536)
    hdr_len = struct.unpack(">I", data[100:104])[0]
    pos = hdr_len
    while pos + 8 <= len(data):
        typ, length = struct.unpack(">II", data[pos:pos + 8])
        if typ == 0x23852875:
            return pos + 8, struct.unpack(">Q", data[pos + 24:pos + 32])[0]
        if typ == 0:
            break
        pos += 8 + (length + 7) // 8 * 8
    raise AssertionError("no bitmaps extension")


@pytest.mark.parametrize("damage", [
    ("dir", 17, b"\x00"),              # granularity below 512 bytes
    ("dir", 17, b"\x40"),              # granularity past 2^31
    ("dir", 18, b"\xff\xff"),          # name running past the directory
    ("dir", 20, b"\xff\xff\xff\xff"),  # huge extra data
    ("ext", 0, b"\x00\x00\xff\xff"),   # more bitmaps than entries
    ("ext", 8, b"\x7f" + b"\xff" * 7),  # directory size absurd
    ("ext", 16, b"\x00\x00\x7f" + b"\x00" * 5),  # directory past the end
])
def test_measure_damaged_bitmap_directory(tmp_path, damage):
    """A damaged bitmap directory fails cleanly (exit 1, a message), as
    qemu-img fails to open such an image (its messages differ: strata
    reads the directory only here)."""
    p = tmp_path / "bm.qcow2"
    _qcow2(p, 16 * MiB)
    qimg("bitmap", "--add", p, "bm")
    ext, dir_offset = _bitmap_dir(p)
    where, off, data = damage
    with open(p, "r+b") as f:
        f.seek((dir_offset if where == "dir" else ext) + off)
        f.write(data)
    ours = simg("measure", "-O", "qcow2", p, check=False)
    theirs = qimg("measure", "-O", "qcow2", p, check=False)
    assert theirs.returncode == ours.returncode == 1
    assert ours.stdout == ""
    assert ours.stderr.startswith("strata-img: ")


def qimg_measure_retry(*args):
    """qemu-img sizes a LUKS header by really deriving a key, timing the
    derivation first; on a busy machine the timing can fail, which says
    nothing about the figures: ask again."""
    for _ in range(10):
        theirs = qimg("measure", *args, check=False)
        if "Unable to get accurate CPU usage" not in theirs.stderr:
            return theirs
    pytest.skip("qemu-img could not time its key derivation")


LUKS = "encrypt.format=luks,encrypt.iter-time=10"


@pytest.mark.parametrize("opts", [
    f"{LUKS},encrypt.key-secret=sec0",
    f"{LUKS},encrypt.key-secret=sec0,encrypt.cipher-alg=aes-128",
    f"{LUKS},encrypt.key-secret=sec0,encrypt.cipher-alg=aes-128,"
    "encrypt.cipher-mode=cbc",
    f"{LUKS},encrypt.key-secret=sec0,encrypt.cipher-alg=twofish-192,"
    "cluster_size=4k",
    f"{LUKS},encrypt.key-secret=sec0,cluster_size=2M",
    f"{LUKS},encrypt.key-secret=sec0,encrypt.cipher-alg=foo",
    f"{LUKS},encrypt.key-secret=sec0,encrypt.cipher-mode=foo",
    f"{LUKS},encrypt.key-secret=sec1",
    f"{LUKS}",
])
@pytest.mark.parametrize("source", ["--size", "partial", "raw-sparse"])
def test_measure_luks_matches_qemu_img(sources, opts, source):
    """iotest 178: a LUKS header adds its size, rounded to clusters, to
    both figures; its key secret must be defined with --object."""
    src = ["--size", "1G"] if source == "--size" else [sources[source]]
    args = ["--object", "secret,id=sec0,data=base", "-O", "qcow2", "-o", opts,
            *src]
    ours = simg("measure", *args, check=False)
    assert_same(ours, qimg_measure_retry(*args))


@pytest.mark.parametrize("obj", ["secret,id=sec0", "secret,data=x"])
def test_measure_bad_secret_object(obj):
    ours = simg("measure", "--object", obj, "--size", "1G", check=False)
    theirs = qimg("measure", "--object", obj, "--size", "1G", check=False)
    assert ours.returncode == theirs.returncode == 1
    assert ours.stdout == theirs.stdout == ""
    if obj == "secret,id=sec0":
        assert same_stderr(ours.stderr, theirs.stderr)
