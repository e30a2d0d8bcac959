# SPDX-License-Identifier: BSD-3-Clause
"""QMP wire protocol of stratad: framing, negotiation, id echo, every
input error text QEMU 7.2 gives, streaming parser, several clients."""
import json
import os
import socket
import time

import pytest

from qmp_util import Daemon, QmpClient


@pytest.fixture
def daemon(stratad_bin, tmp_path):
    d = Daemon(stratad_bin, tmp_path)
    yield d
    d.stop()


def raw_exchange(client, data, expect=1, timeout=5):
    """Sends raw bytes, returns the next `expect` raw reply lines."""
    client.send_raw(data)
    lines = []
    for _ in range(expect):
        line = client.recv_line(timeout)
        assert line is not None, f"no reply to {data!r}"
        lines.append(line)
    return lines


def err(desc, cls="GenericError", id=None):
    obj = {}
    if id is not None:
        obj["id"] = id
    obj["error"] = {"class": cls, "desc": desc}
    return (json.dumps(obj) + "\r\n").encode()


def test_greeting_layout(daemon):
    c = daemon.connect(negotiate=False)
    # Re-serialise with QEMU's separators: the wire text must match.
    assert list(c.greeting) == ["QMP"]
    qmp = c.greeting["QMP"]
    assert qmp["capabilities"] == ["oob"]
    ver = qmp["version"]
    assert set(ver["qemu"]) == {"major", "minor", "micro"}
    assert ver["package"].startswith("strata ")


def test_greeting_wire_format(stratad_bin, tmp_path):
    d = Daemon(stratad_bin, tmp_path)
    try:
        s = socket.socket(socket.AF_UNIX)
        s.connect(d.qmp_path)
        s.settimeout(5)
        data = b""
        while not data.endswith(b"\r\n"):
            data += s.recv(4096)
        s.close()
        assert data.startswith(b'{"QMP": {"version": {"qemu": {"micro": ')
        assert data.endswith(b'"capabilities": ["oob"]}}\r\n')
        assert data.count(b"\n") == 1
    finally:
        d.stop()


def test_negotiation(daemon):
    c = daemon.connect(negotiate=False)
    expect_before = "Expecting capabilities negotiation with 'qmp_capabilities'"
    assert raw_exchange(c, '{"execute":"query-version"}\n') == [
        err(expect_before, "CommandNotFound")]
    assert raw_exchange(c, '{"execute":"nosuch","id":7}\n') == [
        err(expect_before, "CommandNotFound", id=7)]
    assert raw_exchange(
        c, '{"execute":"qmp_capabilities","arguments":{"enable":["x"]}}\n') == [
        err("Parameter 'null' does not accept value 'x'")]
    assert raw_exchange(
        c, '{"execute":"qmp_capabilities","arguments":{"enable":"oob"}}\n') == [
        err("Invalid parameter type for 'enable', expected: array")]
    assert raw_exchange(
        c, '{"execute":"qmp_capabilities","id":1,"arguments":{"foo":1}}\n') == [
        err("Parameter 'foo' is unexpected", id=1)]
    assert raw_exchange(c, '{"execute":"qmp_capabilities"}\n') == [
        b'{"return": {}}\r\n']
    assert raw_exchange(c, '{"execute":"qmp_capabilities"}\n') == [
        err("Capabilities negotiation is already complete, command ignored",
            "CommandNotFound")]


@pytest.mark.parametrize("id_value", [
    1, "x", {"a": [1, 2]}, [], None, True, -0.5, "\u00e9"])
def test_id_echo_any_type(daemon, id_value):
    c = daemon.connect()
    reply = c.execute("query-version", id=id_value)
    assert reply["id"] == id_value
    assert list(reply) == ["return", "id"]
    reply = c.execute("nosuch", id=id_value)
    assert list(reply) == ["id", "error"]
    assert reply["id"] == id_value


def test_no_id_no_id_member(daemon):
    c = daemon.connect()
    assert c.execute("query-version").keys() == {"return"}


INPUT_ERRORS = [
    ('{"execute":"nosuch","id":"x"}',
     err("The command nosuch has not been found", "CommandNotFound", "x")),
    ('[1]', err("QMP input must be a JSON object")),
    ('"str"', err("QMP input must be a JSON object")),
    ('{"foo":1}', err("QMP input member 'foo' is unexpected")),
    ('{"foo":1,"id":5}', err("QMP input member 'foo' is unexpected", id=5)),
    ('{"execute":1}', err("QMP input member 'execute' must be a string")),
    ('{"execute":"quit","arguments":[]}',
     err("QMP input member 'arguments' must be an object")),
    ('{"id":1}', err("QMP input lacks member 'execute'", id=1)),
    ('{}', err("QMP input lacks member 'execute'")),
    ('{"execute":"query-version","control":{}}',
     err("QMP input member 'control' is unexpected")),
    ('{"exec-oob":"query-version"}',
     err("QMP input member 'exec-oob' is unexpected")),
    ('{"execute":"query-version","arguments":{"x":1}}',
     err("Parameter 'x' is unexpected")),
    ('garbage', err("JSON parse error, invalid keyword 'garbage'")),
    ('@', err("JSON parse error, stray '@'")),
    ('{"a":}', err("JSON parse error, expecting value")),
    ('}', err("JSON parse error, expecting value")),
    ('{"a" 1}', err("JSON parse error, missing : in object pair")),
    ('{1:2}', err("JSON parse error, key is not a string in object")),
    ('{"a":1,}', err("JSON parse error, expecting value")),
    ('{"execute":"query-version" "id":1}',
     err("JSON parse error, expected separator in dict")),
    ('"\\x"', err("JSON parse error, invalid escape sequence in string")),
    ('{"execute":"blockdev-del"}', err("Parameter 'node-name' is missing")),
    ('{"execute":"query-named-block-nodes","arguments":{"flat":1}}',
     err("Invalid parameter type for 'flat', expected: boolean")),
    ('{"execute":"block-export-del","arguments":{"id":"e0","mode":"x"}}',
     err("Parameter 'mode' does not accept value 'x'")),
    ('{"execute":"nbd-server-start","arguments":{"addr":{"type":"unix",'
     '"data":{"path":"/x"}},"max-connections":"x"}}',
     err("Parameter 'max-connections' expects uint64")),
    ('{"execute":"nbd-server-start","arguments":{"addr":{"type":"unix",'
     '"data":{"path":"/x"}},"max-connections":-1}}',
     err("Parameter 'max-connections' expects uint32_t")),
    ('{"execute":"nbd-server-start","arguments":{"addr":{"type":"unix"}}}',
     err("Parameter 'addr.data' is missing")),
    ('{"execute":"nbd-server-start","arguments":{"addr":{"type":"unix",'
     '"data":{"path":1}}}}',
     err("Invalid parameter type for 'addr.data.path', expected: string")),
    ('{"execute":"block-export-add","arguments":{"id":"e0","node-name":"n"}}',
     err("Parameter 'type' is missing")),
    ('{"execute":"nbd-server-stop"}', err("NBD server not running")),
]


@pytest.mark.parametrize("request_text,reply", INPUT_ERRORS,
                         ids=[r for r, _ in INPUT_ERRORS])
def test_input_error_texts(daemon, request_text, reply):
    c = daemon.connect()
    assert raw_exchange(c, request_text + "\n") == [reply]
    # The connection keeps working after every error.
    assert "return" in c.execute("query-version")


def test_oob_enabled(daemon):
    c = daemon.connect(negotiate=False)
    c.execute("qmp_capabilities", {"enable": ["oob"]})
    assert raw_exchange(c, '{"exec-oob":"query-version"}\n') == [
        err("The command query-version does not support OOB")]
    assert raw_exchange(
        c, '{"exec-oob":"query-version","execute":"query-version"}\n') == [
        err("QMP input member 'execute' clashes with 'exec-oob'")]


def test_object_split_across_writes_and_lines(daemon):
    c = daemon.connect()
    c.send_raw('{"execute":')
    time.sleep(0.1)
    assert c.recv_line(0.2) is None
    c.send_raw('\n "query-version",\r\n')
    c.send_raw(' "id": 3}\n')
    assert json.loads(c.recv_line())["id"] == 3


def test_several_objects_on_one_line(daemon):
    c = daemon.connect()
    lines = raw_exchange(
        c, '{"execute":"query-version"} {"execute":"query-version","id":2}'
           '{"execute":"nosuch","id":3}\n', expect=3)
    replies = [json.loads(x) for x in lines]
    assert "id" not in replies[0]
    assert replies[1]["id"] == 2
    assert replies[2]["id"] == 3 and "error" in replies[2]


def test_garbage_recovery(daemon):
    c = daemon.connect()
    lines = raw_exchange(c, 'garbage\n@@ {"execute":"query-version","id":9}\n',
                         expect=3)
    assert lines[0] == err("JSON parse error, invalid keyword 'garbage'")
    assert lines[1] == err("JSON parse error, stray '@'")
    assert json.loads(lines[2])["id"] == 9


def test_query_commands_lists_our_commands(daemon):
    c = daemon.connect()
    names = {x["name"] for x in c.cmd("query-commands")}
    assert {"qmp_capabilities", "query-version", "query-commands", "quit",
            "blockdev-add", "blockdev-del", "query-named-block-nodes",
            "nbd-server-start", "nbd-server-stop", "block-export-add",
            "block-export-del", "query-block-exports"} <= names


def test_several_clients_at_once(daemon):
    clients = [daemon.connect() for _ in range(5)]
    for i, c in enumerate(clients):
        assert c.execute("query-version", id=i)["id"] == i
    # Unnegotiated clients coexist with negotiated ones.
    raw = daemon.connect(negotiate=False)
    assert "error" in raw.execute("query-version")
    assert clients[0].execute("query-version", id="again")["id"] == "again"


def test_client_that_stops_reading_is_dropped(stratad_bin, tmp_path):
    env = dict(os.environ, STRATA_QMP_MAX_OUTPUT="65536")
    d = Daemon(stratad_bin, tmp_path, env=env)
    try:
        slow = d.connect()
        slow.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        fast = d.connect()
        request = b'{"execute":"query-commands"}\n' * 200
        dropped = False
        start = time.monotonic()
        # Pipeline requests without reading; the daemon must stay
        # responsive to others and eventually disconnect this client.
        while time.monotonic() - start < 20:
            try:
                slow.sock.settimeout(1)
                slow.sock.sendall(request)
            except (BrokenPipeError, ConnectionResetError, socket.timeout):
                dropped = True
                break
            t0 = time.monotonic()
            assert fast.execute("query-version", id=1)["id"] == 1
            assert time.monotonic() - t0 < 2
        assert dropped
        # Dropped, not merely ignored: what was queued drains, then EOF.
        slow.sock.settimeout(5)
        try:
            while slow.sock.recv(1 << 20):
                pass
        except ConnectionResetError:
            pass
        assert d.proc.poll() is None
        assert fast.execute("query-version", id=2)["id"] == 2
    finally:
        d.stop()


def test_pretty_monitor(stratad_bin, tmp_path):
    path = str(tmp_path / "p.sock")
    d = Daemon(stratad_bin, tmp_path, monitor=False, args=[
        "--chardev", f"socket,path={path},server=on,wait=off,id=p",
        "--monitor", "chardev=p,pretty=on"])
    try:
        from qmp_util import wait_for_path
        wait_for_path(path, d.proc)
        s = socket.socket(socket.AF_UNIX)
        s.connect(path)
        s.settimeout(5)
        data = b""
        while b"\r\n" not in data:
            data += s.recv(4096)
        assert data.startswith(b'{\n    "QMP": {\n')
        s.close()
    finally:
        d.stop()
