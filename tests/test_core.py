"""The recognizer core (edge/live/core.py) driven on its own with synthetic timestamps: no threads, no clock, no I/O.
Predictions at their instants, the availability mask as sensors go and come back, load shedding, action events and
resets, each checked on the records the core returns."""
# Tier: unit.
from __future__ import annotations

import numpy as np
import pytest

from edge.bundle import load_bundle
from edge.live.config import RuntimeConfig, SheddingConfig
from edge.live.core import Recognizer
from edge.live.health import CONNECTED, ENDED, RECONNECTING
from edge.live.shedding import LoadShedder
from edge.live.streaming import StreamingStudent
from edge.preprocess import CameraFrame

FPS, RATE, BLOCK_S = 10.0, 16000, 0.025


@pytest.fixture(scope="module")
def bundle(random_bundle):
    return load_bundle(random_bundle)


def moving_frames(n: int, seed: int) -> list[np.ndarray]:
    """A textured picture sliding one pixel a frame: never frozen, never black."""
    base = np.random.default_rng(seed).integers(0, 256, (60, 120, 3), np.uint8)
    return [np.ascontiguousarray(np.roll(base, k, axis=1)[:, :80]) for k in range(n)]


def feed(core: Recognizer, start: float, end: float, *, video: bool = True, audio: bool = True,
         before_tick=None) -> list[dict]:
    """Push camera frames at FPS and microphone blocks of BLOCK_S between `start` and `end` (stream time), in
    timestamp order, running each tick the data makes due; then let time reach `end`."""
    rng = np.random.default_rng(int(start * 10))
    frames = moving_frames(int(round((end - start) * FPS)), int(start))
    items = [(start + k / FPS, "V", CameraFrame(f)) for k, f in enumerate(frames)] if video else []
    if audio:
        blocks = int(round((end - start) / BLOCK_S))
        items += [(start + (k + 1) * BLOCK_S, "A", rng.normal(0, 0.1, int(RATE * BLOCK_S)).astype(np.float32))
                  for k in range(blocks)]
    records = []
    for t, m, data in sorted(items, key=lambda item: (item[0], item[1])):
        due = core.push_frame(t, data, t) if m == "V" else core.push_audio(t, data, t)
        if due:
            if before_tick is not None:
                before_tick(t)
            records += core.tick(t)
    return records + core.tick(end)


def predictions(records: list[dict], after: float = -1.0) -> list[dict]:
    return [r for r in records if r["type"] == "prediction" and r["t"] > after]


def connected_core(bundle, **parts) -> Recognizer:
    return Recognizer(bundle, RuntimeConfig(), {"V": CONNECTED, "A": CONNECTED}, RATE, **parts)


def test_the_mask_follows_the_sensors_as_they_go_and_come_back(bundle):
    core = connected_core(bundle)
    both = predictions(feed(core, 0.0, 3.0))
    assert [p["t"] for p in both] == pytest.approx([k / 8 for k in range(len(both))])    # every 1/8 s instant
    assert both[-1]["modalities"] == ["V", "F", "A"] and both[0]["state"] == "warming_up"

    core.set_state("V", RECONNECTING)                  # the camera is unplugged: audio goes on alone
    audio_only = predictions(feed(core, 3.0, 5.0, video=False), after=3.0)
    assert audio_only and all(p["modalities"] == ["A"] for p in audio_only)
    assert audio_only[-1]["missing"] == {"V": RECONNECTING, "F": RECONNECTING}

    core.set_state("V", CONNECTED)                     # it is back; now the microphone's file ends
    core.set_state("A", ENDED)
    video_only = predictions(feed(core, 5.0, 8.0, audio=False), after=5.0)
    assert video_only[-1]["modalities"] == ["V", "F"] and video_only[-1]["missing"] == {"A": ENDED}
    assert all("A" not in p["modalities"] for p in video_only)
    assert all(p["verb"] is not None for p in audio_only)
    # while the camera's tokens refill (the microphone gone) nothing is usable, and the records say so
    refilling = [p for p in video_only if p["modalities"] == []]
    assert refilling and all(p["verb"] is None and p["missing"]["A"] == ENDED for p in refilling)


class Overloaded(LoadShedder):
    """A shedder that sees every tick over its budget, whatever the machine: the ladder, made deterministic."""

    def update(self, elapsed_ms: float, flow_ms: float = 0.0) -> None:
        super().update(1e9, flow_ms)


def test_over_budget_the_core_sheds_flow_and_predicts_with_the_rest(bundle):
    shedder = Overloaded(SheddingConfig(flow_scales=(1.0, 0.5), shed_after=2))
    core = connected_core(bundle, shedder=shedder)
    preds = predictions(feed(core, 0.0, 4.0))
    scales = [p["flow_scale"] for p in preds]
    assert scales[0] == 1.0 and 0.5 in scales and scales[-1] is None and shedder.escalations == 2
    assert preds[-1]["modalities"] == ["V", "A"] and preds[-1]["missing"] == {"F": "shed"}
    assert core.summary()["shedding"] == {"final_level": 2, "escalations": 2}


class Scripted(StreamingStudent):
    """The bundle's streaming student with its probabilities scripted by stream time: the action (verb 0, noun 0)
    with confidence 0.81, then from `switch_at` the action (1, 1)."""

    def __init__(self, bundle, switch_at: float) -> None:
        super().__init__(bundle, RuntimeConfig().health.min_tokens)
        self.switch_at, self.now = switch_at, 0.0

    def predict(self, mask):
        i = 0 if self.now < self.switch_at else 1
        verb, noun = (np.full(len(self.bundle.labels[k]), 0.1 / (len(self.bundle.labels[k]) - 1), np.float32)
                      for k in ("verb", "noun"))
        verb[i] = noun[i] = 0.9
        return verb, noun


def test_confident_predictions_become_action_events_that_end_when_another_action_takes_over(bundle):
    student = Scripted(bundle, switch_at=3.0)
    core = connected_core(bundle, student=student)
    records = feed(core, 0.0, 6.0, before_tick=lambda t: setattr(student, "now", t)) + core.finish()
    events = [r for r in records if r["type"] == "event"]
    labels = bundle.labels
    assert [(e["verb"], e["noun"]) for e in events] == [(labels["verb"][0], labels["noun"][0]),
                                                         (labels["verb"][1], labels["noun"][1])]
    first, second = events
    # the old action ends when the smoothed best action changes; the new one starts once its smoothed confidence
    # reaches start_at, a few predictions later
    assert first["start"] < 1.5 and 3.0 <= first["end"] <= 3.5 and first["end"] < second["start"] <= 4.0
    assert second["end"] == predictions(records)[-1]["t"] and first["modalities"] == ["V", "F", "A"]
    assert 0.75 < first["confidence"] <= 0.81      # the mean smoothed confidence, lower as the action hands over


def test_reset_forgets_the_stream_and_its_open_event(bundle):
    core, twin = (connected_core(bundle, student=Scripted(bundle, switch_at=1e9)) for _ in range(2))
    before = feed(core, 0.0, 3.0)
    assert predictions(before)[-1]["modalities"] == ["V", "F", "A"] and not any(r["type"] == "event" for r in before)
    feed(twin, 0.0, 3.0)
    assert len(twin.finish()) == 1                      # the same stream without the reset has an action open
    core.reset(100.0)
    assert core.finish() == []                          # the action open before the reset is not reported
    again = predictions(feed(core, 100.0, 101.0))
    assert again[0]["t"] == 0.0 and again[0]["state"] == "warming_up"    # times count from the new origin
    assert core.frames_received == 10 and core.audio_samples_received == int(1.0 * RATE)
