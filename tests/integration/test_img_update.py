# SPDX-License-Identifier: BSD-3-Clause
"""strata-img update: image parameters in a qcow2 header extension of
strata's own.  qemu-img is the judge of the images (check clean, data
unchanged, its own rewrites keep the extension); qemu-storage-daemon and
stratad hold images that update must refuse."""
import json
import os
import random
import shutil
import signal
import struct
import subprocess
import time

import pytest

from conftest import binary
from img_util import Qsd, qimg, qio, simg
from qmp_util import Daemon

MiB = 1 << 20
STRA = 0x53545241

ALL = ["copy-on-read=on", "prefetch=on-open", "prefetch-rate=64M",
       "prefetch-delay=5", "l2-cache-size=4M"]
ALL_TYPED = {"copy-on-read": True, "prefetch": "on-open",
             "prefetch-rate": 64 * MiB, "prefetch-delay": 5,
             "l2-cache-size": 4 * MiB}


def make(path, size="64M", backing=None):
    args = ["create", "-q", "-f", "qcow2"]
    if backing:
        args += ["-b", str(backing), "-F", "qcow2"]
    qimg(*args, str(path), size)
    return path


def params(path, *extra):
    """The typed parameters strata-img info shows (None: none)."""
    info = json.loads(simg("info", "--output=json", *extra, path).stdout)
    return info["format-specific"]["data"].get("strata-parameters")


def extension(path):
    """The raw payload of strata's header extension, or None."""
    with open(path, "rb") as f:
        head = f.read(65536)
    hlen = struct.unpack(">I", head[100:104])[0]
    off = hlen
    while off + 8 <= len(head):
        typ, n = struct.unpack(">II", head[off:off + 8])
        if typ == 0:
            return None
        if typ == STRA:
            return head[off + 8:off + 8 + n]
        off += 8 + ((n + 7) & ~7)
    return None


def put_extension(path, payload):
    """Adds strata's extension by hand (as a newer strata would write it),
    before the end marker; the image must have no backing file."""
    with open(path, "r+b") as f:
        head = bytearray(f.read(65536))
        assert struct.unpack(">Q", head[8:16])[0] == 0
        off = struct.unpack(">I", head[100:104])[0]
        while True:
            typ, n = struct.unpack(">II", head[off:off + 8])
            if typ == 0:
                break
            off += 8 + ((n + 7) & ~7)
        ext = struct.pack(">II", STRA, len(payload)) + payload
        ext += b"\0" * ((-len(payload)) % 8)
        head[off:off + len(ext) + 8] = ext + b"\0" * 8
        f.seek(0)
        f.write(head)


def check_clean(path):
    proc = qimg("check", path, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_set_show_and_info(tmp_path):
    img = make(tmp_path / "a.qcow2")
    qio(img, "write -P 0x5c 1M 2M")
    out = simg("update", img, *ALL).stdout
    lines = out.splitlines()
    assert lines[0].split() == ["IMAGE", "PARAMETER", "OLD", "NEW", "RESULT"]
    assert lines[1].split() == [str(img), "copy-on-read", "-", "on",
                                "updated"]
    assert lines[3].split() == [str(img), "prefetch-rate", "-",
                                str(64 * MiB), "updated"]
    assert params(img) == ALL_TYPED
    # qemu-img reads the image as before and finds it clean.
    check_clean(img)
    qio(img, "read -P 0x5c 1M 2M")
    # Human info: under the format-specific block.
    human = simg("info", img).stdout
    assert "    strata parameters:\n        copy on read: true\n" in human
    # Show mode, as JSON.
    shown = json.loads(simg("update", "--output=json", img).stdout)
    assert shown == [{"filename": str(img), "result": "ok",
                      "parameters": ALL_TYPED}]
    # Same values again: nothing written.
    before = extension(img)
    out = json.loads(simg("update", "--output=json", img,
                          "copy-on-read=on").stdout)
    assert out[0]["result"] == "unchanged"
    assert extension(img) == before
    # An empty value removes a key; removing all removes the extension.
    simg("update", img, "copy-on-read=", "prefetch=", "prefetch-rate=",
         "prefetch-delay=")
    assert params(img) == {"l2-cache-size": 4 * MiB}
    simg("update", img, "l2-cache-size=")
    assert params(img) is None and extension(img) is None
    check_clean(img)


@pytest.mark.parametrize("bad,msg", [
    ("copy-on-read=maybe", "Parameter 'copy-on-read' expects 'on' or 'off', "
     "not 'maybe'"),
    ("prefetch=always", "Parameter 'prefetch' expects 'off' or 'on-open', "
     "not 'always'"),
    ("prefetch-rate=fast", "Parameter 'prefetch-rate' expects 'adaptive' or "
     "bytes per second"),
    ("prefetch-delay=-1", "Parameter 'prefetch-delay' expects a number of "
     "seconds"),
    ("l2-cache-size=99999999P", "Parameter 'l2-cache-size' expects a size"),
    ("copy-on-reed=on", "Unknown image parameter 'copy-on-reed'"),
])
def test_bad_assignment_touches_nothing(tmp_path, bad, msg):
    a, b = make(tmp_path / "a.qcow2"), make(tmp_path / "b.qcow2")
    simg("update", a, "prefetch=on-open")
    heads = [open(p, "rb").read(65536) for p in (a, b)]
    proc = simg("update", a, b, "copy-on-read=on", bad, check=False)
    assert proc.returncode == 1
    assert msg in proc.stderr, proc.stderr
    assert proc.stdout == ""
    assert [open(p, "rb").read(65536) for p in (a, b)] == heads


def test_usage_errors(tmp_path):
    img = make(tmp_path / "a.qcow2")
    proc = simg("update", check=False)
    assert proc.returncode == 1 and "Expecting one or more image" in \
        proc.stderr
    proc = simg("update", "-U", img, "prefetch=off", check=False)
    assert proc.returncode == 1 and "only shows parameters" in proc.stderr
    proc = simg("update", tmp_path / "missing.qcow2", "prefetch=off",
                check=False)
    assert proc.returncode == 1
    assert "Could not open" in proc.stderr and "missing.qcow2" in proc.stderr
    raw = tmp_path / "r.raw"
    raw.write_bytes(b"\0" * MiB)
    proc = simg("update", "-f", "raw", raw, "prefetch=off", check=False)
    assert proc.returncode == 1
    assert "Image format 'raw' does not store image parameters" in \
        proc.stderr


def test_qemu_keeps_the_extension(tmp_path):
    """QEMU keeps header extensions it does not know across its own
    rewrites of the header: amend, resize, rebase, commit, snapshot.
    convert writes a new image and drops them."""
    base = make(tmp_path / "base.qcow2")
    qio(base, "write -P 0x11 0 4M")
    top = make(tmp_path / "top.qcow2", backing=base)
    qio(top, "write -P 0x22 1M 1M")
    simg("update", top, *ALL)
    simg("update", base, "prefetch=on-open")
    steps = [
        ("amend", ["amend", "-o", "lazy_refcounts=on", top]),
        ("resize", ["resize", top, "128M"]),
        ("rebase", ["rebase", "-u", "-b", str(base), "-F", "qcow2", top]),
        ("snapshot", ["snapshot", "-c", "snap1", top]),
    ]
    for name, args in steps:
        qimg(*args)
        assert params(top) == ALL_TYPED, name
        check_clean(top)
    qimg("commit", top)      # rewrites base's header too? it keeps it
    assert params(top) == ALL_TYPED
    assert params(base) == {"prefetch": "on-open"}
    check_clean(base)
    qio(base, "read -P 0x11 0 1M", "read -P 0x22 1M 1M", "read -P 0x11 2M 2M")
    out = tmp_path / "out.qcow2"
    qimg("convert", "-O", "qcow2", top, out)
    assert params(out) is None          # convert: a new image, no params
    qio(out, "read -P 0x22 1M 1M")


def test_unknown_keys_are_kept(tmp_path):
    """A newer strata's keys survive an update by this one; a newer
    version of the whole payload is refused, not rewritten."""
    img = make(tmp_path / "a.qcow2")
    put_extension(img, b"\0\0\0\x01zz-future=7\0prefetch=off\0")
    assert params(img) == {"prefetch": "off", "zz-future": "7"}
    check_clean(img)
    simg("update", img, "copy-on-read=on")
    assert extension(img) == (b"\0\0\0\x01copy-on-read=on\0prefetch=off\0"
                              b"zz-future=7\0")
    check_clean(img)

    v2 = make(tmp_path / "v2.qcow2")
    put_extension(v2, b"\0\0\0\x02something-new\0")
    proc = simg("update", v2, "copy-on-read=on", check=False)
    assert proc.returncode == 1
    assert "strata parameters: version 2 is not supported" in proc.stderr
    assert extension(v2) == b"\0\0\0\x02something-new\0"
    # info still works; it just shows no parameters.
    assert params(v2) is None


def start_stratad(tmp_path, img, name):
    return Daemon(binary("stratad"), tmp_path, [
        "--blockdev", json.dumps({"driver": "qcow2", "node-name": "n",
                                  "file": {"driver": "file",
                                           "filename": str(img)}})],
        name=name)


def test_refuses_images_in_use(tmp_path):
    a, b = make(tmp_path / "a.qcow2"), make(tmp_path / "b.qcow2")
    qsd = Qsd(str(tmp_path), str(a))
    sd = start_stratad(tmp_path, b, "sd")
    try:
        for img in (a, b):
            proc = simg("update", img, "prefetch=on-open", check=False)
            assert proc.returncode == 1
            assert (f"'{img}' is in use by another process (Failed to get "
                    f"\"write\" lock); not updated") in proc.stderr, \
                proc.stderr
            assert proc.stdout.splitlines()[1].split()[-1] == "in-use"
            # Inspection with -U works while it is held.
            assert simg("update", "-U", img).returncode == 0
    finally:
        qsd.stop()
        sd.stop()
    simg("update", a, b, "prefetch=on-open")
    assert params(a) == params(b) == {"prefetch": "on-open"}
    check_clean(a)
    check_clean(b)


def test_bulk_update_with_one_image_locked(tmp_path):
    first = make(tmp_path / "vm000.qcow2")
    imgs = [first]
    for i in range(1, 200):
        p = tmp_path / f"vm{i:03d}.qcow2"
        shutil.copyfile(first, p)
        imgs.append(p)
    locked = imgs[137]
    qsd = Qsd(str(tmp_path), str(locked))
    try:
        proc = simg("update", "--output=json", *imgs, "prefetch=on-open",
                    "prefetch-rate=adaptive", check=False)
    finally:
        qsd.stop()
    assert proc.returncode == 1
    rows = json.loads(proc.stdout)
    assert len(rows) == 200
    results = {r["filename"]: r["result"] for r in rows}
    assert results.pop(str(locked)) == "in-use"
    assert set(results.values()) == {"updated"}
    bad = [r for r in rows if r["filename"] == str(locked)][0]
    assert "is in use by another process" in bad["error"]
    assert params(imgs[0]) == params(imgs[199]) == {
        "prefetch": "on-open", "prefetch-rate": "adaptive"}
    assert params(locked) is None
    for p in imgs[::40]:
        check_clean(p)


def test_crash_at_any_point(tmp_path):
    """SIGKILL strata-img update at many points: every image opens, is
    clean, and holds the old set or the new one, whole."""
    imgs = []
    for i in range(8):
        p = make(tmp_path / f"c{i}.qcow2")
        qio(p, f"write -P {0x40 + i} 0 1M")
        imgs.append(p)
    old = ["copy-on-read=off", "prefetch=off", "prefetch-delay=1"]
    new = ["copy-on-read=on", "prefetch=on-open", "prefetch-delay=30",
           "l2-cache-size=8M"]
    simg("update", *imgs, *old)
    sets = [params(imgs[0])]
    simg("update", imgs[0], *new)
    sets.append(params(imgs[0]))
    simg("update", imgs[0], *old, "l2-cache-size=")
    assert params(imgs[0]) == sets[0]
    rng = random.Random(1234)
    cmd = [binary("strata-img"), "update", *map(str, imgs)]
    # How long a whole run takes here: the kills spread over it.
    t0 = time.monotonic()
    subprocess.run(cmd + old + ["l2-cache-size="], check=True,
                   capture_output=True)
    full = time.monotonic() - t0
    killed = mixed = 0
    for it in range(60):
        target = new if it % 2 == 0 else old + ["l2-cache-size="]
        proc = subprocess.Popen(cmd + target, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0, full))
        proc.send_signal(signal.SIGKILL)
        killed += proc.wait() == -signal.SIGKILL
        seen = [params(p) for p in imgs]
        for p, s in zip(imgs, seen):
            assert s in sets, (it, p, s)
        # Cut between two images: some have the new set, some the old.
        mixed += len({json.dumps(s, sort_keys=True) for s in seen}) > 1
        # The next run starts from one set everywhere, the one it does
        # not write.
        subprocess.run(cmd + (new if it % 2 == 0
                              else old + ["l2-cache-size="]),
                       check=True, capture_output=True)
    assert killed > 20 and mixed > 3, (killed, mixed)
    for i, p in enumerate(imgs):
        check_clean(p)
        qio(p, f"read -P {0x40 + i} 0 1M")
