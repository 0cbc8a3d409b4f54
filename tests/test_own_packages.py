"""The generic top-level names resolve to this distribution, and a shadow is named clearly."""

import subprocess
import sys
from pathlib import Path

from swarmtrain.own_packages import OWN_PACKAGES, home, shadowing_problems, where

ROOT = Path(__file__).resolve().parents[1]


def test_every_name_resolves_to_this_checkout():
    assert home() == ROOT
    assert {name: where(name) for name in OWN_PACKAGES} == {name: ROOT / name for name in OWN_PACKAGES}
    assert shadowing_problems() == []


def test_a_shadowing_module_stops_the_cli_with_its_path(tmp_path):
    # A stray node.py in the working directory comes first on sys.path for `python -m`.
    (tmp_path / "node.py").write_text("raise SystemExit('the shadow must not even be imported')\n")
    out = subprocess.run([sys.executable, "-m", "swarmtrain", "--version"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=60,
                         env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)})
    assert out.returncode == 2, out.stdout + out.stderr
    assert f"'import node' loads {tmp_path / 'node.py'}" in out.stderr
    assert "not swarmtrain's" in out.stderr and "the shadow must not" not in out.stderr
