"""The Makefile's targets: `make demo` needs no Debian package, only `make test` installs them."""

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _dry_run(target: str) -> str:
    # -B: as on a fresh clone (every prerequisite out of date), -n: print, run nothing
    out = subprocess.run(["make", "-Bn", target], cwd=ROOT, capture_output=True, text=True, check=True)
    return out.stdout


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_demo_installs_no_debian_package_and_make_test_does():
    assert "system-deps.sh" not in _dry_run("demo")
    assert "qbank demo --serve" in _dry_run("demo")
    assert "system-deps.sh" in _dry_run("test")
