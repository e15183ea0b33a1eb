"""The runtime installs without the repository: `pip install .` gives `karmma-live` (and `python -m edge.live`)
with the flags of run_live.py, the shipped bundle, and no trainer, calibration or torch."""
# Tier: integration (CLIs in subprocesses; slow: pip install into a fresh venv).
from __future__ import annotations

import subprocess
import sys
import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.integration


def _flags(*command: str) -> str:
    """The options part of the command's --help (the usage line differs only by the program's name)."""
    res = subprocess.run([*command, "--help"], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    return res.stdout[res.stdout.index("options:"):]


def test_python_m_edge_live_and_its_cli_module_are_run_live_with_the_same_flags():
    flags = _flags(sys.executable, str(REPO / "run_live.py"))
    assert "--camera" in flags and "--demo" in flags
    assert _flags(sys.executable, "-m", "edge.live") == flags
    assert _flags(sys.executable, "-m", "edge.live.cli") == flags


@pytest.mark.slow
def test_pip_install_gives_karmma_live_which_runs_the_demo_outside_the_checkout(tmp_path):
    wheels, venv, elsewhere = tmp_path / "wheels", tmp_path / "venv", tmp_path / "elsewhere"
    elsewhere.mkdir()
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w",
                    str(wheels), str(REPO)], check=True, cwd=tmp_path, timeout=300)
    subprocess.run([sys._base_executable, "-m", "venv", str(venv)], check=True, timeout=120)
    wheel = next(wheels.glob("karmma_edge-*.whl"))
    subprocess.run([str(venv / "bin" / "pip"), "install", "-q", str(wheel)], check=True, timeout=900)
    python = venv / "bin" / "python"
    for absent in ("trainer", "calibration", "torch"):
        res = subprocess.run([str(python), "-c", f"import {absent}"], cwd=elsewhere, capture_output=True)
        assert res.returncode != 0, f"{absent} is installed with the runtime"
    res = subprocess.run([str(venv / "bin" / "karmma-live"), "--demo", "--fast", "--duration", "12"], cwd=elsewhere,
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert "segment accuracy" in res.stdout and "recording source" in res.stdout and "Traceback" not in res.stderr
