"""`run_live.py --demo`: a scored MovingDigits-AV stream with scripted camera and microphone dropouts."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from edge.live.demo import dropouts, score_segments
from edge.live.sources import Fault
from edge.moving_digits import NOUNS, VERBS, Segment

REPO = Path(__file__).resolve().parent.parent


def _pred(t: float, verb: str | None, noun: str | None) -> dict:
    return {"type": "prediction", "t": t, "verb": verb, "noun": noun, "modalities": ["V"] if verb else []}


def test_segments_are_scored_by_majority_over_the_predictions_that_cover_them():
    segments = [Segment(1.0, 3.0, 2, 7), Segment(6.0, 8.0, 0, 1)]
    right = (VERBS[2], NOUNS[7])
    records = ([_pred(t, *right) for t in (2.0, 2.5, 3.0)] + [_pred(3.5, VERBS[1], NOUNS[7])]
               + [_pred(1.5, VERBS[5], NOUNS[5])] * 5          # before the window fills: not counted
               + [_pred(7.5, VERBS[0], NOUNS[2]), _pred(8.0, None, None)])
    late = Segment(20.0, 22.0, 1, 1)                            # after the run stopped: not scored
    score = score_segments(segments + [late], records, window_s=2.0, faults={"camera": Fault(6.5, 9.0, "lost")})
    assert score["segments"] == 2 and score["action_accuracy"] == 0.5
    assert score["verb_accuracy"] == 1.0 and score["noun_accuracy"] == 0.5
    assert score["rows"][0]["dropout"] == [] and score["rows"][1]["dropout"] == ["camera"]


def test_demo_completes_scores_and_keeps_predicting_through_dropouts(random_bundle, tmp_path):
    out = tmp_path / "demo.jsonl"
    res = subprocess.run([sys.executable, str(REPO / "run_live.py"), "--demo", "--fast", "--bundle", str(random_bundle),
                          "--jsonl", str(out)], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert "segment accuracy (8 segments" in res.stdout and "capture-to-prediction ms" in res.stdout
    records = [json.loads(line) for line in out.read_text().splitlines()]
    demo = records[-1]
    assert demo["type"] == "demo" and demo["segments"] == 8 and 0.0 <= demo["action_accuracy"] <= 1.0
    summary = next(r for r in records if r["type"] == "summary")
    duration = max(r["t"] for r in records if r["type"] == "prediction")
    faults = dropouts(duration)
    preds = [r for r in records if r["type"] == "prediction"]

    def used(fault: Fault) -> set[tuple[str, ...]]:
        return {tuple(p["modalities"]) for p in preds if fault.start_s + 0.3 < p["t"] < fault.end_s - 0.3}

    assert used(faults["camera"]) == {("A",)}
    assert used(faults["mic"]) == {("V", "F")}
    assert summary["counters"]["camera_reconnects"] == 1 and summary["counters"]["mic_reconnects"] == 1
