# SPDX-License-Identifier: BSD-3-Clause
"""strata-ctl threshold and alloc against a live stratad."""
import json
import os
import subprocess

from conftest import run
from thinp_util import MiB, image_daemon, qemu_io


def make_daemon(tmp_path):
    image = str(tmp_path / "img.qcow2")
    subprocess.run(["qemu-img", "create", "-f", "qcow2", image, "64M"],
                   check=True, capture_output=True)
    subprocess.run(["truncate", "-s", "8M", image], check=True)
    return image_daemon("strata", tmp_path, image)


def test_threshold_size_percent_and_clear(tmp_path, strata_ctl):
    d = make_daemon(tmp_path)
    try:
        q = d.connect()
        out = run([strata_ctl, "-s", d.qmp_path, "threshold", "proto0", "2M"])
        assert "2097152" in out.stdout
        info = q.cmd("query-block-allocation", {"node-name": "proto0"})[0]
        assert info["write-threshold"] == 2 * MiB
        # Percent of the current physical size (8 MiB), sent as bytes.
        out = run([strata_ctl, "-s", d.qmp_path, "--json", "threshold",
                   "proto0", "75%"])
        assert json.loads(out.stdout)["write-threshold"] == 6 * MiB
        assert q.cmd("query-block-allocation", {"node-name": "proto0"})[0][
            "write-threshold"] == 6 * MiB
        run([strata_ctl, "-s", d.qmp_path, "threshold", "proto0", "0"])
        assert q.cmd("query-block-allocation", {"node-name": "proto0"})[0][
            "write-threshold"] == 0
        bad = run([strata_ctl, "-s", d.qmp_path, "threshold", "nope", "1M"],
                  check=False)
        assert bad.returncode == 1 and "Device 'nope' not found" in bad.stderr
        bad = run([strata_ctl, "-s", d.qmp_path, "threshold", "proto0",
                   "150%"], check=False)
        assert bad.returncode == 1 and "invalid percentage" in bad.stderr
    finally:
        d.stop()


def test_alloc_table_and_json(tmp_path, strata_ctl):
    d = make_daemon(tmp_path)
    try:
        q = d.connect()
        q.cmd("block-set-write-threshold", {"node-name": "proto0",
                                            "write-threshold": 12 * MiB})
        # The image's end is the file's end (8 MiB): new clusters go after.
        qemu_io(d.nbd_uri, "write -P 1 0 1M")
        out = run([strata_ctl, "-s", d.qmp_path, "alloc"]).stdout
        lines = out.splitlines()
        assert lines[0].split() == ["NODE", "DRIVER", "CAPACITY",
                                    "ALLOCATION", "PHYSICAL", "FREE",
                                    "THRESHOLD"]
        rows = {l.split()[0]: l for l in lines[1:]}
        assert rows["fmt0"].split()[:3] == ["fmt0", "qcow2", "64"]
        assert rows["proto0"].rstrip().endswith("12 MiB")
        js = json.loads(run([strata_ctl, "-s", d.qmp_path, "--json", "alloc",
                             "proto0"]).stdout)
        assert len(js) == 1 and js[0]["node-name"] == "proto0"
        assert js[0]["physical"] == os.path.getsize(str(tmp_path /
                                                        "img.qcow2"))
        assert 9 * MiB <= js[0]["allocation"] <= js[0]["physical"]
        assert js[0]["wr_highest_offset"] == js[0]["allocation"]
        assert js[0]["write-threshold"] == 12 * MiB
    finally:
        d.stop()
