"""The session fixture in conftest.py stops a child a test leaked and names that test."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.procs import alive

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")

LEAKY = '''
import subprocess


def test_clean():
    subprocess.run(["true"], check=True)


def test_leaks():
    subprocess.Popen(["sleep", "57"])


def test_after():
    pass
'''


def test_a_leaked_child_is_stopped_and_named(tmp_path):
    shutil.copy(ROOT / "tests" / "conftest.py", tmp_path / "conftest.py")
    (tmp_path / "test_leaky.py").write_text(LEAKY)
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
        cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=120,
    )
    assert out.returncode == 1, out.stdout + out.stderr
    assert "3 passed, 1 error" in out.stdout
    match = re.search(r"pid (\d+) \(sleep 57\), first seen after test_leaky.py::test_leaks", out.stdout)
    assert match, out.stdout
    assert not alive(int(match.group(1)))
