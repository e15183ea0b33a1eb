"""Training never loses work: a smoke benchmark killed (SIGKILL) mid-run and started again with the same arguments
resumes from its atomic checkpoints and ends with exactly the weights of an uninterrupted run."""
# Tier: integration (slow: a smoke benchmark killed mid-run and resumed).
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from conftest import DATA_ROOT, REPO  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.integration]


def _args(out: Path, cache: Path) -> list[str]:
    root = ["--data-root", str(DATA_ROOT)] if DATA_ROOT is not None else []
    return [sys.executable, "-m", "trainer", "benchmark", "--smoke", "--out", str(out), "--cache", str(cache), *root]


def _weights(out: Path) -> dict[str, dict]:
    """Every checkpoint's tensors (optimizer and scheduler states included), by file."""
    files = sorted(p for p in out.rglob("*.pt") if "tokens" not in p.parts)
    return {str(p.relative_to(out)): torch.load(p, map_location="cpu", weights_only=True) for p in files}


def _same(a, b) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return isinstance(b, (list, tuple)) and len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b


def test_smoke_training_killed_mid_run_resumes_to_identical_weights(tmp_path):
    cache = tmp_path / "cache"
    whole = subprocess.run(_args(tmp_path / "whole", cache), cwd=REPO, capture_output=True, text=True, timeout=300)
    assert whole.returncode == 0, whole.stderr[-2000:]

    out = tmp_path / "killed"
    proc = subprocess.Popen(_args(out, cache), cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    marker = out / "teacher" / "fusion.pt"  # the teacher's first fusion epoch is saved: epoch 2 and the students remain
    deadline = time.monotonic() + 240
    while not marker.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL and marker.exists()
    assert not (out / "results.json").exists(), "the run finished before it could be killed"
    assert all(isinstance(v, dict) for v in _weights(out).values())  # atomic writes: no torn checkpoint

    resumed = subprocess.run(_args(out, cache), cwd=REPO, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    want, got = _weights(tmp_path / "whole"), _weights(out)
    assert want.keys() == got.keys()
    differ = [name for name in want if not _same(want[name], got[name])]
    assert not differ, f"resumed weights differ from the uninterrupted run in {differ}"
