"""The embedding API (`from edge import ActionRecognizer`): the example in docs/EMBEDDING.md runs as written and
prints predictions from the frames and audio it pushes itself."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np

from edge import ActionRecognizer

REPO = Path(__file__).resolve().parent.parent


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
