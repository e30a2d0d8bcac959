# SPDX-License-Identifier: BSD-3-Clause
"""stratad's command line: qemu-storage-daemon's syntax and error texts,
pidfile, signals and quit with full cleanup."""
import os
import signal
import subprocess
import time

import pytest

from conftest import run
from qmp_util import Daemon, QmpClient, wait_for_path


def stratad_fails(stratad_bin, *args):
    proc = run([stratad_bin, *args], check=False, timeout=20)
    assert proc.returncode == 1, proc
    return proc.stderr


@pytest.mark.parametrize("args,message", [
    (["--bogus"], "stratad: unrecognized option '--bogus'\n"),
    (["--blockdev"], "stratad: option '--blockdev' requires an argument\n"),
    (["--pidfile"], "stratad: option '--pidfile' requires an argument\n"),
    (["extra"], "stratad: extra: Unexpected argument\n"),
    (["--monitor", "chardev=nosuch"],
     "stratad: --monitor chardev=nosuch: chardev \"nosuch\" not found\n"),
    (["--chardev", "socket,path=/tmp/x.sock,server=on,wait=off"],
     "stratad: --chardev socket,path=/tmp/x.sock,server=on,wait=off: "
     "chardev: no id specified\n"),
    (["--chardev", "bogus,id=c"],
     "stratad: --chardev bogus,id=c: 'bogus' is not a valid char driver "
     "name\n"),
    (["--nbd-server", "addr.type=unix"],
     "stratad: --nbd-server addr.type=unix: Parameter 'addr.path' is "
     "missing\n"),
    (["--nbd-server", "addr.type=inet,addr.host=127.0.0.1"],
     "stratad: --nbd-server addr.type=inet,addr.host=127.0.0.1: Parameter "
     "'addr.port' is missing\n"),
    (["--export", "type=nbd,node-name=x"],
     "stratad: --export type=nbd,node-name=x: Parameter 'id' is missing\n"),
    (["--blockdev", "driver=nosuch,node-name=x"],
     "stratad: --blockdev driver=nosuch,node-name=x: Parameter 'driver' "
     "does not accept value 'nosuch'\n"),
])
def test_command_line_errors(stratad_bin, args, message):
    assert stratad_fails(stratad_bin, *args) == message


def test_blockdev_needs_node_name(stratad_bin, tmp_path):
    img = tmp_path / "a.raw"
    img.write_bytes(b"\0" * 65536)
    arg = f"driver=file,filename={img}"
    assert stratad_fails(stratad_bin, "--blockdev", arg) == (
        f"stratad: --blockdev {arg}: 'node-name' must be specified for the "
        "root node\n")


def test_blockdev_missing_file(stratad_bin):
    arg = "driver=file,filename=/nonexistent/x.img,node-name=x"
    assert stratad_fails(stratad_bin, "--blockdev", arg) == (
        f"stratad: --blockdev {arg}: Could not open '/nonexistent/x.img': "
        "No such file or directory\n")


def test_export_needs_nbd_server(stratad_bin, tmp_path):
    img = tmp_path / "a.raw"
    img.write_bytes(b"\0" * 65536)
    err = stratad_fails(stratad_bin, "--blockdev",
                        f"driver=file,filename={img},node-name=f",
                        "--export", "type=nbd,id=e,node-name=f")
    assert err == ("stratad: --export type=nbd,id=e,node-name=f: NBD server "
                   "not running\n")


def test_duplicate_chardev_and_monitor(stratad_bin, tmp_path):
    s = tmp_path / "c.sock"
    arg = f"socket,path={s},server=on,wait=off,id=c"
    err = stratad_fails(stratad_bin, "--chardev", arg, "--chardev", arg)
    assert err.endswith("Duplicate ID 'c' for chardev\n")
    err = stratad_fails(stratad_bin, "--chardev", arg, "--monitor", "c",
                        "--monitor", "chardev=c")
    assert err == "stratad: --monitor chardev=c: Device 'c' is in use\n"
    # A failed start leaves no socket behind.
    assert not s.exists()


def test_pidfile_error(stratad_bin):
    err = stratad_fails(stratad_bin, "--pidfile", "/nonexistent/dir/p")
    assert err == ("stratad: cannot create PID file: Could not create "
                   "'/nonexistent/dir/p': No such file or directory\n")


def test_help_and_version(stratad_bin):
    out = run([stratad_bin, "--help"]).stdout
    assert out.startswith("Usage: stratad [options]\n")
    for opt in ("--blockdev", "--chardev", "--daemonize", "--export",
                "--monitor", "--nbd-server", "--pidfile"):
        assert opt in out
    out = run([stratad_bin, "--version"]).stdout
    assert out.startswith("stratad version ")
    assert run([stratad_bin, "-V"]).stdout == out
    assert run([stratad_bin, "-h"]).stdout.startswith("Usage:")


def start(stratad_bin, tmp_path, *extra):
    pidfile = tmp_path / "stratad.pid"
    d = Daemon(stratad_bin, tmp_path, ["--pidfile", str(pidfile), *extra])
    wait_for_path(str(pidfile), d.proc)
    # The pidfile is written after every option is processed.
    deadline = time.monotonic() + 5
    while pidfile.read_text() == "" and time.monotonic() < deadline:
        time.sleep(0.02)
    assert pidfile.read_text() == f"{d.proc.pid}\n"
    return d, pidfile


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_cleans_up(stratad_bin, tmp_path, sig):
    d, pidfile = start(stratad_bin, tmp_path)
    try:
        c = d.connect()
        c.cmd("query-version")
        d.proc.send_signal(sig)
        assert d.wait(10) == 0
        assert not pidfile.exists()
        assert not os.path.exists(d.qmp_path)
    finally:
        d.stop()


def test_quit_replies_then_exits(stratad_bin, tmp_path):
    second = tmp_path / "second.sock"
    d, pidfile = start(
        stratad_bin, tmp_path, "--chardev",
        f"socket,path={second},server=on,wait=off,id=m1",
        "--monitor", "chardev=m1")
    try:
        other = QmpClient(str(second))
        c = d.connect()
        assert c.execute("quit", id=7) == {"return": {}, "id": 7}
        assert d.wait(10) == 0
        with pytest.raises(ConnectionError):
            c.recv(2)
        with pytest.raises(ConnectionError):
            other.recv(2)
        other.close()
        for path in (pidfile, second, d.qmp_path):
            assert not os.path.exists(path)
    finally:
        d.stop()


def test_several_monitors(stratad_bin, tmp_path):
    socks = [tmp_path / f"m{i}.sock" for i in range(3)]
    args = []
    for i, s in enumerate(socks):
        args += ["--chardev", f"socket,path={s},server=on,wait=off,id=c{i}",
                 "--monitor", f"chardev=c{i}"]
    d = Daemon(stratad_bin, tmp_path, args, monitor=False)
    try:
        for s in socks:
            wait_for_path(str(s), d.proc)
        clients = [QmpClient(str(s)) for s in socks]
        for c in clients:
            assert "qemu" in c.cmd("query-version")
            c.close()
    finally:
        d.stop()


def test_unused_chardev_removed_at_exit(stratad_bin, tmp_path):
    spare = tmp_path / "spare.sock"
    d = Daemon(stratad_bin, tmp_path, [
        "--chardev", f"socket,path={spare},server=on,wait=off,id=spare"])
    try:
        # The spare comes after the monitor on the command line.
        wait_for_path(str(spare), d.proc)
        d.proc.terminate()
        assert d.wait(10) == 0
        assert not spare.exists()
    finally:
        d.stop()


def test_daemonize(stratad_bin, tmp_path):
    sock = tmp_path / "d.sock"
    pidfile = tmp_path / "d.pid"
    proc = subprocess.run(
        [stratad_bin, "--daemonize", "--pidfile", str(pidfile),
         "--chardev", f"socket,path={sock},server=on,wait=off,id=m",
         "--monitor", "chardev=m"], capture_output=True, timeout=20)
    assert proc.returncode == 0, proc.stderr
    # The parent exits only once startup is complete.
    assert sock.exists() and pidfile.exists()
    pid = int(pidfile.read_text())
    try:
        c = QmpClient(str(sock))
        c.execute("quit")
        c.close()
        deadline = time.monotonic() + 10
        while os.path.exists(f"/proc/{pid}") and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not pidfile.exists()
    finally:
        if os.path.exists(f"/proc/{pid}"):
            os.kill(pid, signal.SIGKILL)


def test_daemonize_failure_exits_1(stratad_bin):
    proc = subprocess.run(
        [stratad_bin, "--daemonize", "--monitor", "chardev=nosuch"],
        capture_output=True, text=True, timeout=20)
    assert proc.returncode == 1
    assert 'chardev "nosuch" not found' in proc.stderr


def test_pidfile_locked_by_running_daemon(stratad_bin, tmp_path):
    d, pidfile = start(stratad_bin, tmp_path)
    try:
        err = stratad_fails(stratad_bin, "--pidfile", str(pidfile))
        assert err.startswith("stratad: cannot create PID file: Cannot lock "
                              "pid file: ")
        # The running daemon's pidfile is untouched.
        assert pidfile.read_text() == f"{d.proc.pid}\n"
    finally:
        d.stop()


def test_monitor_option_errors(stratad_bin, tmp_path):
    s = tmp_path / "m.sock"
    chardev = f"socket,path={s},server=on,wait=off,id=c"
    assert stratad_fails(stratad_bin, "--monitor", "mode=control") == (
        "stratad: --monitor mode=control: Parameter 'chardev' is missing\n")
    assert stratad_fails(stratad_bin, "--chardev", chardev, "--monitor",
                         "chardev=c,mode=readline") == (
        "stratad: --monitor chardev=c,mode=readline: Only QMP is supported\n")
    assert stratad_fails(stratad_bin, "--chardev", chardev, "--monitor",
                         "chardev=c,bogus=1") == (
        "stratad: --monitor chardev=c,bogus=1: Parameter 'bogus' is "
        "unexpected\n")
    assert stratad_fails(stratad_bin, "--chardev", chardev + ",bogus=1") == (
        f"stratad: --chardev {chardev},bogus=1: Invalid parameter 'bogus'\n")
