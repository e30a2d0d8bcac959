# SPDX-License-Identifier: BSD-3-Clause
"""strata-ctl stream, jobs and job: start a stream, list and watch it,
change its speed, and the errors a user sees."""
import json
import subprocess

from conftest import run
from qmp_util import Daemon
from test_job_stream import backing_chain, blockdevs, make_chain, same_content


def chain_daemon(stratad_bin, strata_ctl, tmp_path):
    """A daemon serving a fresh chain, and strata-ctl pointed at it."""
    d = tmp_path / "c"
    make_chain(d)
    dm = Daemon(stratad_bin, tmp_path, blockdevs(d, False))

    def ctl(*args, check=True):
        return run([strata_ctl, "-s", dm.qmp_path, *args], check=check)

    return d, dm, ctl


def test_stream_watch_and_rate(stratad_bin, strata_ctl, tmp_path):
    d, dm, ctl = chain_daemon(stratad_bin, strata_ctl, tmp_path)
    try:
        out = ctl("stream", "top", "--speed", "1M").stdout
        assert out == "started job 'stream-top' streaming into 'top'\n"
        table = ctl("jobs").stdout
        assert "stream-top" in table and "stream" in table
        assert "1 MiB/s" in table
        listed = json.loads(ctl("--json", "jobs").stdout)
        assert listed[0]["device"] == "stream-top"
        assert listed[0]["speed"] == 1 << 20
        err = ctl("stream", "top", check=False)
        assert err.returncode == 1
        assert "Node 'top' is busy: block device is in use by block job: " \
            "stream" in err.stderr
        ctl("job", "pause", "stream-top")
        assert json.loads(ctl("--json", "jobs").stdout)[0]["paused"]
        ctl("job", "resume", "stream-top")
        # Fast enough to end soon, limited so that the watch below sees
        # the job before it is gone (unlimited, it can end first).
        ctl("job", "set-speed", "stream-top", "4M")
        watch = ctl("jobs", "--watch", "0.1").stdout
        assert "stream-top" in watch and "ETA" in watch
        assert ctl("--json", "jobs").stdout.strip() == "[]"
        bad = ctl("job", "cancel", "nope", check=False)
        assert bad.returncode == 1 and "Job not found" in bad.stderr
    finally:
        dm.stop()
    assert backing_chain(d / "top.qcow2") == [("top.qcow2", None, None)]


def test_stream_adaptive(stratad_bin, strata_ctl, tmp_path):
    """--adaptive asks for adaptive-speed with --speed as the ceiling; the
    table shows the rate in force."""
    d, dm, ctl = chain_daemon(stratad_bin, strata_ctl, tmp_path)
    try:
        ctl("stream", "top", "--speed", "2M", "--adaptive")
        job = json.loads(ctl("--json", "jobs").stdout)[0]
        assert job["adaptive-speed"] is True and job["speed"] == 2 << 20
        assert 0 < job["current-speed"] <= 2 << 20
        assert "/s adaptive" in ctl("jobs").stdout
        ctl("job", "set-speed", "stream-top", "64M")
        assert "stream-top" in ctl("jobs", "--watch", "0.1").stdout
    finally:
        dm.stop()
    assert backing_chain(d / "top.qcow2") == [("top.qcow2", None, None)]
    same_content(type("P", (), {"dir": d})())
