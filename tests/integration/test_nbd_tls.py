# SPDX-License-Identifier: BSD-3-Clause
"""NBD over TLS: x509 and PSK credentials, authorization, and the
refusals, with real clients (nbdinfo, nbdcopy, qemu-img, qemu-io) and
side by side with qemu-storage-daemon started with the same command
line.  Certificates and keys are made in the test (tls_util)."""
import json
import os
import struct
import subprocess

import pytest

from conftest import binary, require
from nbd_util import (IHAVEOPT, OPT_GO, OPT_LIST, OPT_STARTTLS,
                      OPT_STRUCTURED_REPLY, RawClient,
                      raw_blockdev, start_server)
from qcow2_util import qemu_check
from qmp_util import Daemon, QmpError, wait_for_path
from tls_util import CLIENT_DN, Pki

MiB = 1 << 20
REP_ERR_TLS_REQD = (1 << 31) + 5

KINDS = ["strata", "qsd"]


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    for tool in ("certtool", "psktool", "nbdinfo", "nbdcopy"):
        require(tool)
    return Pki(tmp_path_factory.mktemp("tls"))


def disk(tmp_path, size=4 * MiB):
    path = tmp_path / "disk.raw"
    with open(path, "wb") as f:
        for i in range(size // 65536):
            f.write(bytes([(i * 7 + 3) & 0xff]) * 65536)
    return path


def serve(kind, tmp_path, objects, server_opts):
    """kind serving disk.raw as export "d", writable, with --object
    arguments and the extra --nbd-server options."""
    path = disk(tmp_path)
    pre = []
    for o in objects:
        pre += ["--object", o]
    srv = start_server(kind, tmp_path, [raw_blockdev(str(path))],
                       [{"type": "nbd", "id": "e0", "node-name": "disk",
                         "name": "d", "writable": True}],
                       server_opts=server_opts, pre_args=pre,
                       list_exports_first=False)
    srv.path = path
    return srv


def x509_server(kind, tmp_path, pki, authz=None):
    objs = [f"tls-creds-x509,id=tls0,dir={pki.server_dir},endpoint=server"]
    opts = "tls-creds=tls0"
    if authz:
        objs.append(authz)
        opts += ",tls-authz=auth0"
    return serve(kind, tmp_path, objs, opts)


def psk_server(kind, tmp_path, pki):
    return serve(kind, tmp_path,
                 [f"tls-creds-psk,id=tls0,dir={pki.psk_dir},endpoint=server"],
                 "tls-creds=tls0")


def x509_uri(srv, certs):
    return f"nbds+unix:///d?socket={srv.sock}&tls-certificates={certs}"


def psk_uri(srv, psk_dir):
    return (f"nbds+unix://alice@/d?socket={srv.sock}"
            f"&tls-psk-file={psk_dir}/keys.psk")


def nbdinfo(uri):
    return subprocess.run(["nbdinfo", "--json", uri], capture_output=True,
                          text=True, timeout=60)


def log_of(srv, tmp_path):
    return (tmp_path / f"{srv.kind}.log").read_text()


# ---- real clients read and write over TLS ----

@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("creds", ["x509", "psk"])
def test_nbdinfo_and_nbdcopy_both_ways(tmp_path, pki, creds, kind):
    srv = (x509_server if creds == "x509" else psk_server)(
        kind, tmp_path, pki)
    try:
        uri = (x509_uri(srv, pki.client_dir) if creds == "x509"
               else psk_uri(srv, pki.psk_dir))
        r = nbdinfo(uri)
        assert r.returncode == 0, r.stderr
        info = json.loads(r.stdout)
        assert info["protocol"] == "newstyle-fixed"
        assert info["TLS"] is True
        assert info["exports"][0]["export-size"] == 4 * MiB
        # Out of the server...
        out = tmp_path / "out.raw"
        subprocess.run(["nbdcopy", uri, str(out)], check=True, timeout=60)
        assert out.read_bytes() == srv.path.read_bytes()
        # ...and into it.
        src = tmp_path / "src.raw"
        src.write_bytes(os.urandom(4 * MiB))
        subprocess.run(["nbdcopy", str(src), uri], check=True, timeout=60)
    finally:
        srv.stop()
    assert srv.path.read_bytes() == src.read_bytes()


def qemu_client_args(pki, srv, creds):
    if creds == "x509":
        obj = (f"tls-creds-x509,id=tc,dir={pki.client_dir},"
               "endpoint=client")
        extra = ",tls-hostname=localhost"
    else:
        obj = (f"tls-creds-psk,id=tc,dir={pki.psk_dir},endpoint=client,"
               "username=alice")
        extra = ""
    opts = (f"driver=nbd,server.type=unix,server.path={srv.sock},"
            f"export=d,tls-creds=tc{extra}")
    return ["--object", obj, "--image-opts", opts]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("creds", ["x509", "psk"])
def test_qemu_io_and_qemu_img(tmp_path, pki, creds, kind):
    srv = (x509_server if creds == "x509" else psk_server)(
        kind, tmp_path, pki)
    try:
        args = qemu_client_args(pki, srv, creds)
        subprocess.run(["qemu-io"] + args[:2] + [
            "-c", "write -P 0xa5 1M 64k", "-c", "read -P 0xa5 1M 64k"]
            + args[2:], check=True, capture_output=True, timeout=60)
        info = subprocess.run(["qemu-img", "info", "--output=json"] + args,
                              check=True, capture_output=True, text=True,
                              timeout=60).stdout
        assert json.loads(info)["virtual-size"] == 4 * MiB
        out = tmp_path / "copy.raw"
        subprocess.run(["qemu-img", "convert", "-O", "raw"] + args +
                       [str(out)], check=True, capture_output=True,
                       timeout=60)
    finally:
        srv.stop()
    data = srv.path.read_bytes()
    assert data[MiB:MiB + 65536] == b"\xa5" * 65536
    assert out.read_bytes() == data


# ---- refusals: each client fails, and strata and qsd agree ----

def refusal_cases(pki, srv):
    """(name, uri) of clients that must not get in."""
    return [
        ("plaintext", f"nbd+unix:///d?socket={srv.sock}"),
        ("other-ca", x509_uri(srv, pki.client_dir_other_ca)),
        ("expired", x509_uri(srv, pki.client_dir_expired)),
    ]


@pytest.mark.parametrize("kind", KINDS)
def test_x509_refusals(tmp_path, pki, kind):
    srv = x509_server(kind, tmp_path, pki)
    try:
        ok = nbdinfo(x509_uri(srv, pki.client_dir))
        assert ok.returncode == 0, ok.stderr
        for name, uri in refusal_cases(pki, srv):
            r = nbdinfo(uri)
            assert r.returncode != 0, name
            assert "export-size" not in r.stdout, name
            if name == "plaintext":
                # The server answers GO with TLS_REQD; libnbd reports it.
                assert "Operation not supported" in r.stderr, r.stderr
            else:
                assert "gnutls" in r.stderr or "TLS" in r.stderr, r.stderr
    finally:
        srv.stop()
    log = log_of(srv, tmp_path)
    # The server names why it dropped each client (QEMU's texts): the
    # client with a certificate from another CA does not offer it (the
    # server asked for ours), the expired one is not trusted.
    assert "Verify failed: No certificate was found." in log
    assert "The certificate is not trusted" in log


@pytest.mark.parametrize("kind", KINDS)
def test_psk_wrong_key_refused(tmp_path, pki, kind):
    srv = psk_server(kind, tmp_path, pki)
    try:
        assert nbdinfo(psk_uri(srv, pki.psk_dir)).returncode == 0
        r = nbdinfo(psk_uri(srv, pki.psk_dir_wrong))
        assert r.returncode != 0
        assert "export-size" not in r.stdout
        assert "gnutls" in r.stderr, r.stderr
    finally:
        srv.stop()


@pytest.mark.parametrize("kind", KINDS)
def test_authz(tmp_path, pki, kind):
    """authz-simple: only the identity named gets in; the certificate's
    distinguished name is the identity."""
    srv = x509_server(kind, tmp_path, pki,
                      authz="authz-simple,id=auth0,identity=CN=nobody")
    try:
        r = nbdinfo(x509_uri(srv, pki.client_dir))
        assert r.returncode != 0 and "export-size" not in r.stdout
    finally:
        srv.stop()
    assert (f"TLS x509 authz check for {CLIENT_DN} is denied"
            in log_of(srv, tmp_path))
    dn = CLIENT_DN.replace(",", ",,")
    srv = x509_server(kind, tmp_path, pki,
                      authz=f"authz-simple,id=auth0,identity={dn}")
    try:
        r = nbdinfo(x509_uri(srv, pki.client_dir))
        assert r.returncode == 0, r.stderr
    finally:
        srv.stop()


def test_authz_list_and_listfile(tmp_path, pki):
    """authz-list with a glob rule; authz-listfile reloads its file when
    it changes, for the next connection."""
    srv = x509_server("strata", tmp_path, pki, authz=(
        "authz-list,id=auth0,policy=deny,rules.0.match=*CN=client.*,"
        "rules.0.policy=allow,rules.0.format=glob"))
    try:
        assert nbdinfo(x509_uri(srv, pki.client_dir)).returncode == 0
    finally:
        srv.stop()
    rules = tmp_path / "authz.json"
    rules.write_text(json.dumps({"policy": "deny", "rules": []}))
    srv = x509_server("strata", tmp_path, pki, authz=(
        f"authz-listfile,id=auth0,filename={rules},refresh=on"))
    try:
        assert nbdinfo(x509_uri(srv, pki.client_dir)).returncode != 0
        rules.write_text(json.dumps({"policy": "deny", "rules": [
            {"match": CLIENT_DN, "policy": "allow"}]}))
        assert nbdinfo(x509_uri(srv, pki.client_dir)).returncode == 0
        rules.write_text("not json")
        assert nbdinfo(x509_uri(srv, pki.client_dir)).returncode != 0
    finally:
        srv.stop()


@pytest.mark.parametrize("kind", KINDS)
def test_options_before_starttls(tmp_path, pki, kind):
    """Every option but STARTTLS gets NBD_REP_ERR_TLS_REQD with QEMU's
    text, and nothing about the export is sent; EXPORT_NAME, which
    cannot be refused politely, ends the connection."""
    srv = x509_server(kind, tmp_path, pki)
    try:
        c = RawClient(srv.sock)
        try:
            c.greeting()
            seen = b""
            for opt, data in [(OPT_LIST, b""), (OPT_STRUCTURED_REPLY, b""),
                              (OPT_GO, RawClient.info_data("d"))]:
                replies = c.option(opt, data)
                assert len(replies) == 1
                _, rtype, msg = replies[0]
                assert rtype == REP_ERR_TLS_REQD
                assert msg == (f"Option 0x{opt:x} not permitted before "
                               "TLS").encode()
                seen += msg
            assert b"d\x00" not in seen
            # STARTTLS with a payload: refused and dropped.
            c.send_option(OPT_STARTTLS, b"x")
            _, rtype, _ = c.recv_option_reply()
            assert rtype & (1 << 31)
            with pytest.raises((ConnectionError, OSError, EOFError,
                                struct.error, AssertionError)):
                c.send_option(OPT_LIST)
                c.recv_option_reply()
        finally:
            c.close()
        c = RawClient(srv.sock)
        try:
            c.greeting()
            # EXPORT_NAME before TLS: the connection ends, no data.
            c.send(struct.pack(">QII", IHAVEOPT, 1, 1) + b"d")
            try:
                assert c.sock.recv(4096) == b""
            except ConnectionResetError:
                pass
        finally:
            c.close()
    finally:
        srv.stop()


# ---- objects: QMP errors match qemu-storage-daemon ----

def object_cases(pki):
    return [
        {"qom-type": "tls-creds-x509", "id": "t0", "dir": pki.server_dir,
         "endpoint": "server"},
        {"qom-type": "tls-creds-x509", "id": "t0", "dir": pki.server_dir,
         "endpoint": "server"},
        {"qom-type": "tls-creds-x509", "id": "t1", "dir": "/nonexistent",
         "endpoint": "server"},
        {"qom-type": "tls-creds-x509", "id": "t2", "dir": pki.client_dir,
         "endpoint": "server"},
        {"qom-type": "tls-creds-x509", "id": "t3", "dir": pki.server_dir,
         "endpoint": "bogus"},
        {"qom-type": "tls-creds-x509", "id": "t4", "endpoint": "server"},
        {"qom-type": "tls-creds-x509", "id": "t5", "dir": pki.server_dir,
         "frob": 1},
        {"qom-type": "tls-creds-x509", "id": "t6",
         "dir": pki.client_dir_expired, "endpoint": "client"},
        {"qom-type": "tls-creds-psk", "id": "p0", "dir": pki.psk_dir,
         "endpoint": "server"},
        {"qom-type": "tls-creds-psk", "id": "p1", "dir": "/nonexistent",
         "endpoint": "server"},
        {"qom-type": "tls-creds-psk", "id": "pc", "dir": pki.psk_dir,
         "endpoint": "client", "username": "alice"},
        {"qom-type": "nosuch", "id": "x"},
        {"qom-type": "secret", "id": "s0", "data": "hello"},
        {"qom-type": "secret", "id": "s1", "data": "aGVsbG8=",
         "format": "base64"},
        {"qom-type": "secret", "id": "s2", "data": "!!!",
         "format": "base64"},
        {"qom-type": "secret", "id": "s3"},
        {"qom-type": "secret", "id": "s4", "data": "a",
         "file": "/etc/hostname"},
        {"qom-type": "secret", "id": "s5", "file": "/nonexistent"},
        {"qom-type": "authz-simple", "id": "a0", "identity": "CN=x"},
        {"qom-type": "authz-simple", "id": "a1"},
        {"qom-type": "authz-list", "id": "a2", "policy": "deny",
         "rules": [{"match": "CN=*", "policy": "allow", "format": "glob"}]},
        {"qom-type": "authz-list", "id": "a3"},
        {"qom-type": "iothread", "id": "io0", "poll-max-ns": 1000},
        {"qom-type": "secret", "id": "bad id", "data": "x"},
        {"id": "q"},
        {"qom-type": "secret"},
    ]


def run_objects(kind, tmp_path, pki):
    prog = binary("stratad") if kind == "strata" else "qemu-storage-daemon"
    sock = str(tmp_path / f"{kind}-n.sock")
    out = []
    with Daemon(prog, tmp_path, [], name=kind) as d:
        q = d.connect()
        for args in object_cases(pki):
            out.append(q.execute("object-add", args).get("error"))
        for args in [{"id": "nosuch"}, {"id": "s0"}, {"id": "s0"}]:
            out.append(q.execute("object-del", args).get("error"))
        addr = {"type": "unix", "data": {"path": sock}}
        for creds in ["nosuch", "s1", "pc", "p0"]:
            out.append(q.execute("nbd-server-start", {
                "addr": addr, "tls-creds": creds}).get("error"))
            q.execute("nbd-server-stop")
        # Credentials in use may be deleted (the server keeps them).
        q.cmd("nbd-server-start", {"addr": addr, "tls-creds": "t0"})
        out.append(q.execute("object-del", {"id": "t0"}).get("error"))
        q.cmd("nbd-server-stop")
        # A client node: missing or wrong credentials.
        for creds, extra in [("nosuch", {}), ("p0", {}), ("t0", {}),
                             ("s1", {})]:
            out.append(q.execute("blockdev-add", dict({
                "driver": "nbd", "node-name": "n0",
                "server": {"type": "unix", "path": sock}, "export": "d",
                "tls-creds": creds}, **extra)).get("error"))
        names = sorted(o["name"] for o in q.cmd("qom-list",
                                                {"path": "/objects"}))
        out.append(names)
    return out


def test_object_errors_match_qsd(tmp_path, pki):
    strata = run_objects("strata", tmp_path, pki)
    qsd = run_objects("qsd", tmp_path, pki)
    assert strata == qsd
    # Equal is not enough (both could accept everything): the good
    # objects were created and the bad ones refused, with QEMU's texts.
    ok = [i for i, e in enumerate(strata[:len(object_cases(pki))])
          if e is None]
    assert ok == [0, 8, 10, 12, 13, 18, 20, 21, 22]
    assert strata[1]["desc"] == ("attempt to add duplicate property 't0' "
                                 "to object (type 'container')")
    assert strata[2]["desc"] == ("Unable to access credentials "
                                 "/nonexistent/ca-cert.pem: No such file "
                                 "or directory")
    assert strata[7]["desc"].endswith("has expired")
    n = len(object_cases(pki))
    assert strata[n + 3]["desc"] == "No TLS credentials with id 'nosuch'"
    assert strata[n + 5]["desc"] == ("Expected TLS credentials for a "
                                     "server endpoint")
    assert strata[n + 7] is None          # object-del of creds in use


# ---- the nbd client driver over TLS: stream a template ----

@pytest.mark.parametrize("creds", ["x509", "psk"])
def test_stream_template_over_tls(tmp_path, pki, creds):
    """A template on a TLS-only stratad, a local overlay on another
    stratad whose backing is the nbd driver with tls-creds: reads go
    through, block-stream copies it all, and the result equals the
    template."""
    tsrv = (x509_server if creds == "x509" else psk_server)(
        "strata", tmp_path, pki)
    top = tmp_path / "top.qcow2"
    try:
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(top),
                        str(4 * MiB)], check=True)
        if creds == "x509":
            obj = (f"tls-creds-x509,id=tc,dir={pki.client_dir},"
                   "endpoint=client")
            extra = {"tls-hostname": "localhost"}
        else:
            obj = (f"tls-creds-psk,id=tc,dir={pki.psk_dir},endpoint=client,"
                   "username=alice")
            extra = {}
        backing = {"driver": "raw", "node-name": "tmpl", "file": dict({
            "driver": "nbd", "node-name": "tmpl-nbd",
            "server": {"type": "unix", "path": tsrv.sock}, "export": "d",
            "tls-creds": "tc"}, **extra)}
        sock = str(tmp_path / "top.sock")
        d = Daemon(binary("stratad"), tmp_path, [
            "--object", obj,
            "--blockdev", json.dumps(backing),
            "--blockdev", json.dumps({
                "driver": "qcow2", "node-name": "top", "backing": "tmpl",
                "file": {"driver": "file", "filename": str(top)}}),
            "--nbd-server", f"addr.type=unix,addr.path={sock}",
            "--export", "type=nbd,id=e0,node-name=top,name=top",
        ], name="overlay")
        try:
            wait_for_path(sock, d.proc)
            q = d.connect()
            out = tmp_path / "through.raw"
            subprocess.run(["nbdcopy", f"nbd+unix:///top?socket={sock}",
                            str(out)], check=True, timeout=60)
            assert out.read_bytes() == tsrv.path.read_bytes()
            q.cmd("block-stream", {"job-id": "s1", "device": "top"})
            while True:
                ev = q.wait_event(timeout=60)
                if ev["event"] == "BLOCK_JOB_COMPLETED":
                    assert "error" not in ev["data"], ev
                if (ev["event"] == "JOB_STATUS_CHANGE" and
                        ev["data"]["status"] == "null"):
                    break
        finally:
            d.stop()
    finally:
        tsrv.stop()
    # The template server is gone: the overlay holds everything.
    qemu_check(top)
    out = tmp_path / "after.raw"
    subprocess.run(["qemu-img", "convert", "-O", "raw", str(top), str(out)],
                   check=True)
    assert out.read_bytes() == tsrv.path.read_bytes()


def test_drip_during_starttls_dropped(tmp_path, pki):
    """The handshake deadline covers STARTTLS and the TLS handshake: a
    client that sends its ClientHello a byte at a time is dropped when
    the deadline passes, and a good client still gets in."""
    import socket
    import time
    srv = serve("strata", tmp_path, [
        f"tls-creds-x509,id=tls0,dir={pki.server_dir},endpoint=server"],
        "tls-creds=tls0,handshake-max-seconds=1")
    try:
        c = RawClient(srv.sock)
        try:
            c.greeting()
            c.send_option(OPT_STARTTLS)
            _, rtype, _ = c.recv_option_reply()
            assert rtype == 1      # ACK: the TLS handshake starts
            hello = bytes.fromhex("16030100a5010000a10303") + b"\x01" * 64
            t0 = time.monotonic()
            closed = None
            for b in hello:
                try:
                    c.sock.send(bytes([b]))
                except OSError:
                    closed = time.monotonic() - t0
                    break
                c.sock.settimeout(0.2)
                try:
                    if c.sock.recv(1) == b"":
                        closed = time.monotonic() - t0
                        break
                except socket.timeout:
                    pass
                except OSError:
                    closed = time.monotonic() - t0
                    break
            assert closed is not None and closed < 5, closed
        finally:
            c.close()
        assert nbdinfo(x509_uri(srv, pki.client_dir)).returncode == 0
    finally:
        srv.stop()
