"""The streaming path (sampler, rings, per-token encoding, fusion per prediction) equals the clip-level forward."""
# Tier: unit, except the test marked integration (a real-time session with reconnects).
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from edge.bundle import load_bundle
from edge.live.config import RuntimeConfig
from edge.live.arrays import ArrayAudio, ArrayVideo
from edge.live.streaming import StreamingStudent
from edge.preprocess import (CameraFrame, compute_flow, flow_to_model_input, make_flow_backend, prepare_frame,
                             to_gray, video_input, window_to_model_input)
from tests.live_helpers import run_live_session

FPS, RATE, BLOCK_S = 8.0, 16000, 0.025


def clip_logits(bundle, frames: list[np.ndarray], lead_in: np.ndarray, windows: list[np.ndarray], mask):
    """The clip-level forward: every encoder on the whole window as one batch, then fusion."""
    cfg = bundle.preprocess
    backend = make_flow_backend(cfg.flow)
    v = bundle.run("video_encoder", frame=np.stack([video_input(f, p, cfg) for p, f in zip([lead_in, *frames], frames)]))[0]
    grays = [to_gray(f) for f in [lead_in, *frames]]
    flows = np.stack([flow_to_model_input(compute_flow(backend, a, b, cfg), cfg) for a, b in zip(grays, grays[1:])])
    f = bundle.run("flow_encoder", flow=flows)[0]
    a = bundle.run("audio_encoder", logmel=np.stack([window_to_model_input(w, RATE, cfg) for w in windows]))[0]
    return bundle.run("fusion", video_tokens=v[None], flow_tokens=f[None], audio_tokens=a[None],
                      mask=np.asarray([mask], np.float32))


def smooth_frames(n: int, size: int, seed: int) -> np.ndarray:
    """Textured frames that move a little each step (so flow is not trivially zero and health sees no freeze)."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (size * 2, size * 2, 3), dtype=np.uint8)
    return np.stack([np.roll(base, (2 * i, 3 * i), axis=(0, 1))[:size, :size] for i in range(n)])


@pytest.fixture(scope="module")
def bundle(random_bundle):
    return load_bundle(random_bundle)


@pytest.mark.parametrize("mask", [(True, True, True), (True, False, True), (False, False, True)])
def test_student_token_rings_equal_clip_forward_after_wraparound(bundle, mask):
    cfg = bundle.preprocess
    frames = list(smooth_frames(14, cfg.frame_size, 0))
    rng = np.random.default_rng(1)
    windows = [rng.normal(0, 0.1, RATE).astype(np.float32) for _ in range(8)]
    student = StreamingStudent(bundle, {"V": 8, "F": 8, "A": 5})
    for i, frame in enumerate(frames):
        student.add_frame(frame, float(i), flow_scale=1.0)
    for j, w in enumerate(windows):
        student.add_audio(w, RATE, float(j))
    streamed = student.logits(mask)
    reference = clip_logits(bundle, frames[-8:], frames[-9], windows[-5:], mask)
    for got, want in zip(streamed, reference):
        np.testing.assert_allclose(got, want[0], rtol=1e-4, atol=1e-4)


def test_pipeline_sampling_equals_clip_forward(bundle):
    """Frames and audio fed through the whole pipeline (fast driver, rings, data-driven sampler, health) give the
    clip-level logits of the inputs the design says a prediction at that instant looks at."""
    cfg = bundle.preprocess
    frames = smooth_frames(int(3.0 * FPS) + 2, 96, 2)
    audio = np.random.default_rng(3).normal(0, 0.1, int(3.2 * RATE)).astype(np.float32)
    runtime = RuntimeConfig()
    runtime = dataclasses.replace(runtime, shedding=dataclasses.replace(runtime.shedding, budget_ms=1e9))
    summary, _, core = run_live_session(bundle, ArrayVideo(frames, FPS, realtime=False),
                                        ArrayAudio(audio, RATE, realtime=False, block_s=BLOCK_S), cfg=runtime,
                                        duration_s=3.0)
    assert summary["counters"].get("bad_frames", 0) == 0
    # Video instants every 0.25 s from 0, each taking the first frame at or after it; audio instants 0.125 s
    # later, each window ending exactly there. The run stops at t = 3.0, before that instant's tick.
    video_ticks = [0.25 * j for j in range(4, 12)]            # the last 8 video instants before t = 3.0
    first_at = [int(np.ceil(t * FPS)) for t in [0.75] + video_ticks]
    sampled = [prepare_frame(frames[i], cfg) for i in first_at]
    audio_ticks = [0.125 * k for k in (15, 17, 19, 21, 23)]
    ends = [int(round(t * RATE)) for t in audio_ticks]
    windows = [audio[max(0, e - RATE):e] for e in ends]
    windows = [np.concatenate([np.zeros(RATE - w.size, np.float32), w]) for w in windows]
    reference = clip_logits(bundle, sampled[1:], sampled[0], windows, (True, True, True))
    streamed = core.student.logits((True, True, True))
    for got, want in zip(streamed, reference):
        np.testing.assert_allclose(got, want[0], rtol=1e-4, atol=1e-4)


def test_with_nothing_usable_the_output_says_so_instead_of_guessing(bundle):
    """Black frames and no microphone: every tick reports no_input, never a verb or noun."""
    black = np.zeros((24, 32, 32, 3), np.uint8)
    _, records, _ = run_live_session(bundle, ArrayVideo(black, 8.0, realtime=False))
    preds = [r for r in records if r["type"] == "prediction"]
    assert preds and all(r["verb"] is None and r["modalities"] == [] for r in preds)
    assert {r["state"] for r in preds[1:]} == {"no_input"}
    assert preds[-1]["missing"] == {"V": "black", "F": "black", "A": "off"}


class HiccupVideo(ArrayVideo):
    """Raises an unexpected exception once, as a buggy driver might."""

    failed = False

    def read(self):
        if self._i == 10 and not self.failed:
            self.failed = True
            raise RuntimeError("driver hiccup")
        return super().read()


@pytest.mark.integration
def test_an_unexpected_source_exception_is_a_reconnect_not_a_dead_thread(bundle):
    frames = smooth_frames(int(3.5 * FPS), 64, 4)
    summary, records, _ = run_live_session(bundle, HiccupVideo(frames, FPS, realtime=True), realtime=True,
                                           duration_s=3.3)
    assert summary["counters"]["camera_errors"] == 1 and summary["counters"]["camera_reconnects"] == 1
    assert [r["modalities"] for r in records if r["type"] == "prediction"][-1] == ["V", "F"]


def test_over_budget_the_pipeline_lowers_flow_resolution_then_drops_flow(bundle):
    frames = smooth_frames(int(6 * FPS), 64, 5)
    runtime = RuntimeConfig()
    runtime = dataclasses.replace(runtime, shedding=dataclasses.replace(runtime.shedding, budget_ms=1e-3))
    summary, records, _ = run_live_session(bundle, ArrayVideo(frames, FPS, realtime=False), cfg=runtime)
    scales = [r["flow_scale"] for r in records if r["type"] == "prediction"]
    assert scales[0] == 1.0 and 0.5 in scales and 0.25 in scales and scales[-1] is None
    last = [r for r in records if r["type"] == "prediction"][-1]
    assert last["modalities"] == ["V"] and last["missing"]["F"] == "shed"
    assert summary["shedding"]["escalations"] == 3


def test_the_core_alone_ticks_when_data_arrives_without_threads_and_resets(bundle):
    """push / tick(now) / reset with no driver: each instant runs when the data at or after it arrives."""
    import threading

    from edge.live.core import Recognizer
    from edge.live.health import CONNECTED

    threads = threading.active_count()
    core = Recognizer(bundle, RuntimeConfig(), {"V": CONNECTED, "A": CONNECTED}, RATE)
    frames = smooth_frames(40, 80, 6)
    audio = np.random.default_rng(7).normal(0, 0.1, 4 * RATE).astype(np.float32)
    block = int(RATE * BLOCK_S)
    items = [(i / 10.0, "V", CameraFrame(frames[i])) for i in range(40)] + \
            [((k + 1) * BLOCK_S, "A", audio[k * block:(k + 1) * block]) for k in range(int(4.0 / BLOCK_S))]
    records, ticked_at = [], []
    for t, m, data in sorted(items, key=lambda item: item[0]):
        due = core.push_frame(t, data, t) if m == "V" else core.push_audio(t, data, t)
        if due:
            ticked_at.append(t)
            records += core.tick(t)
    preds = [r for r in records if r["type"] == "prediction"]
    assert threading.active_count() == threads
    assert [p["t"] for p in preds] == [0.125 * k for k in range(len(preds))] and len(preds) >= 30
    assert preds[-1]["modalities"] == ["V", "F", "A"] and preds[-1]["state"] == "ok"
    # the video instant at 0.25 ran when the frame at 0.3 (the first at or after it) arrived, not on a timer
    assert 0.3 in ticked_at and 0.25 not in [t for t, m, _ in items if m == "V"]
    core.reset(100.0)
    assert core.push_frame(99.9, CameraFrame(frames[0]), 99.9) is False   # before the first instant of the new run
    assert core.push_frame(100.0, CameraFrame(frames[1]), 100.0) is True
    first = core.tick(100.0)
    assert [(r["t"], r["state"]) for r in first] == [(0.0, "warming_up")]  # everything starts over


def test_a_sensor_in_use_that_goes_quiet_is_said_when_its_data_turns_stale_not_at_the_next_instant(bundle):
    from edge.live.faults import Fault, FaultInjector

    frames = smooth_frames(int(5 * FPS), 64, 8)
    audio = np.random.default_rng(9).normal(0, 0.1, 5 * RATE).astype(np.float32)
    camera = FaultInjector(ArrayVideo(frames, FPS, realtime=False), [Fault(3.0, 5.0, "wrong_channels")], audio=False)
    _, records, _ = run_live_session(bundle, camera, ArrayAudio(audio, RATE, realtime=False, block_s=BLOCK_S),
                                     duration_s=4.5)
    preds = [r for r in records if r["type"] == "prediction"]
    gone = next(r for r in preds if r["t"] > 2.9 and "V" not in r["modalities"])
    last_good = 3.0 - 1 / FPS
    assert gone["missing"]["V"] == "stale" and gone["modalities"] == ["A"]
    assert gone["t"] == pytest.approx(last_good + RuntimeConfig().health.stale_s, abs=0.01)  # off the 1/8 s grid
