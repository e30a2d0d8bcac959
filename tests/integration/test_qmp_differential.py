# SPDX-License-Identifier: BSD-3-Clause
"""The same scripted QMP exchange against qemu-storage-daemon and stratad;
the replies must match once version strings, timestamps and implicit
node names are normalised.  Skipped when qsd is not installed."""
import json
import os
import shutil
import subprocess

import pytest

from conftest import require
from qmp_util import Daemon

SYNC = '{"execute":"query-version","id":"__sync"}\n'


def normalise(msg):
    if "timestamp" in msg:
        msg["timestamp"] = "T"
    ret = msg.get("return")
    if isinstance(ret, dict) and "package" in ret:
        msg["return"] = "VERSION"
    if isinstance(ret, list) and ret and isinstance(ret[0], dict):
        if "node-name" in ret[0] and "drv" in ret[0]:
            # Implicit names are numbered differently; name them by what
            # they are instead.
            names = {}
            for n in ret:
                if n["node-name"].startswith("#block"):
                    names[n["node-name"]] = "#implicit-%s-%s" % (
                        n["drv"], os.path.basename(n["file"]))
            text = json.dumps(ret)
            for real, fake in names.items():
                text = text.replace(real, fake)
            nodes = sorted(json.loads(text), key=lambda n: n["node-name"])
            for n in nodes:
                # QEMU counts in 512-byte sectors, so a protocol node's
                # size is rounded up; strata keeps the exact byte size.
                image = n["image"]
                if image["format"] in ("file", "host_device"):
                    image["virtual-size"] = -(-image["virtual-size"] // 512)
            msg["return"] = nodes
        elif "name" in ret[0] and len(ret[0]) == 1:
            msg["return"] = "COMMANDS"   # the command sets differ by design
    return msg


def run_script(binary, workdir, script, args=()):
    """Returns, per request, the list of messages it produced."""
    d = Daemon(binary, workdir, args, name="diff")
    try:
        c = d.connect(negotiate=False)
        # The greeting first, all of it, before the script's replies.
        c.sync_greeting()
        out = []
        for request in script:
            c.send_raw(request)
            c.send_raw(SYNC)
            msgs = []
            while True:
                line = c.recv_line(10)
                assert line is not None, f"{binary}: no reply to {request!r}"
                assert line.endswith(b"\r\n")
                msg = json.loads(line)
                if msg.get("id") == "__sync":
                    break
                if "QMP" in msg and binary == "qemu-storage-daemon":
                    # qsd's racy second greeting (QmpClient.sync_greeting)
                    # when it comes even later: not a reply.
                    continue
                msgs.append(normalise(msg))
            out.append(msgs)
        return out
    finally:
        d.stop()


def project(have, want):
    """strata may add members to QEMU's objects (clients ignore unknown
    members): keep only the members QEMU sent, recursively."""
    if isinstance(have, dict) and isinstance(want, dict):
        return {k: project(v, want[k]) for k, v in have.items() if k in want}
    if isinstance(have, list) and isinstance(want, list) \
            and len(have) == len(want):
        return [project(h, w) for h, w in zip(have, want)]
    return have


def compare(stratad_bin, tmp_path, script, args=()):
    require("qemu-storage-daemon")
    # Same directory, one daemon after the other: paths in replies match
    # and the two never compete for image locks.
    expected = run_script("qemu-storage-daemon", tmp_path, script, args)
    got = run_script(stratad_bin, tmp_path, script, args)
    for request, want, have in zip(script, expected, got):
        assert project(have, want) == want, f"request {request!r}"


PROTOCOL_SCRIPT = [
    '{"execute":"query-version"}\n',
    '{"execute":"qmp_capabilities","arguments":{"enable":["x"]}}\n',
    '{"execute":"qmp_capabilities","arguments":{"enable":"oob"}}\n',
    '{"execute":"qmp_capabilities","id":1,"arguments":{"foo":1}}\n',
    '{"execute":"qmp_capabilities"}\n',
    '{"execute":"qmp_capabilities"}\n',
    '{"execute":"query-version","id":{"a":[1,2.5,"\\u00e9",null]}}\n',
    '{"execute":"query-version","id":1e3}\n',
    '{"execute":"nosuch","id":"x"}\n',
    '[1]\n',
    '{"foo":1,"id":5}\n',
    '{"execute":1}\n',
    '{"execute":"quit","arguments":[]}\n',
    '{"id":1}\n',
    '{"exec-oob":"query-version"}\n',
    '{"execute":"query-version","arguments":{"x":1}}\n',
    'garbage\n',
    '@@ {"execute":"query-version","id":"after"}\n',
    '{"a":}\n', '}\n', '{"a" 1}\n', '{1:2}\n', '[1,]\n', '{"a":1,}\n',
    '{"execute":"query-version" "id":1}\n', '"\\x"\n', 'True\n', '12x\n',
    '-\n', '[[[]]]]\n',
    '{"execute":\n"query-version",\n"id":\n"split"}\n',
    '{"execute":"query-version"} {"execute":"query-version","id":2}\n',
    '{"execute":"query-commands"}\n',
    '{"execute":"blockdev-del"}\n',
    '{"execute":"blockdev-del","arguments":{"node-name":"nosuch"}}\n',
    '{"execute":"query-named-block-nodes","arguments":{"flat":1}}\n',
    '{"execute":"query-named-block-nodes"}\n',
    '{"execute":"query-block-exports"}\n',
    '{"execute":"query-block-exports","arguments":{"x":1}}\n',
    '{"execute":"nbd-server-stop"}\n',
    '{"execute":"nbd-server-start","arguments":{}}\n',
    '{"execute":"nbd-server-start","arguments":{"addr":"x"}}\n',
    '{"execute":"nbd-server-start","arguments":{"addr":{"type":"unix"}}}\n',
    '{"execute":"nbd-server-start","arguments":{"addr":{"type":"bogus",'
    '"data":{}}}}\n',
    '{"execute":"nbd-server-start","arguments":{"addr":{"type":"unix",'
    '"data":{"path":1}}}}\n',
    '{"execute":"nbd-server-start","arguments":{"addr":{"type":"unix",'
    '"data":{"path":"x","y":1}}}}\n',
    '{"execute":"block-export-add","arguments":{"id":"e0","node-name":"q"}}\n',
    '{"execute":"block-export-add","arguments":{"type":"nbd",'
    '"node-name":"q"}}\n',
    '{"execute":"block-export-del","arguments":{"id":"nosuch"}}\n',
    '{"execute":"block-export-del","arguments":{"id":"e0","mode":"x"}}\n',
    '{"execute":"blockdev-add","arguments":{"node-name":"x"}}\n',
    '{"execute":"blockdev-add","arguments":{"driver":"nosuch",'
    '"node-name":"x"}}\n',
    # Argument errors the generator (test_qmp_arg_errors.py) also finds,
    # kept here as plain examples.
    '{"execute":"blockdev-add","arguments":{"driver":"qcow2",'
    '"node-name":"x"}}\n',
    '{"execute":"blockdev-add","arguments":{"driver":"rbd",'
    '"node-name":"x"}}\n',
    '{"execute":"block-export-add","arguments":{"type":"vhost-user-blk",'
    '"id":"v","node-name":"x"}}\n',
    '{"execute":"nbd-server-start","arguments":{"addr":{"type":"inet",'
    '"data":{"host":"localhost","port":10809}}}}\n',
    '{"execute":"nbd-server-start","arguments":{"addr":{"type":"inet",'
    '"data":{"host":"localhost","port":"0","to":65536}}}}\n',
    # Integers past int64: unsigned 64-bit, then doubles, as QEMU's parser.
    '{"execute":"block-job-set-speed","arguments":{"device":"j",'
    '"speed":18446744073709551615}}\n',
    '{"execute":"block-set-write-threshold","arguments":{"node-name":"x",'
    '"write-threshold":18446744073709551615}}\n',
    '{"execute":"block-set-write-threshold","arguments":{"node-name":"x",'
    '"write-threshold":18446744073709551616}}\n',
    '{"execute":"query-version","id":1,"id":2}\n',
    '{"execute":"query-version","x":1,"x":}\n',
]


def test_protocol_matches_qsd(stratad_bin, tmp_path):
    compare(stratad_bin, tmp_path, PROTOCOL_SCRIPT)


def block_script(d):
    raw = os.path.join(d, "b.raw")
    nbd = os.path.join(d, "nbd.sock")
    add_raw = json.dumps({"execute": "blockdev-add", "arguments": {
        "driver": "raw", "node-name": "r0",
        "file": {"driver": "file", "filename": raw}}})
    return [
        '{"execute":"qmp_capabilities"}\n',
        json.dumps({"execute": "blockdev-add", "arguments": {
            "driver": "file", "filename": raw}}) + "\n",
        json.dumps({"execute": "blockdev-add", "arguments": {
            "driver": "file", "node-name": "x"}}) + "\n",
        json.dumps({"execute": "blockdev-add", "arguments": {
            "driver": "file", "node-name": "x",
            "filename": "/nonexistent"}}) + "\n",
        json.dumps({"execute": "blockdev-add", "arguments": {
            "driver": "file", "node-name": "x", "filename": raw,
            "read-only": "yes"}}) + "\n",
        add_raw + "\n",
        add_raw + "\n",
        '{"execute":"query-named-block-nodes"}\n',
        '{"execute":"query-named-block-nodes","arguments":{"flat":true}}\n',
        json.dumps({"execute": "nbd-server-start", "arguments": {"addr": {
            "type": "unix", "data": {"path": nbd}}}}) + "\n",
        json.dumps({"execute": "nbd-server-start", "arguments": {"addr": {
            "type": "unix", "data": {"path": nbd}}}}) + "\n",
        '{"execute":"block-export-add","arguments":{"type":"nbd","id":"e0",'
        '"node-name":"r0","name":"disk"}}\n',
        '{"execute":"block-export-add","arguments":{"type":"nbd","id":"e0",'
        '"node-name":"r0"}}\n',
        '{"execute":"block-export-add","arguments":{"type":"nbd","id":"e1",'
        '"node-name":"nosuch"}}\n',
        '{"execute":"block-export-add","arguments":{"type":"nbd","id":"",'
        '"node-name":"r0"}}\n',
        '{"execute":"query-block-exports"}\n',
        '{"execute":"blockdev-del","arguments":{"node-name":"r0"}}\n',
        '{"execute":"block-export-del","arguments":{"id":"e0"}}\n',
        '{"execute":"query-block-exports"}\n',
        '{"execute":"nbd-server-stop"}\n',
        '{"execute":"blockdev-del","arguments":{"node-name":"r0"}}\n',
        '{"execute":"query-named-block-nodes"}\n',
    ]


def test_block_commands_match_qsd(stratad_bin, tmp_path):
    with open(tmp_path / "b.raw", "wb") as f:
        f.truncate(2 << 20)
    compare(stratad_bin, tmp_path, block_script(str(tmp_path)))


def test_node_roles_match_qsd(stratad_bin, tmp_path):
    """blockdev-del on a child of another node and on an implicit node."""
    require("qemu-img")
    img = tmp_path / "a.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(img),
                    "1M"], check=True)
    args = ["--blockdev", f"driver=file,filename={img},node-name=f0",
            "--blockdev", "driver=qcow2,file=f0,node-name=q0"]
    script = [
        '{"execute":"qmp_capabilities"}\n',
        '{"execute":"blockdev-del","arguments":{"node-name":"f0"}}\n',
        '{"execute":"query-named-block-nodes","arguments":{"flat":true}}\n',
        '{"execute":"blockdev-del","arguments":{"node-name":"q0"}}\n',
        '{"execute":"blockdev-del","arguments":{"node-name":"f0"}}\n',
        '{"execute":"query-named-block-nodes"}\n',
    ]
    compare(stratad_bin, tmp_path, script, args)


def test_backing_chain_info_matches_qsd(stratad_bin, tmp_path):
    """BlockDeviceInfo/ImageInfo of a qcow2 overlay with its backing chain
    opened implicitly, nested (backing-image) and flat."""
    require("qemu-img")
    base = tmp_path / "base.qcow2"
    top = tmp_path / "top.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(base),
                    "1M"], check=True)
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-b",
                    "base.qcow2", "-F", "qcow2", str(top), "2M"], check=True)
    args = ["--blockdev",
            f"driver=qcow2,file.driver=file,file.filename={top},node-name=q0"]
    script = [
        '{"execute":"qmp_capabilities"}\n',
        '{"execute":"query-named-block-nodes"}\n',
        '{"execute":"query-named-block-nodes","arguments":{"flat":true}}\n',
    ]
    compare(stratad_bin, tmp_path, script, args)


def test_lock_failure_matches_qsd(stratad_bin, tmp_path):
    """An image another process holds: QEMU's message in the reply, its
    hint ("Is another process using the image [...]?") on stderr only;
    the same on the command line, hint included."""
    require("qemu-storage-daemon")
    require("qemu-img")
    img = tmp_path / "a.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(img),
                    "1M"], check=True)
    arg = f"driver=qcow2,file.driver=file,file.filename={img},node-name=q0"
    add = {"driver": "qcow2", "node-name": "q1",
           "file": {"driver": "file", "filename": str(img)}}
    out = {}
    for holder, other in (("qemu-storage-daemon", stratad_bin),
                          (stratad_bin, "qemu-storage-daemon")):
        h = Daemon(holder, tmp_path, ["--blockdev", arg], name="holder")
        o = Daemon(other, tmp_path, name="other")
        try:
            h.connect()        # the holder is up: its locks are taken
            c = o.connect()
            replies = [c.execute("blockdev-add", add),
                       c.execute("blockdev-add",
                                 dict(add, **{"read-only": True}))]
            p = subprocess.run([other, "--blockdev", arg],
                               capture_output=True, text=True, timeout=30)
            out[other] = (replies, p.stderr.split(": ", 1)[1])
        finally:
            h.stop()
            o.stop()
    assert out[stratad_bin] == out["qemu-storage-daemon"]
    replies, stderr = out[stratad_bin]
    assert replies[0]["error"]["desc"] == 'Failed to get "write" lock'
    assert stderr.endswith(
        f"Is another process using the image [{img}]?\n")
