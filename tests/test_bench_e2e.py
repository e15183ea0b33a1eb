"""`python -m edge.bench e2e`: a real clip through the real threaded live pipeline, in a fresh process."""
# Tier: integration (edge.bench e2e in a subprocess).
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.integration


def _e2e(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edge.bench", "e2e", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=120)


def test_e2e_fast_on_a_real_clip(data_root, random_bundle):
    clip = data_root / "clips" / "flipping_a_pancake.mkv"
    done = _e2e("--file", str(clip), "--bundle", str(random_bundle), "--fast", "--duration", "4", "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["mode"] == "fast" and result["audio"] is True
    assert result["predictions"] >= 20 and result["predictions_per_s"] > 8  # faster than real time
    c2p = result["capture_to_prediction_ms"]
    assert 0 <= c2p["p50"] <= c2p["p95"] <= c2p["p99"]
    assert result["modality_fraction"]["A"] > 0.5 and result["modality_fraction"]["V"] > 0.5
    assert result["drops"] == sum(result["drops_by_kind"].values())
    assert result["cpu_percent"] > 0
    assert not result["torch_imported"] and result["peak_rss_mb"] < 400


def test_e2e_missing_file_is_one_sentence(random_bundle, tmp_path):
    done = _e2e("--file", str(tmp_path / "nope.mkv"), "--bundle", str(random_bundle))
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0 and "nope.mkv does not exist" in done.stderr


def test_e2e_transcodes_a_clip_to_a_slower_camera_rate(data_root, random_bundle):
    clip = data_root / "clips" / "flipping_a_pancake.mkv"
    done = _e2e("--file", str(clip), "--fps", "12", "--bundle", str(random_bundle), "--fast", "--duration", "4",
                "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["stream"].endswith("at 12 fps") and result["predictions"] >= 20
    assert result["modality_fraction"]["V"] > 0.5 and result["modality_fraction"]["A"] > 0.5


def test_e2e_synthetic_raw_frames_predict_on_every_tick(data_root, random_bundle):
    done = _e2e("--synthetic", "1280x720@30", "--data-root", str(data_root), "--bundle", str(random_bundle),
                "--duration", "4", "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["stream"] == "1280x720@30" and result["mode"] == "realtime"
    assert result["prediction_records"] >= 0.9 * result["ticks_due"], result["counters"]  # a loaded CPU may miss one
    assert result["drops_by_kind"]["late_ticks"] == 0 and result["modality_fraction"]["V"] > 0.5


def test_e2e_synthetic_needs_a_size_and_a_duration(random_bundle):
    for args in (["--synthetic", "1920x1080"], ["--synthetic", "1920x1080@30"]):
        done = _e2e(*args, "--bundle", str(random_bundle))
        assert done.returncode == 2 and done.stderr.count("\n") == 1 and "--synthetic" in done.stderr
