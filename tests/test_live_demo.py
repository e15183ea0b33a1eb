"""`run_live.py --demo`: a scored MovingDigits-AV stream with scripted camera and microphone dropouts."""
# Tier: unit, except the tests marked integration (run_live.py --demo in a subprocess; real-data renders and scoring).
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edge.bundle import Bundle, load_bundle
from edge.errors import ConfigError
from edge.live.demo import N_ACTIONS, dropouts, score_segments
from edge.moving_digits.config import session_levels
from edge.live.faults import Fault
from edge.moving_digits import DEFAULT_SPLITS, NOUNS, VERBS, Segment, load_config, load_sources, render_session
from edge.preprocess import (PreprocessConfig, compute_flow, flow_to_model_input, make_flow_backend, video_input,
                             prepare_frame, to_gray, window_to_model_input)

REPO = Path(__file__).resolve().parent.parent
SHIPPED = REPO / "assets" / "bundles" / "karmma_s"


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


@pytest.mark.integration
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


def test_a_segment_is_during_a_dropout_when_the_fault_overlaps_the_windows_scored_for_it():
    # The camera is back at 11.2 s, after the segment started (10.97 s) but before the first scored instant
    # (11.97 s): the windows scored for it still lack video, so it is not a segment "outside the dropouts".
    segments = [Segment(10.97, 12.97, 4, 2), Segment(16.0, 18.0, 1, 1)]
    records = [_pred(t, VERBS[4], NOUNS[2]) for t in (12.0, 13.0, 13.9)] + [_pred(t, VERBS[1], NOUNS[1])
                                                                           for t in (17.0, 18.0, 19.0)]
    score = score_segments(segments, records, window_s=2.0, faults={"camera": Fault(8.2, 11.2, "lost")})
    assert score["rows"][0]["dropout"] == ["camera"]
    assert score["rows"][1]["dropout"] == []                   # its windows start at 15 s, long after 11.2 s


def _bundle_with(extra: dict | None) -> Bundle:
    manifest = {"name": "test"} if extra is None else {"name": "test", "extra": extra}
    return Bundle(path=Path("test"), manifest=manifest, preprocess=PreprocessConfig(), sessions={})


def test_the_demo_session_uses_the_levels_the_bundle_records():
    levels, origin = session_levels(_bundle_with({"data": {"levels": {"card_scale": [0.5, 0.65],
                                                                      "snr_db": [5.0, 25.0]}}}))
    assert levels.card_scale == (0.5, 0.65) and levels.snr_db == (5.0, 25.0) and "bundle" in origin
    assert levels.noise_rms == load_config().levels.noise_rms        # unrecorded keys: moving_digits.yaml's
    assert session_levels(_bundle_with(None)) == (load_config().levels,
                                                  "moving_digits.yaml levels (the bundle records none)")
    with pytest.raises(ConfigError, match="card_scale"):
        session_levels(_bundle_with({"data": {"levels": {"card_scale": [0.65, 0.5]}}}))


def test_the_shipped_student_is_demoed_at_the_levels_it_was_trained_on():
    from trainer.config import load_config as trainer_config

    trained = trainer_config().data.levels                  # the benchmark's levels (trainer/config.py)
    levels, _ = session_levels(load_bundle(SHIPPED))
    assert trained and all(getattr(levels, k) == tuple(v) for k, v in trained.items())


@pytest.mark.slow
@pytest.mark.integration
def test_windows_aligned_to_demo_segments_score_like_the_offline_test_clips(data_root):
    """The demo session, cut into the trainer's 2 s windows exactly at each action, scores near the bundle's
    offline test accuracy (95 %): the session is rendered from the distribution the model was tested on."""
    from trainer.data.moving_digits import audio_windows, sample_instants

    bundle = load_bundle(SHIPPED)
    pre = bundle.preprocess
    flow = make_flow_backend(pre.flow)
    split = DEFAULT_SPLITS["test"]
    sources = load_sources(data_root, list(split.speakers), split.images, pre.audio_sample_rate)
    hits = total = 0
    for seed in (0, 1, 2):
        session = render_session(sources, seed, N_ACTIONS, session_levels(bundle)[0],
                                 sample_rate=pre.audio_sample_rate)
        for seg in session.segments:
            first = int(round(seg.start_s * session.fps))      # the action's first frame = the clip's after lead-in
            sampled, prev = sample_instants(int(round(pre.window_s * session.fps)), first, pre)
            small = {i: prepare_frame(session.frames[i], pre) for i in {*sampled.tolist(), *prev.tolist()}}
            tokens = {
                "video_tokens": [bundle.run("video_encoder", frame=video_input(small[i], small[p], pre)[None])[0][0]
                                 for p, i in zip(prev.tolist(), sampled.tolist())],
                "flow_tokens": [bundle.run("flow_encoder", flow=flow_to_model_input(
                    compute_flow(flow, to_gray(small[p]), to_gray(small[i]), pre), pre)[None])[0][0]
                    for p, i in zip(prev.tolist(), sampled.tolist())],
                "audio_tokens": [bundle.run("audio_encoder", logmel=window_to_model_input(
                    session.audio[a:b], session.sample_rate, pre)[None])[0][0]
                    for a, b in audio_windows(int(round(seg.start_s * session.sample_rate)), pre)]}
            verb, noun = bundle.run("fusion", **{k: np.stack(v)[None] for k, v in tokens.items()},
                                    mask=np.ones((1, 3), np.float32))
            hits += (int(verb.argmax()), int(noun.argmax())) == (seg.verb, seg.noun)
            total += 1
    assert total == 24 and hits >= 20, f"{hits}/{total} aligned windows right"


@pytest.mark.integration
def test_the_shipped_recording_is_the_seed_0_session_the_code_renders(data_root):
    """assets/demo/session.mkv (what a clone without data plays) is today's renderer's seed-0 session, so the demo
    shows the recognizer as it is with the data: the same segments, frames within H.264 noise, the same sound."""
    from edge.live.demo import RECORDING, render_demo_session
    from edge.moving_digits.session import read_session

    recorded = read_session(RECORDING)
    rendered, _ = render_demo_session(load_bundle(SHIPPED), data_root, 0)
    assert recorded.segments == rendered.segments and recorded.fps == rendered.fps
    assert recorded.frames.shape == rendered.frames.shape
    pre = PreprocessConfig()
    at_model_size = [np.stack([prepare_frame(f, pre) for f in s.frames]).astype(float) for s in (recorded, rendered)]
    assert np.abs(at_model_size[0] - at_model_size[1]).mean() < 5.0       # CRF 23, 4:2:0 chroma: 3.8 here
    n = min(recorded.audio.size, rendered.audio.size)
    assert n >= rendered.audio.size - 1600
    assert np.corrcoef(recorded.audio[:n], rendered.audio[:n])[0, 1] > 0.999
    assert RECORDING.stat().st_size <= 2_000_000 and (RECORDING.parent / "LICENSE").is_file()


@pytest.mark.integration
def test_without_data_the_demo_plays_the_recording_with_the_quantized_student(tmp_path):
    out = tmp_path / "demo.jsonl"
    res = subprocess.run([sys.executable, str(REPO / "run_live.py"), "--demo", "--fast", "--jsonl", str(out)],
                         cwd=REPO, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert "real recording source" in res.stdout and "procedural" not in res.stdout
    demo = [json.loads(line) for line in out.read_text().splitlines()][-1]
    # seed 0 with the int8 student: 6-7 of 8 segments (one lies wholly in the camera dropout, where the verb is
    # the audio's guess); a broken recognizer scores near 0
    assert demo["segments"] == 8 and demo["action_accuracy"] >= 0.75
    res = subprocess.run([sys.executable, str(REPO / "run_live.py"), "--demo", "--fast", "--duration", "1"], cwd=REPO,
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and "segment accuracy: nothing to score" in res.stdout, res.stdout + res.stderr
    res = subprocess.run([sys.executable, str(REPO / "run_live.py"), "--demo", "--seed", "3"], cwd=REPO,
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 2 and "pass --data-root" in res.stderr and res.stderr.count("\n") == 1, res.stderr
