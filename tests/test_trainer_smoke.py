"""`python -m trainer benchmark --smoke` runs every stage end to end (< 1 minute) and its outputs hold."""
# Tier: integration (python -m trainer in subprocesses).
from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytest.importorskip("torch")

from edge.bundle import load_bundle  # noqa: E402

from conftest import DATA_ROOT, REPO  # noqa: E402

pytestmark = pytest.mark.integration

SUBSETS = {"VFA", "VF", "VA", "FA", "V", "F", "A"}
MODELS = {"teacher", "baseline", "baseline_delta", "karmma_s"}


def _trainer(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "trainer", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=300)


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("smoke")
    root = ["--data-root", str(DATA_ROOT)] if DATA_ROOT is not None else []
    proc = _trainer("benchmark", "--smoke", "--out", str(out / "run"), "--cache", str(out / "cache"), *root)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return out, proc


def test_smoke_writes_results_in_the_contract_format(smoke_run):
    out, proc = smoke_run
    results = json.loads((out / "run" / "results.json").read_text())
    table = results["table"]
    assert {(r["model"], r["modalities"]) for r in table} == {(m, s) for m in MODELS for s in SUBSETS}
    assert all(0.0 <= r[k] <= 100.0 for r in table for k in ("verb", "noun", "action"))
    assert all(r["action"] <= min(r["verb"], r["noun"]) for r in table)
    curve = results["drop_curve"]
    assert {r["model"] for r in curve} == MODELS and {r["p"] for r in curve} == {0.0, 0.5, 0.9}
    # p = 0 drops nothing: the curve starts at the all-modality accuracy
    full = {r["model"]: r["action"] for r in table if r["modalities"] == "VFA"}
    assert all(r["action"] == pytest.approx(full[r["model"]], abs=0.01) for r in curve if r["p"] == 0.0)
    for name in ("teacher", "student"):
        assert results["costs"][name]["mflops_whole_window"] > 0
    assert results["data"]["source"].startswith("real" if DATA_ROOT is not None else "procedural")
    assert results["seeds"] == [0] and results["wall_time_s"] > 0
    assert (out / "run" / "drop_curve.png").stat().st_size > 1000
    assert "| VFA |" in (out / "run" / "results.md").read_text()


def test_smoke_bundles_load_and_evaluate(smoke_run):
    out, _ = smoke_run
    assert load_bundle(out / "run" / "bundles" / "teacher").manifest["kind"] == "teacher"
    student = load_bundle(out / "run" / "bundles" / "karmma_s")
    assert student.manifest["kind"] == "student" and "VFA" in student.manifest["metrics"]["accuracy"]
    root = ["--data-root", str(DATA_ROOT)] if DATA_ROOT is not None else []
    scores = out / "scores.json"
    proc = _trainer("evaluate", "--bundle", str(out / "run" / "bundles" / "karmma_s"), "--speakers", "yweweler",
                    "--images", "7000:7100", "--n-clips", "16", "--cache", str(out / "cache"), "--json", str(scores),
                    "--config", str(REPO / "assets" / "configs" / "trainer_smoke.yaml"), *root)
    assert proc.returncode == 0, proc.stderr[-2000:]
    got = json.loads(scores.read_text())
    assert set(got["table"]) == SUBSETS and got["n_clips"] == 16
    assert got["split"] == {"speakers": ["yweweler"], "images": [7000, 7100]}


@pytest.mark.slow
def test_two_job_processes_train_what_one_process_does(smoke_run):
    """`--jobs 2` trains the same weights as the sequential run (each job seeds itself as the sequential loop
    does), so its table is the fixture's, to the digit."""
    out, _ = smoke_run
    root = ["--data-root", str(DATA_ROOT)] if DATA_ROOT is not None else []
    proc = _trainer("benchmark", "--smoke", "--jobs", "2", "--out", str(out / "jobs"), "--cache", str(out / "cache"),
                    *root)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "teacher done after" in proc.stdout and "(5/5 jobs)" in proc.stdout
    assert "in 2 processes" in proc.stdout
    one, two = (json.loads((out / run / "results.json").read_text()) for run in ("run", "jobs"))
    assert two["table"] == one["table"] and two["drop_curve"] == one["drop_curve"]


@pytest.mark.parametrize("args,message", [
    (["benchmark", "--data-root", "/no/such/root", "--out", "/tmp/never"], "does not exist"),
    (["benchmark", "--smoke", "--out", "/tmp/never", "--jobs", "0"], "--jobs must be at least 1"),
    (["evaluate", "--bundle", "/no/such/bundle"], "does not exist"),
    (["benchmark", "--smoke", "--out", "/tmp/never", "--set", "student.epochz=1"], "unknown key"),
])
def test_bad_arguments_fail_with_one_line(args, message):
    proc = _trainer(*args)
    assert proc.returncode == 2
    assert message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
