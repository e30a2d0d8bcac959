# SPDX-License-Identifier: BSD-3-Clause
"""strata-ctl: the human CLI over stratad's QMP socket."""
import json
import subprocess

import pytest

from conftest import run
from qmp_util import Daemon


@pytest.fixture
def daemon(stratad_bin, tmp_path):
    d = Daemon(stratad_bin, tmp_path)
    yield d
    d.stop()


def ctl(strata_ctl, daemon, *args, check=True):
    return run([strata_ctl, "-s", daemon.qmp_path, *args], check=check)


def test_help(strata_ctl):
    out = run([strata_ctl, "--help"]).stdout
    for sub in ("qmp", "nodes", "exports", "events"):
        assert f"\n  {sub} " in out
    for sub in ("qmp", "nodes", "exports", "events"):
        out = run([strata_ctl, sub, "--help"]).stdout
        assert out.startswith("Usage: strata-ctl")
        assert sub in out.splitlines()[0]


def test_missing_socket_is_a_clear_error(strata_ctl, tmp_path):
    path = tmp_path / "nope.sock"
    proc = run([strata_ctl, "-s", str(path), "nodes"], check=False)
    assert proc.returncode == 1
    assert proc.stderr == (
        f"strata-ctl: Cannot connect to {path}: No such file or directory "
        "(is stratad running with --monitor on this socket? use -s SOCKET)\n")


def test_unknown_command(strata_ctl):
    proc = run([strata_ctl, "frobnicate"], check=False)
    assert proc.returncode == 1
    assert "unknown command 'frobnicate'" in proc.stderr


def test_qmp_raw(strata_ctl, daemon):
    out = ctl(strata_ctl, daemon, "--json", "qmp", "query-version").stdout
    reply = json.loads(out)
    assert reply["return"]["package"].startswith("strata ")
    proc = ctl(strata_ctl, daemon, "qmp", "blockdev-del",
               '{"node-name": "nosuch"}', check=False)
    assert proc.returncode == 1
    assert json.loads(proc.stdout) == {"error": {
        "class": "GenericError",
        "desc": "Failed to find node with node-name='nosuch'"}}
    proc = ctl(strata_ctl, daemon, "qmp", "query-version", "[1]",
               check=False)
    assert proc.returncode == 1
    assert "arguments must be a JSON object" in proc.stderr


def test_empty_tables(strata_ctl, daemon):
    out = ctl(strata_ctl, daemon, "nodes").stdout
    assert out.split() == ["NODE", "DRIVER", "FILE", "SIZE", "USED", "RO",
                           "DEPTH", "THRESHOLD"]
    assert ctl(strata_ctl, daemon, "--json", "nodes").stdout.strip() == "[]"
    out = ctl(strata_ctl, daemon, "exports").stdout
    assert out.split() == ["ID", "TYPE", "NODE", "SHUTTING-DOWN"]
    assert ctl(strata_ctl, daemon, "--json", "exports").stdout.strip() == "[]"


def test_events_timeout(strata_ctl, daemon):
    proc = ctl(strata_ctl, daemon, "events", "--timeout", "1", check=False)
    assert proc.returncode == 2
    assert proc.stdout == ""


def test_socket_from_environment(strata_ctl, daemon):
    import os
    env = dict(os.environ, STRATA_SOCKET=daemon.qmp_path)
    proc = subprocess.run([strata_ctl, "--json", "qmp", "query-version"],
                          capture_output=True, text=True, env=env,
                          timeout=30)
    assert proc.returncode == 0, proc.stderr
    assert "return" in json.loads(proc.stdout)
