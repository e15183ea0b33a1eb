"""The streaming benchmark: conditions reach the pipeline, scores follow their definitions, output formats."""
# Tier: unit, except the tests marked integration (whole streaming-benchmark sessions).
from __future__ import annotations

import json
import shutil

import pytest

from edge.bench import stream
from edge.bench.__main__ import main as bench_main
from edge.bundle import load_bundle
from edge.live.config import RuntimeConfig
from edge.moving_digits import Segment

WINDOW = 2.0


def _pred(t: float, verb: str, noun: str) -> dict:
    return {"type": "prediction", "t": t, "verb": verb, "noun": noun, "modalities": ["V", "F", "A"]}


def test_scores_follow_their_definitions():
    # verb index 1 = push-left, noun "3"; one action 2-4 s in a 10 s session.
    segments = [Segment(2.0, 4.0, 1, 3)]
    records = [_pred(t, "hold", "0") for t in (2.5, 2.75)] + [_pred(t, "push-left", "3") for t in (3.25, 3.5, 4.5)]
    records += [{"type": "event", "start": 7.0, "end": 8.0},          # in idle: false
                {"type": "event", "start": 3.0, "end": 4.2}]          # on the action: not false
    scored = stream.score_session(segments, records, WINDOW, 10.0)
    assert scored["times_ms"] == [1250.0]                 # first right prediction 1.25 s after the start
    assert scored["false_events"] == 1 and scored["events"] == 2
    assert scored["idle_s"] == pytest.approx(10.0 - 3.0)  # everything but [2, 5]
    summary = stream.summarize("all", [scored])
    assert summary["segments"] == 1 and summary["action"] == 100.0       # majority of the covering windows
    assert summary["false_events_per_idle_min"] == pytest.approx(1 / (7.0 / 60), abs=0.01)
    assert summary["time_to_correct_ms_p50"] == 1250.0 and summary["never_correct"] == 0


def test_flow_conditions_pin_the_shedder():
    cfg = RuntimeConfig()
    half = stream.runtime_for(cfg, stream.Condition("flow_0.5", flow_scale=0.5)).shedding
    assert half.flow_scales == (0.5,) and half.budget_ms > 1e6
    dropped = stream.runtime_for(cfg, stream.Condition("flow_dropped", flow_scale=None)).shedding
    assert dropped.flow_scales == (1.0,) and dropped.shed_after == 1 and dropped.recover_after > 1e6


@pytest.mark.integration
def test_conditions_remove_what_they_say(random_bundle):
    bundle = load_bundle(random_bundle)
    conditions = tuple(c for c in stream.CONDITIONS if c.name in ("camera_off", "mic_off", "flow_dropped"))
    (result,) = stream.benchmark([bundle], RuntimeConfig(), 1, 0, None, conditions, progress=lambda _: None)
    timelines = result.pop("_timelines")
    used = {name: {m for r in recs if r["type"] == "prediction" for m in r["modalities"]}
            for name, (_, recs) in timelines.items()}
    assert used["camera_off"] == {"A"} and used["mic_off"] == {"V", "F"}
    late = [r for r in timelines["flow_dropped"][1] if r["type"] == "prediction" and r["t"] > 3.0]
    assert late and all("F" not in r["modalities"] for r in late)
    assert [c["name"] for c in result["conditions"]] == ["camera_off", "mic_off", "flow_dropped"]
    assert all(c["segments"] == stream.ACTIONS_PER_SESSION for c in result["conditions"])


@pytest.mark.integration
def test_command_prints_json_and_draws_the_timeline(random_bundle, tmp_path, capsys):
    png = tmp_path / "timeline.png"
    assert bench_main(["stream", "--sessions", "1", "--bundle", str(random_bundle), "--conditions", "all",
                       "--json", "--png", str(png)]) == 0
    out = json.loads(capsys.readouterr().out)
    (row,) = out["conditions"]
    assert set(row) >= {"name", "segments", "verb", "noun", "action", "false_events_per_idle_min",
                        "time_to_correct_ms_p50"}
    assert png.stat().st_size > 10_000
    assert bench_main(["stream", "--sessions", "0", "--bundle", str(random_bundle)]) == 2


@pytest.mark.integration
def test_two_bundles_play_the_same_sessions_side_by_side(random_bundle, capsys):
    """int8 beside fp32 (here: one bundle twice under two paths): the same sessions and faults, so the same
    bundle scores the same; the table puts the figures side by side."""
    twin = random_bundle.parent / (random_bundle.name + "_twin")
    if not twin.exists():
        shutil.copytree(random_bundle, twin)
    assert bench_main(["stream", "--sessions", "1", "--bundle", str(random_bundle), str(twin), "--conditions",
                       "mic_off", "--json"]) == 0
    a, b = json.loads(capsys.readouterr().out)["runs"]
    assert a["conditions"] == b["conditions"] and a["bundle"] != b["bundle"]
    assert bench_main(["stream", "--sessions", "1", "--bundle", str(random_bundle), str(twin), "--conditions",
                       "mic_off"]) == 0
    row = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| mic_off")][0]
    assert " / " in row
