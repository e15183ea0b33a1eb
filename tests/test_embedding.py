"""The embedding API (`from edge import ActionRecognizer`): the example in docs/EMBEDDING.md runs as written and
prints predictions from the frames and audio it pushes itself."""
# Tier: unit, except the test marked integration (the documented example in a subprocess).
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edge import ActionRecognizer
from edge.errors import PreprocessError

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.integration
def test_the_documented_example_runs_as_written_and_predicts():
    text = (REPO / "docs" / "EMBEDDING.md").read_text()
    (code,) = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    res = subprocess.run([sys.executable, "-c", code], cwd=REPO / "docs", capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    lines = [line for line in res.stdout.splitlines() if "confidence" in line]
    assert len(lines) >= 8 and all("from V+F+A" in line for line in lines[-3:]), res.stdout


def test_a_silent_sensor_is_said_and_the_other_goes_on():
    rec = ActionRecognizer(audio_rate=16000)
    frames = np.random.default_rng(1).integers(0, 255, (8, 48, 64, 3), dtype=np.uint8)
    records = []
    for k in range(120):                        # 4 s of video from t = 100 s; audio only for the first second
        t = 100.0 + k / 30
        records += rec.push_frame(frames[k % 8], t)
        if k < 30:
            records += rec.push_audio(np.zeros(533, np.float32), t + 533 / 16000)
    preds = [r for r in records if r["type"] == "prediction" and r["verb"] is not None]
    assert preds and preds[-1]["modalities"] == ["V", "F"] and "A" in preds[-1]["missing"]
    assert all(r["t"] < 4.5 for r in preds)      # stream time from the first push, not the caller's clock
    assert set(rec.labels) == {"verb", "noun"}


def test_camera_only_recognizer_takes_no_audio():
    rec = ActionRecognizer(audio_rate=None)
    try:
        rec.push_audio(np.zeros(10, np.float32), 1.0)
    except ValueError as exc:
        assert "audio_rate=None" in str(exc)
    else:
        raise AssertionError("audio accepted without a microphone")


def test_a_frame_no_conversion_can_use_is_refused_in_one_sentence_and_counted():
    rec = ActionRecognizer(audio_rate=None)
    with pytest.raises(PreprocessError, match="channels"):
        rec.push_frame(np.zeros((48, 64, 2), np.uint8), 0.0)
    assert rec.core.metrics.counters["bad_frames"] == 1
    frames = np.random.default_rng(3).integers(0, 255, (8, 48, 64, 3), dtype=np.uint8)
    records = [r for k in range(1, 40) for r in rec.push_frame(frames[k % 8], k / 10)]
    assert any(r["type"] == "prediction" and r["verb"] is not None for r in records)     # the stream goes on


def test_a_prediction_made_by_a_health_change_reports_its_data_age_apart_from_capture_to_prediction():
    """The microphone stops at 3 s while frames go on: the prediction that first says A is missing comes from the
    health check between instants (no new token), so it carries data_age_ms, not latency_ms, and the time from the
    last audio to it is its own figure (the stale wait, about 0.35 s)."""
    rec = ActionRecognizer(audio_rate=16000)
    frames = np.random.default_rng(2).integers(0, 255, (8, 48, 64, 3), dtype=np.uint8)
    records = []
    for k in range(150):
        t = k / 30
        records += rec.push_frame(frames[k % 8], t)
        if t < 3.0:
            records += rec.push_audio(np.full(533, 0.01, np.float32), t + 533 / 16000)
    preds = [r for r in records if r["type"] == "prediction" and r["verb"] is not None]
    first_without_a = next(r for r in preds if r["t"] > 3.0 and "A" not in r["modalities"])
    assert first_without_a["latency_ms"] is None and first_without_a["data_age_ms"] >= 0
    assert all((r["latency_ms"] is None) != (r.get("data_age_ms") is None) for r in preds)
    loss = rec.core.metrics.summary()["sensor_loss_to_prediction_ms"]
    assert loss["n"] == 1 and 300 <= loss["max"] <= 500
    c2p = rec.core.metrics.summary()["capture_to_prediction_ms"]
    assert c2p["n"] == sum(r["latency_ms"] is not None for r in preds)
