# SPDX-License-Identifier: BSD-3-Clause
"""Shared fixtures for strata's integration tests.

Binaries come from the build directory named by $STRATA_BUILD (default:
build/ at the top of the tree).  Area-specific helpers live in their own
modules (tests/integration/<area>_util.py).
"""
import os
import shutil
import subprocess

import pytest

TOP = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BUILD = os.path.abspath(os.environ.get("STRATA_BUILD", os.path.join(TOP, "build")))


def binary(name):
    """Path of one of strata's programs in the build directory."""
    for sub in (name, os.path.join("src", name, name)):
        path = os.path.join(BUILD, sub)
        if os.path.exists(path):
            return path
    raise FileNotFoundError(f"{name} not built in {BUILD}")


def run(cmd, check=True, input=None, timeout=120, env=None):
    """Runs a command, returning CompletedProcess with text stdout/stderr."""
    proc = subprocess.run(cmd, capture_output=True, text=True, input=input,
                          timeout=timeout, env=env)
    if check and proc.returncode != 0:
        raise AssertionError(
            f"{cmd} exited {proc.returncode}\nstdout:\n{proc.stdout}\n"
            f"stderr:\n{proc.stderr}")
    return proc


def require(tool):
    """Skips the test when an external tool is missing."""
    if shutil.which(tool) is None:
        pytest.skip(f"{tool} not installed")


@pytest.fixture
def strata_img():
    return binary("strata-img")


@pytest.fixture
def stratad_bin():
    return binary("stratad")


@pytest.fixture
def strata_ctl():
    return binary("strata-ctl")
