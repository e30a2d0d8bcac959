# SPDX-License-Identifier: BSD-3-Clause
"""strata-img dd against qemu-img dd: the same operands on the same
input give the same output image (content, format, size, allocation)
and the same messages and exit codes."""
import json

import pytest

from img_util import MiB, qimg, qio, same_stderr, simg

INPUTS = {
    "qcow2": lambda p: (qimg("create", "-q", "-f", "qcow2", p, MiB),
                        qio(p, "write -P 0x11 0 300k", "write -P 0x22 700k 100k",
                            "write -z 900k 64k")),
    "raw": lambda p: (qimg("create", "-q", "-f", "raw", p, "1000k"),
                      qio(p, "write -P 0x33 512 70k", fmt="raw")),
}


def info(path, fmt):
    data = json.loads(qimg("info", "--output=json", "-f", fmt,
                           path).stdout)
    data.pop("actual-size", None)
    data.pop("filename", None)
    data.pop("dirty-flag", None)
    return data


@pytest.mark.parametrize("kind", sorted(INPUTS))
@pytest.mark.parametrize("operands", [
    [],
    ["-O", "qcow2"],
    ["bs=64k", "count=4"],
    ["bs=64k", "count=12", "skip=3", "-O", "qcow2"],   # count from the start
    ["bs=1.5k", "skip=7"],
    ["bs=4k", "skip=99999"],                          # empty output, warning
    ["bs=100000", "count=3"],                          # partial last block
    ["-f", "raw"],
])
def test_dd_output_matches_qemu_img(tmp_path, kind, operands):
    src = tmp_path / f"in.{kind}"
    INPUTS[kind](src)
    out = {}
    for tool, name in ((simg, "s.img"), (qimg, "q.img")):
        out[name] = tool("dd", *operands, f"if={src}",
                         f"of={tmp_path / name}", check=False)
    ours, theirs = out["s.img"], out["q.img"]
    assert ours.returncode == theirs.returncode == 0, (ours.stderr,
                                                       theirs.stderr)
    assert ours.stdout == theirs.stdout
    assert same_stderr(ours.stderr, theirs.stderr)
    fmt = "qcow2" if "qcow2" in operands else "raw"
    assert info(tmp_path / "s.img", fmt) == info(tmp_path / "q.img", fmt)
    cmp = qimg("compare", "-f", fmt, "-F", fmt, tmp_path / "s.img",
               tmp_path / "q.img", check=False)
    assert cmp.returncode == 0, cmp.stdout
    if fmt == "qcow2":
        assert qimg("check", tmp_path / "s.img").returncode == 0
        assert (qimg("map", "--output=json", tmp_path / "s.img").stdout ==
                qimg("map", "--output=json", tmp_path / "q.img").stdout)


@pytest.mark.parametrize("operands", [
    ["bs=0", "if={src}", "of={out}"],
    ["bs=3G", "if={src}", "of={out}"],
    ["bs=abc", "if={src}", "of={out}"],
    ["count=-1", "if={src}", "of={out}"],
    ["skip=99999999999T", "if={src}", "of={out}"],
    ["foo", "if={src}", "of={out}"],
    ["bar=1", "if={src}", "of={out}"],
    ["if={src}"],
    ["of={out}"],
    [],
    ["-O", "foo", "if={src}", "of={out}"],
    ["if={src}.nothere", "of={out}"],
    ["-f", "qcow2", "if={src}", "of={out}"],
    ["-x", "if={src}", "of={out}"],
])
def test_dd_errors_match_qemu_img(tmp_path, operands):
    src = tmp_path / "in.raw"
    INPUTS["raw"](src)
    res = []
    for tool, name in ((simg, "s.img"), (qimg, "q.img")):
        args = [o.format(src=src, out=tmp_path / name) for o in operands]
        res.append(tool("dd", *args, check=False))
    ours, theirs = res
    assert ours.returncode == theirs.returncode
    assert ours.stdout == theirs.stdout
    assert same_stderr(ours.stderr.replace("s.img", "q.img"), theirs.stderr)
    assert (tmp_path / "s.img").exists() == (tmp_path / "q.img").exists()


def test_dd_image_opts_matches_qemu_img(tmp_path):
    src = tmp_path / "in.qcow2"
    INPUTS["qcow2"](src)
    spec = f"driver=qcow2,file.filename={src}"
    for extra in ([], ["-f", "qcow2"]):
        res = [tool("dd", "--image-opts", *extra, f"if={spec}",
                    f"of={tmp_path / name}", "bs=64k", check=False)
               for tool, name in ((simg, "s.img"), (qimg, "q.img"))]
        assert res[0].returncode == res[1].returncode
        assert same_stderr(res[0].stderr, res[1].stderr)
    assert qimg("compare", "-f", "raw", "-F", "raw", tmp_path / "s.img",
                tmp_path / "q.img").returncode == 0


@pytest.mark.parametrize("fmt", ["qcow2", "raw"])
@pytest.mark.parametrize("bs", ["5", "512", "1024", "1999", "1K", "64K", "1M"])
def test_dd_iotest_159(tmp_path, fmt, bs):
    """iotests 159 and 170: a written 1M image copied with each block
    size reads the same, and the copy passes qemu-img check."""
    src, out = tmp_path / f"in.{fmt}", tmp_path / "out.img"
    qimg("create", "-q", "-f", fmt, src, "1M")
    qio(src, "write -P 0xa 0 1M", fmt=fmt)
    simg("dd", f"if={src}", f"of={out}", f"bs={bs}", "-O", fmt)
    if fmt == "qcow2":
        assert qimg("check", out).returncode == 0
    assert "Images are identical." in qimg("compare", "-f", fmt, "-F", fmt,
                                           src, out).stdout


@pytest.mark.parametrize("skip", ["1", "2", "30", "30K"])
def test_dd_iotest_160(tmp_path, skip):
    """iotest 160: skip= gives what dd(1) gives."""
    import subprocess
    src, out, ref = (tmp_path / "in.raw", tmp_path / "out.raw",
                     tmp_path / "ref.raw")
    qimg("create", "-q", "-f", "raw", src, "1M")
    qio(src, "write -P 0xa 24 512k", fmt="raw")
    simg("dd", f"if={src}", f"of={out}", f"skip={skip}", "-O", "raw",
         check=False)
    subprocess.run(["dd", f"if={src}", f"of={ref}", f"skip={skip}",
                    "status=none"], check=True)
    assert "Images are identical." in qimg("compare", "-f", "raw", "-F",
                                           "raw", ref, out).stdout
