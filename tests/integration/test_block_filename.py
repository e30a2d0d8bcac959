# SPDX-License-Identifier: BSD-3-Clause
"""Node file names as QEMU's bdrv_refresh_filename builds them: a plain
name when opening it rebuilds the node, else "json:{...}" in QEMU's text.
Checked against qemu-img info and qemu-storage-daemon's
query-named-block-nodes "file" member."""
import json

import pytest

from conftest import binary, require, run
from qmp_util import Daemon

QSD = "qemu-storage-daemon"


@pytest.fixture
def chain(tmp_path):
    """base.qcow2 <- top.qcow2 (relative backing name) and abs.qcow2
    (absolute backing name) in tmp_path."""
    base = tmp_path / "base.qcow2"
    run(["qemu-img", "create", "-q", "-f", "qcow2", str(base), "1M"])
    run(["qemu-img", "create", "-q", "-f", "qcow2", "-b", "base.qcow2",
         "-F", "qcow2", str(tmp_path / "top.qcow2")])
    run(["qemu-img", "create", "-q", "-f", "qcow2", "-b", str(base),
         "-F", "qcow2", str(tmp_path / "abs.qcow2")])
    return tmp_path


def info_json(tool, name, cwd):
    p = run([tool, "info", "--output=json", name])
    return json.loads(p.stdout)


IMG_NAMES = [
    '{"driver":"qcow2","file":{"driver":"file","filename":"top.qcow2"}}',
    '{"file":{"driver":"file","filename":"top.qcow2"}}',
    '{"driver":"qcow2","file.filename":"top.qcow2"}',
    '{"driver":"qcow2","file":{"filename":"top.qcow2","locking":"off"}}',
    '{"driver":"qcow2","backing":null,"file":{"filename":"top.qcow2"}}',
    '{"driver":"raw","offset":"0","file":{"filename":"top.qcow2"}}',
    '{"driver":"raw","size":65536,"file":{"filename":"top.qcow2"}}',
    '{"driver":"qcow2","file":{"driver":"blkdebug",'
    '"image":{"filename":"top.qcow2"}}}',
]


@pytest.mark.parametrize("opts", IMG_NAMES)
def test_info_filename_like_qemu_img(chain, opts, monkeypatch):
    """strata-img info shows the name qemu-img info shows, and the same
    full backing file name."""
    monkeypatch.chdir(chain)
    name = "json:" + opts
    want = info_json("qemu-img", name, chain)
    got = info_json(binary("strata-img"), name, chain)
    for key in ("filename", "backing-filename", "full-backing-filename"):
        assert got.get(key) == want.get(key), key


def test_info_json_errors_like_qemu_img(chain, monkeypatch):
    monkeypatch.chdir(chain)
    for opts in ('{"filename":"top.qcow2"}',
                 '{"driver":"qcow2","filename":"top.qcow2"}'):
        want = run(["qemu-img", "info", "json:" + opts], check=False)
        got = run([binary("strata-img"), "info", "json:" + opts], check=False)
        assert want.returncode != 0 and got.returncode != 0
        assert got.stderr.split(": ", 1)[1] == want.stderr.split(": ", 1)[1]


def node_files(bin_path, tmp_path, args, name):
    with Daemon(bin_path, tmp_path, args, name=name) as d:
        q = d.connect()
        nodes = q.cmd("query-named-block-nodes", {"flat": True})
    return {n["node-name"]: (n["file"], n["image"].get("full-backing-filename"))
            for n in nodes if not n["node-name"].startswith("#")}


def blockdevs(tmp):
    f = lambda n: str(tmp / n)
    return [
        # backing opened from the header: plain
        ["--blockdev", json.dumps({"driver": "qcow2", "node-name": "n",
          "file": {"driver": "file", "filename": f("top.qcow2")}})],
        # backing replaced by a node the header does not name exactly
        ["--blockdev", f"driver=file,node-name=bf,filename={f('base.qcow2')},"
                       "read-only=on",
         "--blockdev", "driver=qcow2,node-name=b0,file=bf,read-only=on",
         "--blockdev", f"driver=file,node-name=tf,filename={f('top.qcow2')}",
         "--blockdev", "driver=qcow2,node-name=n,file=tf,backing=b0"],
        # the same node, named exactly as the header does: plain
        ["--blockdev", json.dumps({"driver": "qcow2", "node-name": "n",
          "backing": {"driver": "raw", "file": {"driver": "file",
                                                "filename": f("base.qcow2")}},
          "file": {"driver": "file", "filename": f("abs.qcow2")}})],
        # backing suppressed
        ["--blockdev", json.dumps({"driver": "qcow2", "node-name": "n",
          "backing": None,
          "file": {"driver": "file", "filename": f("top.qcow2")}})],
        # strong options, typed by QAPI even in keyval syntax
        ["--blockdev", f"driver=raw,node-name=n,offset=512,size=4096,"
                       f"file.driver=file,file.filename={f('top.qcow2')},"
                       "file.locking=off"],
        ["--blockdev", "driver=blkdebug,node-name=n,"
                       "inject-error.0.event=read_aio,inject-error.0.errno=5,"
                       "inject-error.0.once=on,image.driver=file,"
                       f"image.filename={f('top.qcow2')}"],
        ["--blockdev", "driver=qcow2,node-name=n,file.driver=blkdebug,"
                       f"file.image.driver=file,file.image.filename={f('top.qcow2')}"],
    ]


@pytest.mark.parametrize("case", range(7))
def test_node_file_like_qsd(chain, case):
    require(QSD)
    args = blockdevs(chain)[case]
    want = node_files(QSD, chain, args, "q")
    got = node_files(binary("stratad"), chain, args, "s")
    assert got["n"][0] == want["n"][0]
    for name, (fname, _) in want.items():
        assert got[name][0] == fname, name
