# SPDX-License-Identifier: BSD-3-Clause
"""QEMU's filename and option syntaxes in strata-img: json: filenames in
QEMU's JSON dialect (single quotes, its parse errors), protocol prefixes
(file:, null-co://, blkdebug:CONFIG:IMAGE, unknown protocols), and
--image-opts option strings.  Each case runs qemu-img and strata-img
with the same arguments in the same directory and compares exit code,
stdout and stderr byte for byte (program name aside)."""
import json
import os

import pytest

from conftest import binary, require, run
from img_util import run_tool

A = "a.qcow2"
J = "json:"


def js(obj):
    return J + json.dumps(obj)


JSON_TEXTS = [
    # QEMU's dialect: single quotes, \' in both kinds of string
    "{'driver':'qcow2','file':{'filename':'a.qcow2'}}",
    "{'driver':'qcow2','file':{'driver':'file','filename':'a\\'b.qcow2'}}",
    "{\"driver\":\"qcow2\",\"file\":{\"filename\":\"a\\'b\"}}",
    "{'driver':'qcow2','file.filename':'a.qcow2'}",
    "{'a\\'b':1}",
    # malformed: every first error as QEMU words it
    '', ' ', '{', '}', '[', ']', '{"driver":"qcow2"', '[1]', '1', '"x"',
    'null', 'true1', 'True', '{"a":1} x', '{"a":1}{"b":2}', '{"a":1} @', '@',
    '{"x":@}', '{"a":1,}', '{,}', '{"a" 1}', '{"a":}', '{1:2}',
    '{"a":1 "b":2}', '[1 2]', '[1,]', '[,1]', '{"a":1,"a":2}', '{"a":01}',
    '{"a":-}', '{"a":1.}', '{"a":1e}', '{"a":1e+}', '{"a":.5}', '{"a":0e5}',
    '{"a":"\\x"}', '{"a":"\\u12"}', '{"a":"\\u12', '{"a":"\\uD800"}',
    '{"a":"\\uD800\\u0041"}', '{"a":"\\uFFFF"}', '{"a":"\\u0000"}',
    '{"a":"\xff"}', '{"a":"\t"}', '{"a":"abc', "{'a':'abc",
    "{'driver':'qcow2','file':{'filename':'a.qcow2}}", '{"a":nul}',
    '{"a": [1, {"b": [}]}', '{"a":1]', '[1}', '{"a":[}]', ']]', '{}}',
    '{"a":1e999}', '{"a":-9223372036854775809}', '{"a"', '{"a":',
    '{"a":1,', '"abc', "'abc", '-', '{"a":\x01}', '\x7f', '{"a":truex}',
    '[' * 1100, '{"a":' * 600,
    '{"x":1e5, "y": -0, "z": 1.5}',
    # semantic errors after a good parse
    '{"driver":"nosuch"}',
    '{"driver":"qcow2","file.filename":"a.qcow2","foo":1}',
    '{"driver":"qcow2","file":{"filename":"a.qcow2"},'
    '"file.filename":"a.qcow2"}',
    '{"driver":"file","filename":"file:a.qcow2"}',
    '{"file":"a.qcow2"}', '{"driver":"qcow2","file":"a.qcow2"}',
    '{"driver":"qcow2","file":{"filename":"a.qcow2"},}',
]

PROTOCOL_CASES = [
    ["info", "file:a.qcow2"],
    ["info", "--output=json", "file:a.qcow2"],
    ["info", "foo:a.qcow2"],
    ["info", "c:d.qcow2"],
    ["info", "./c:d.qcow2"],
    ["info", "file:c:d.qcow2"],
    ["info", "--output=json", "file:c:d.qcow2"],
    ["info", "file:"],
    ["info", "file:nonexist"],
    ["info", "x" * 200 + ":y"],
    ["info", "null-co://"],
    ["info", "--output=json", "null-co://"],
    ["info", "null-co://foo"],
    ["info", "null-aio://"],
    ["info", "-f", "null-co", "null-co://"],
    ["info", js({"driver": "null-co"})],
    ["info", js({"driver": "null-co", "size": "1M"})],
    ["info", "--output=json",
     js({"driver": "null-co", "size": 1048576, "read-zeroes": True})],
    ["map", "--output=json", "null-co://"],
    ["map", "--output=json",
     js({"driver": "null-co", "read-zeroes": True, "size": 1048576})],
    ["map", js({"driver": "null-co", "read-zeroes": True, "size": 1048576})],
    ["check", "null-co://"],
    ["compare", "null-co://", js({"driver": "null-co", "read-zeroes": True})],
    ["info", "blkdebug::a.qcow2"],
    ["info", "--output=json", "blkdebug::a.qcow2"],
    ["info", "blkdebug:/nonexist.conf:a.qcow2"],
    ["info", "blkdebug:"],
    ["info", "blkdebug:x"],
    ["info", "blkdebug:empty.conf:a.qcow2"],
    ["info", "blkdebug::null-co://"],
    ["info", "blkdebug::file:c:d.qcow2"],
    ["info", "-f", "qcow2", "blkdebug::a.qcow2"],
    ["info", "-f", "blkdebug", "a.qcow2"],
    ["info", "--output=json", "-f", "blkdebug", "a.qcow2"],
    ["info", "-f", "blkdebug", "nonexist"],
    ["info", "-f", "blkdebug", "blkdebug:a.qcow2"],
    ["map", "-f", "blkdebug", "a.qcow2"],
    ["map", "--output=json", "blkdebug::a.qcow2"],
    ["check", "blkdebug::a.qcow2"],
    ["check", "--output=json", "file:a.qcow2"],
    ["compare", "jb.qcow2", A],
    ["compare", "jq.qcow2", A],
    ["compare", "fb.qcow2", A],
    ["info", "--backing-chain", "jq.qcow2"],
    ["info", "--backing-chain", "fb.qcow2"],
    ["map", "--output=json", "jq.qcow2"],
    ["compare", "blkdebug::a.qcow2", "file:a.qcow2"],
    ["info", js({"driver": "qcow2", "file": {"driver": "blkdebug",
                                             "image": {"filename": A}}})],
    ["info", js({"driver": "blkdebug", "image.filename": A})],
    ["info", js({"driver": "blkdebug", "config": "/nonexist",
                 "image.filename": A})],
]

# blkdebug rules files, in QEMU's syntax (iotest 074's first).
CONFIGS = {
    "empty.conf": "",
    "eio.conf": '[inject-error]\nevent = "read_aio"\nerrno = "5"\n'
                'once ="off"\n',
    "state.conf": '# read_aio moves to state 2, where reads fail\n'
                  '[set-state]\nevent = "read_aio"\nnew_state = "2"\n\n'
                  '[inject-error]\nevent = "read_aio"\nstate = "2"\n'
                  'errno = "28"\n',
    "nogroup.conf": '[foo]\n',
    "nohead.conf": 'x = "1"\n',
    "badkey.conf": '[inject-error]\nfoo = "1"\n',
    "badline.conf": '[inject-error]\nfoo\n',
}

BLKDEBUG_CONFIG_CASES = [
    ["compare", "blkdebug:eio.conf:a.qcow2", "b.qcow2"],
    ["compare", "blkdebug:state.conf:a.qcow2", "b.qcow2"],
    ["convert", "-O", "raw", "blkdebug:eio.conf:a.qcow2", "out.raw"],
    ["map", "--output=json", "blkdebug:eio.conf:a.qcow2"],
    ["check", "blkdebug:eio.conf:a.qcow2"],
    ["info", "blkdebug:state.conf:a.qcow2"],
    ["info", "blkdebug:nogroup.conf:a.qcow2"],
    ["info", "blkdebug:nohead.conf:a.qcow2"],
    ["info", "blkdebug:badkey.conf:a.qcow2"],
    ["info", "blkdebug:badline.conf:a.qcow2"],
    ["info", "--output=json", "blkdebug:empty.conf:a.qcow2"],
    ["compare", js({"driver": "qcow2", "file": {
        "driver": "blkdebug", "image": {"filename": A},
        "set-state": [{"event": "read_aio", "new_state": 2}],
        "inject-error": [{"event": "read_aio", "state": 2, "errno": 5}]}}),
     "b.qcow2"],
]

IMAGE_OPTS = [
    "a.qcow2",
    "driver=qcow2,file.filename=a.qcow2",
    "driver=qcow2,file.filename=a.qcow2,foo=bar",
    "file.filename=a.qcow2",
    "driver=qcow2,file.driver=file,file.filename=a.qcow2,,x",
    "driver=null-co,size=1M",
    "driver=nosuch",
    "driver=qcow2",
    "",
    "driver=qcow2,file.filename=a.qcow2,nofoo",
    "driver=qcow2,file.filename=a.qcow2,foo",
    "driver=raw,file.driver=null-co,file.size=4096",
    "driver=blkdebug,image.filename=a.qcow2",
    "driver=qcow2,file.driver=blkdebug,file.image.filename=a.qcow2",
    "driver=qcow2,file=a.qcow2,id=foo",
    "driver=qcow2,file.filename=a.qcow2,help",
    "driver=qcow2,file.filename=c:d.qcow2",
    "driver=qcow2,file.driver=file,file.filename=a.qcow2,file.bogus=1",
    "driver=qcow2,file.filename=nonexist.qcow2",
    "driver=qcow2,file.driver=file",
    "driver=qcow2,file.filename=a.qcow2,read-only=off",
]

IMAGE_OPTS_CASES = [["info", "--image-opts", o] for o in IMAGE_OPTS] + [
    ["info", "--output=json", "--image-opts",
     "driver=qcow2,file.filename=a.qcow2"],
    ["info", "--output=json", "--image-opts",
     "driver=raw,file.driver=null-co,file.size=1M,file.read-zeroes=on"],
    ["info", "-U", "--image-opts",
     "driver=qcow2,file.filename=a.qcow2,force-share=off"],
    ["info", "-U", "--image-opts",
     "driver=qcow2,file.filename=a.qcow2,force-share=on"],
    ["info", "--image-opts", "-f", "qcow2", "driver=qcow2,file.filename=a.qcow2"],
    ["map", "--output=json", "--image-opts",
     "driver=qcow2,file.filename=a.qcow2"],
    ["map", "--image-opts", "driver=null-co,size=1M,read-zeroes=on"],
    ["check", "--image-opts", "driver=qcow2,file.filename=a.qcow2"],
    ["check", "--output=json", "--image-opts",
     "driver=qcow2,file.filename=a.qcow2"],
    ["check", "--image-opts", "driver=null-co"],
    ["compare", "--image-opts", "driver=qcow2,file.filename=a.qcow2",
     "driver=qcow2,file.filename=c:d.qcow2"],
    ["compare", "--image-opts", "driver=qcow2,file.filename=a.qcow2",
     "driver=null-co,size=1M,read-zeroes=on"],
    ["compare", "--image-opts", "-f", "qcow2",
     "driver=qcow2,file.filename=a.qcow2", "a.qcow2"],
    ["convert", "--target-image-opts", A,
     "driver=qcow2,file.filename=b.qcow2"],
    ["convert", "-n", "--target-image-opts", A,
     "driver=qcow2,file.filename=b.qcow2"],
    ["convert", "-n", "-O", "qcow2", "--target-image-opts", A,
     "driver=qcow2,file.filename=b.qcow2"],
    ["convert", "-n", "--target-image-opts", A,
     "driver=qcow2,file.filename=nonexist.qcow2"],
    ["convert", "-n", "--image-opts", "--target-image-opts",
     "driver=qcow2,file.filename=a.qcow2",
     "driver=raw,file.driver=null-co,file.size=1M"],
    ["rebase", "-u", "-b", "", "--image-opts",
     "driver=qcow2,file.filename=b.qcow2"],
    ["dd", "--image-opts", "-O", "raw", "if=driver=qcow2,file.filename=a.qcow2",
     "of=o.raw", "bs=64k", "count=4"],
    ["snapshot", "-l", "--image-opts", A],
    ["snapshot", "-l", "--image-opts",
     "driver=qcow2,file.filename=a.qcow2,foo=1"],
    ["measure", "-O", "qcow2", "--image-opts",
     "driver=qcow2,file.filename=a.qcow2"],
    ["measure", "-O", "qcow2", "--image-opts", A],
    ["measure", "-O", "qcow2", "--image-opts", "driver=nosuch"],
    ["dd", "--image-opts", "-f", "qcow2",
     "if=driver=qcow2,file.filename=a.qcow2", "of=o.raw"],
    ["rebase", "-u", "-b", "", "--image-opts", "-f", "qcow2",
     "driver=qcow2,file.filename=b.qcow2"],
]


OBJECT_CASES = [
    ["info", "--object", "secret,id=s0,data=abc", A],
    ["info", "--object", "foo,id=x", A],
    ["info", "--object", "foo", A],
    ["info", "--object", "secret,data=abc", A],
    ["info", "--object", "secret,id=1x,data=abc", A],
    ["info", "--object", "secret,id=s0", A],
    ["info", "--object", "qom-type=secret,id=s0,data=x", A],
    ["info", "--object", "{'qom-type':'secret','id':'s0','data':'x'}", A],
    ["info", "--object", '{"qom-type":"secret"', A],
    ["info", "--object", "secret,id=s0,data=x,bogus=1", A],
    ["info", "--object", "secret,id=s0,data=x", "--object",
     "secret,id=s0,data=y", A],
    ["check", "--object", "secret,id=s0,data=abc", A],
    ["map", "--object", "secret,id=s0,data=abc", "--output=json", A],
    ["compare", "--object", "secret,id=s0,data=abc", A, A],
    ["convert", "--object", "secret,id=s0,data=abc", "-O", "raw", A,
     "o.raw"],
    ["create", "--object", "secret,id=s0,data=abc", "-f", "qcow2",
     "new.qcow2", "1M"],
    ["resize", "--object", "foo", A, "2M"],
    ["dd", "--object", "foo", f"if={A}", "of=o.raw"],
    ["dd", "--object", "secret,id=s0,data=abc", f"if={A}", "of=o.raw"],
    ["amend", "--object", "secret,id=s0,data=abc", "-o",
     "lazy_refcounts=off", A],
]


@pytest.fixture
def images(tmp_path, monkeypatch):
    require("qemu-img")
    monkeypatch.chdir(tmp_path)
    run(["qemu-img", "create", "-q", "-f", "qcow2", A, "1M"])
    run(["qemu-io", "-c", "write -P 0x5a 64k 64k", A])
    run(["cp", A, "c:d.qcow2"])
    run(["qemu-img", "create", "-q", "-f", "qcow2", "b.qcow2", "1M"])
    # Backing files named in QEMU's forms inside an image
    for name, backing in (("jb.qcow2", '{"driver":"qcow2","file.filename":'
                                       '"a.qcow2","foo":1}'),
                          ("jq.qcow2", "{'driver':'qcow2','file':"
                                       "{'filename':'a.qcow2'}}"),
                          ("fb.qcow2", "file:c:d.qcow2")):
        run(["qemu-img", "create", "-q", "-f", "qcow2", "-u", "-b",
             backing if backing.startswith("file:") else "json:" + backing,
             "-F", "qcow2", name, "1M"])
    for name, text in CONFIGS.items():
        (tmp_path / name).write_text(text)
    # Settle delayed allocation: both tools must see the same disk size.
    os.sync()
    return tmp_path


def same(args):
    q = run_tool(["qemu-img", *args])
    s = run_tool([binary("strata-img"), *args])
    norm = lambda t: t.replace("strata-img", "qemu-img")
    assert (s.returncode, norm(s.stdout), norm(s.stderr)) == \
        (q.returncode, q.stdout, q.stderr), args


@pytest.mark.parametrize("text", JSON_TEXTS, ids=range(len(JSON_TEXTS)))
def test_json_filename_like_qemu_img(images, text):
    same(["info", J + text])


@pytest.mark.parametrize("args", PROTOCOL_CASES, ids=range(len(PROTOCOL_CASES)))
def test_protocol_prefix_like_qemu_img(images, args):
    same(args)


@pytest.mark.parametrize("args", BLKDEBUG_CONFIG_CASES,
                         ids=range(len(BLKDEBUG_CONFIG_CASES)))
def test_blkdebug_config_like_qemu_img(images, args):
    same(args)


@pytest.mark.parametrize("args", OBJECT_CASES, ids=range(len(OBJECT_CASES)))
def test_object_like_qemu_img(images, args):
    same(args)
    run(["rm", "-f", "new.qcow2"])


@pytest.mark.parametrize("args", IMAGE_OPTS_CASES,
                         ids=range(len(IMAGE_OPTS_CASES)))
def test_image_opts_like_qemu_img(images, args):
    same(args)


@pytest.mark.parametrize("src", [
    ["--image-opts", "driver=qcow2,file.filename=a.qcow2"],
    ["json:{'driver':'qcow2','file':{'filename':'a.qcow2'}}"],
    ["file:c:d.qcow2"],
    ["blkdebug::a.qcow2"],
])
def test_convert_sources_like_qemu_img(images, src):
    """The data a syntax names, converted by both tools, is the same."""
    same(["convert", "-O", "raw", *src, "q.raw"])
    run(["qemu-img", "convert", "-O", "raw", *src, "want.raw"])
    q = run_tool([binary("strata-img"), "convert", "-O", "raw", *src,
                  "q.raw"])
    assert q.returncode == 0, q.stderr
    assert open("q.raw", "rb").read() == open("want.raw", "rb").read()
    same(["compare", "-f", "raw", "-F", "qcow2", "q.raw", A])


def test_convert_into_target_image_opts(images):
    """convert -n --target-image-opts writes the data into the image the
    option list names."""
    p = run_tool([binary("strata-img"), "convert", "-n",
                  "--target-image-opts", A,
                  "driver=qcow2,file.driver=file,file.filename=b.qcow2"])
    assert (p.returncode, p.stdout, p.stderr) == (0, "", "")
    same(["compare", A, "b.qcow2"])
    run(["qemu-img", "compare", A, "b.qcow2"])
    run(["qemu-img", "check", "b.qcow2"])


@pytest.mark.parametrize("extra", [[], ["-f", "qcow2"]])
def test_commit_image_opts_like_qemu_img(tmp_path, monkeypatch, extra):
    """commit --image-opts: same messages, same data in the base."""
    require("qemu-img")
    monkeypatch.chdir(tmp_path)
    results = []
    for tool in ("qemu-img", binary("strata-img")):
        run(["rm", "-f", "b.qcow2", "t.qcow2"])
        run(["qemu-img", "create", "-q", "-f", "qcow2", "b.qcow2", "1M"])
        run(["qemu-img", "create", "-q", "-f", "qcow2", "-b", "b.qcow2",
             "-F", "qcow2", "t.qcow2"])
        run(["qemu-io", "-c", "write -P 7 0 64k", "t.qcow2"])
        p = run_tool([tool, "commit", "--image-opts", *extra,
                      "driver=qcow2,file.filename=t.qcow2"])
        run(["qemu-img", "check", "b.qcow2"])
        results.append((p.returncode, p.stdout,
                        p.stderr.replace("strata-img", "qemu-img"),
                        "failed" in run_tool(["qemu-io", "-c",
                                              "read -P 7 0 64k", "-c",
                                              "read -P 0 64k 960k",
                                              "b.qcow2"]).stdout))
    assert results[1] == results[0]


@pytest.mark.parametrize("errno_", [None, 28])
def test_commit_into_base_behind_blkdebug(tmp_path, monkeypatch, errno_):
    """A qcow2 base behind blkdebug grows through the filter (its new
    clusters lie past the file's end), and an injected errno reaches the
    user unchanged (QEMU's iotest 020 injects ENOSPC)."""
    require("qemu-img")
    monkeypatch.chdir(tmp_path)
    debug = {"driver": "blkdebug",
             "image": {"driver": "file", "filename": str(tmp_path / "b.qcow2")}}
    if errno_:
        debug["inject-error"] = [{"event": "write_aio", "errno": errno_,
                                  "once": True}]
    backing = "json:" + json.dumps({"driver": "qcow2", "file": debug})
    results = []
    for tool in ("qemu-img", binary("strata-img")):
        run(["rm", "-f", "b.qcow2", "t.qcow2"])
        run(["qemu-img", "create", "-q", "-f", "qcow2", "b.qcow2", "1M"])
        run(["qemu-img", "create", "-q", "-f", "qcow2", "-b", backing,
             "-F", "qcow2", "t.qcow2"])
        run(["qemu-io", "-c", "write -P 7 0 64k", "t.qcow2"])
        p = run_tool([tool, "commit", "t.qcow2"])
        run(["qemu-img", "check", "b.qcow2"])
        base = run_tool(["qemu-io", "-c", "read -P 7 0 64k", "b.qcow2"])
        results.append((p.returncode, p.stdout,
                        p.stderr.replace("strata-img", "qemu-img"),
                        "failed" in base.stdout))
    assert results[1] == results[0]
    if errno_:
        assert "No space left on device" in results[1][2]
    else:
        assert results[1][0] == 0 and not results[1][3]


def test_iotest_126_colons_and_file_prefix(images):
    """QEMU's iotest 126: colons after a slash are part of the name,
    file: forces a plain name, relative backing names resolve."""
    d = str(images)
    for tool in ("qemu-img", binary("strata-img")):
        out = []
        for args in (
                ["create", "-f", "qcow2", f"{d}/a:b.qcow2", "64M"],
                ["create", "-f", "qcow2", f"file:{d}/a:b.qcow2", "64M"],
                ["create", "-f", "qcow2", f"{d}/image:base.qcow2", "64M"],
                ["create", "-f", "qcow2", "-b", "./image:base.qcow2", "-F",
                 "qcow2", f"{d}/image:top.qcow2"],
                ["info", f"{d}/image:top.qcow2"],
                ["create", "-f", "qcow2", "base.qcow2", "64M"],
                ["create", "-f", "qcow2", "-b", "base.qcow2", "-F", "qcow2",
                 "file:image:top.qcow2"],
                ["info", "file:image:top.qcow2"]):
            p = run_tool([tool, *args])
            out.append((p.returncode, p.stdout, p.stderr))
        run(["rm", "-f", f"{d}/a:b.qcow2", f"{d}/image:base.qcow2",
             f"{d}/image:top.qcow2", "base.qcow2"])
        if tool == "qemu-img":
            want = out
        else:
            got = [(rc, o.replace("strata-img", "qemu-img"),
                    e.replace("strata-img", "qemu-img")) for rc, o, e in out]
    # disk sizes can differ by allocation granularity: compare the rest
    strip = lambda rows: [(rc, "\n".join(l for l in o.splitlines()
                                         if not l.startswith("disk size")), e)
                          for rc, o, e in rows]
    assert strip(got) == strip(want)


@pytest.mark.parametrize("arg", [
    "{'driver':'null-co','node-name':'n'} x",
    '{"driver":"null-co"',
    "{'driver':'null-co','node-name':'n','x':1}",
    "{'driver':'null-co','node-name':'n','x':'a\\'b'}",
    '{"driver":"null-co","node-name":"n","a":@}',
])
def test_stratad_blockdev_json_dialect_like_qsd(arg):
    """stratad's --blockdev reads JSON in QEMU's dialect too, failing
    with qemu-storage-daemon's words."""
    require("qemu-storage-daemon")
    q = run_tool(["qemu-storage-daemon", "--blockdev", arg], timeout=10)
    s = run_tool([binary("stratad"), "--blockdev", arg], timeout=10)
    assert q.returncode == 1
    assert (s.returncode, s.stderr.replace("stratad", "qemu-storage-daemon")) \
        == (q.returncode, q.stderr)


def iotest_cases(d):
    """Uses of these syntaxes in QEMU iotests 061, 089, 110, 244, 251."""
    top, base = f"{d}/t.qcow2", f"{d}/t.qcow2.base"
    blkdebug_top = ("json:{'driver':'qcow2','file':{'driver':'blkdebug',"
                    f"'image':{{'driver':'file','filename':'{top}'}},"
                    "'set-state':[{'event':'read_aio','new_state':42}]}}")

    def above(rule):
        return ("json:{'driver': 'blkdebug','image': {'driver': 'qcow2',"
                f"'file': {{'driver': 'file','filename': '{top}'}}}},"
                f"'inject-error': [{rule}]}}")
    return [
        ["info", "json:{'driver':'qcow2','file':{'driver':'file',"
                 f"'filename':'{top}'}}}}"],
        ["info", blkdebug_top],
        ["info", "--output=json", blkdebug_top],
        ["info", f'json:{{"driver":"qcow2","file.filename":"{top}"}}'],
        ["compare", "--image-opts", f"driver=qcow2,file.filename={top}",
         f"file.filename={top},backing.file.filename={base}"],
        ["convert", "-O", "raw", above(
            "{ 'event': 'none','iotype': 'block-status','errno': 5,"
            "'sector': 8 }"), "o.raw"],
        ["convert", "-O", "raw", above(
            "{ 'event': 'none','iotype': 'read','errno': 5,'sector': 0 }"),
         "o.raw"],
        ["amend", "-o", "compat=0.10", "--image-opts",
         f"driver=qcow2,file.filename={top},l2-cache-entry-size=4096"],
    ]


@pytest.mark.parametrize("case", range(8))
def test_iotest_uses_like_qemu_img(tmp_path, monkeypatch, case):
    require("qemu-img")
    monkeypatch.chdir(tmp_path)
    d = str(tmp_path)
    run(["qemu-img", "create", "-q", "-f", "qcow2", "t.qcow2.base", "64M"])
    run(["qemu-img", "create", "-q", "-f", "qcow2", "-b", "t.qcow2.base",
         "-F", "qcow2", "t.qcow2"])
    run(["qemu-io", "-c", "write -P 42 0 1M", "t.qcow2.base"])
    os.sync()
    same(iotest_cases(d)[case])
