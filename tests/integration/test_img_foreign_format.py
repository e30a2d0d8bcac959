# SPDX-License-Identifier: BSD-3-Clause
"""Formats QEMU probes and strata does not read are refused by name.

Taking a VMDK or VHDX for raw would convert its container's bytes as the
disk's content, or "resize" it by moving its footer away.  Each image
here is a few bytes of the format's signature on an otherwise empty
file; qemu-img, the reference, names the same format for each (it then
fails to open most of these stubs, which is fine: what matters is that
it does not call them raw)."""
import json
import struct

import pytest

from img_util import qimg, simg

MiB = 1 << 20


def _bochs():
    head = bytearray(512)
    head[0:22] = b"Bochs Virtual HD Image"
    head[32:39] = b"Redolog"
    head[48:55] = b"Growing"
    head[64:68] = struct.pack("<I", 0x00020000)
    return bytes(head)


CLOOP = (b"#!/bin/sh\n#V2.0 Format\n"
         b"modprobe cloop file=$0 && mount -r -t iso9660 /dev/cloop $1\n")

# (format, file name, first bytes)
SAMPLES = [
    ("vmdk", "disk.vmdk", b"KDMV" + struct.pack("<I", 1)),
    ("vmdk", "desc.vmdk", b"# Disk DescriptorFile\nversion=1\n"
                          b"CID=fffffffe\ncreateType=\"monolithicFlat\"\n"),
    ("vmdk", "old.vmdk", b"COWD" + struct.pack("<I", 1)),
    ("vhdx", "disk.vhdx", b"vhdxfile"),
    ("vpc", "disk.vhd", b"conectix"),
    ("vdi", "disk.vdi", b"<<< Oracle VM VirtualBox Disk Image >>>\n".ljust(64, b"\0")
     + struct.pack("<II", 0xbeda107f, 0x00010001)),
    ("qed", "disk.qed", b"QED\0" + struct.pack("<I", 65536)),
    ("parallels", "disk.hdd", b"WithoutFreeSpace" + struct.pack("<I", 2)),
    ("parallels", "ext.hdd", b"WithouFreSpacExt" + struct.pack("<I", 2)),
    ("cloop", "disk.cloop", CLOOP),
    ("dmg", "disk.dmg", b""),
    ("bochs", "disk.bochs", _bochs()),
    ("luks", "disk.luks", b"LUKS\xba\xbe\x00\x01"),
    ("qcow", "disk.qcow", b"QFI\xfb" + struct.pack(">I", 1)),
]


def make(tmp_path, name, head, size=MiB):
    path = tmp_path / name
    with open(path, "wb") as f:
        f.write(head)
        f.truncate(size)
    return path


@pytest.mark.parametrize("fmt,name,head", SAMPLES,
                         ids=[s[1] for s in SAMPLES])
def test_probe_refuses_by_name(tmp_path, fmt, name, head):
    path = make(tmp_path, name, head)
    before = path.read_bytes()
    want = (f"strata-img: Could not open '{path}': image format '{fmt}' "
            "is not supported")

    info = simg("info", path, check=False)
    assert info.returncode == 1
    assert info.stdout == ""
    assert want in info.stderr

    out = tmp_path / "out.qcow2"
    conv = simg("convert", "-O", "qcow2", path, out, check=False)
    assert conv.returncode == 1
    assert want in conv.stderr
    assert not out.exists(), "convert left an output file behind"

    rs = simg("resize", path, "2M", check=False)
    assert rs.returncode == 1
    assert want in rs.stderr
    assert path.read_bytes() == before, "a refused image was modified"

    # The reference probes the same format (and never says raw).
    q = qimg("info", "--output=json", path, check=False)
    if q.returncode == 0:
        assert json.loads(q.stdout)["format"] == fmt
    else:
        assert "raw" not in q.stderr


def test_explicit_raw_still_opens(tmp_path):
    """-f raw is the user's decision, as with qemu-img."""
    path = make(tmp_path, "disk.vmdk", b"KDMV" + struct.pack("<I", 1))
    info = json.loads(simg("info", "-f", "raw", "--output=json", path).stdout)
    assert info["format"] == "raw"
    assert info["virtual-size"] == MiB


def test_text_that_is_not_a_descriptor_is_raw(tmp_path):
    """A comment-only text file, or one whose first line is not a VMDK
    version, is raw for qemu-img too."""
    path = make(tmp_path, "notes.img", b"# just notes\nhello=1\n")
    assert json.loads(simg("info", "--output=json", path).stdout)["format"] \
        == "raw"
    assert json.loads(qimg("info", "--output=json", path).stdout)["format"] \
        == "raw"
