"""Safety of what is loaded and what listens: weights_only checkpoints, bundle hashes checked before any model
is loaded, no network listener unless asked (and then on 127.0.0.1 by default)."""
# Tier: unit, except the tests marked integration (run_live.py and the MJPEG camera in subprocesses).
from __future__ import annotations

import ast
import shutil
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from edge.bundle import load_bundle
from edge.errors import BundleError

REPO = Path(__file__).resolve().parent.parent
CODE = [p for d in ("edge", "trainer", "calibration") for p in (REPO / d).rglob("*.py")] + [REPO / "run_live.py"]


def _calls(name: str):
    """(file, call node) for every call of `<x>.<name>(...)` / `name(...)` in the project's code."""
    for path in CODE:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Call):
                f = node.func
                called = f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else None
                if called == name:
                    yield path, node


def _keyword(node: ast.Call, key: str):
    return next((kw.value.value for kw in node.keywords if kw.arg == key and isinstance(kw.value, ast.Constant)), None)


def test_every_torch_load_is_weights_only_and_no_pickle_is_allowed():
    loads = [(p, n) for p, n in _calls("load") if isinstance(n.func, ast.Attribute)
             and isinstance(n.func.value, ast.Name) and n.func.value.id == "torch"]
    assert loads, "expected the trainer's checkpoint loading"
    unsafe = [f"{p.relative_to(REPO)}:{n.lineno}" for p, n in loads if _keyword(n, "weights_only") is not True]
    assert not unsafe, f"torch.load without weights_only=True at {unsafe}"
    pickled = [f"{p.relative_to(REPO)}:{n.lineno}" for name in ("load", "loads") for p, n in _calls(name)
               if _keyword(n, "allow_pickle") is True or ast.unparse(n.func).startswith("pickle.")]
    assert not pickled, f"pickle loading at {pickled}"


def test_bundle_hashes_are_checked_before_any_model_is_loaded(random_bundle, tmp_path, monkeypatch):
    import onnxruntime

    bundle = Path(shutil.copytree(random_bundle, tmp_path / "bundle"))
    with open(bundle / "fusion.onnx", "ab") as f:  # the last model: the others would load first without the check
        f.write(b"\0")
    sessions = []
    real = onnxruntime.InferenceSession
    monkeypatch.setattr(onnxruntime, "InferenceSession", lambda *a, **k: sessions.append(a) or real(*a, **k))
    with pytest.raises(BundleError, match="sha256"):
        load_bundle(bundle)
    assert sessions == []
    load_bundle(random_bundle)
    assert len(sessions) == 4  # the intact bundle does load through the patched constructor


def _listening(pid: int) -> list:
    proc = psutil.Process(pid)
    conns = proc.net_connections(kind="inet") if hasattr(proc, "net_connections") else proc.connections(kind="inet")
    return [c for c in conns if c.status == psutil.CONN_LISTEN]


@pytest.mark.integration
def test_the_live_recognizer_listens_on_no_port(random_bundle):
    proc = subprocess.Popen([sys.executable, str(REPO / "run_live.py"), "--demo", "--bundle", str(random_bundle),
                             "--duration", "6"], cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        seen = []
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and proc.poll() is None:
            seen += _listening(proc.pid)
            time.sleep(0.25)
        assert proc.poll() is None, "the demo ended before it could be watched"
        assert seen == []
    finally:
        proc.kill()
        proc.wait()


@pytest.mark.integration
def test_the_only_servers_are_the_web_view_and_the_test_camera_and_bind_localhost_by_default(data_root):
    # The web view (--serve) is tested for its loopback default and its token rule in tests/test_web.py;
    # edge/bench/record.py binds 127.0.0.1:0 only to pick a free port for the test camera it starts; the test
    # camera (edge/bench/mjpeg.py, a bench tool) binds 127.0.0.1 unless told otherwise (checked below).
    servers = {p.relative_to(REPO).as_posix() for name in ("serve_forever", "listen", "bind") for p, _ in _calls(name)}
    assert servers <= {"edge/live/web.py", "edge/bench/record.py", "edge/bench/mjpeg.py"}, servers
    proc = subprocess.Popen([sys.executable, "-m", "edge.bench.mjpeg", str(data_root / "clips" /
                             "flipping_a_pancake.mkv"), "--max-frames", "5"], cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().startswith("http://127.0.0.1:")
        assert {c.laddr.ip for c in _listening(proc.pid)} == {"127.0.0.1"}
    finally:
        proc.kill()
        proc.wait()
