"""The live recognizer's parts on their own: rings, health, events, shedding, runtime config, fault injection."""
# Tier: unit.
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from edge.errors import ConfigError
from edge.live.config import EventsConfig, HealthConfig, RuntimeConfig, SheddingConfig, load_runtime_config
from edge.live.events import EventTracker
from edge.live.health import CONNECTED, RECONNECTING, WAITING, AudioHealth, VideoHealth
from edge.live.rings import AudioRing, FrameRing
from edge.live.shedding import LoadShedder
from edge.live.arrays import ArrayAudio, ArrayVideo
from edge.live.faults import Fault, FaultInjector
from edge.live.sources import Pacer, SourceError, SourceLost
from edge.live.streaming import TokenRing

LABELS = {"verb": ["hold", "push"], "noun": ["0", "1", "2"]}


def test_frame_ring_is_bounded_samples_the_first_frame_at_an_instant_and_counts_skips_and_drops():
    ring = FrameRing(4)
    frames = [np.full((2, 2, 3), i, np.uint8) for i in range(12)]
    for i in range(10):
        ring.push(frames[i], t=float(i), arrival=float(i))
    assert ring.dropped == 6 and ring.skipped == 0  # nobody looked, and every frame was still wanted
    frame = ring.sample(7.5)                          # the first frame at or after the instant
    assert frame.data is frames[8] and frame.t == 8.0 and frame.seq == 8
    assert ring.skipped == 2                           # 6 and 7 came before it
    ring.wanted_from = 12.0                            # the next instant: frames before it are not wanted
    ring.push(frames[10], 10.0, 10.0)
    ring.push(frames[11], 11.0, 11.0)
    ring.push(frames[11], 11.5, 11.5)
    ring.push(frames[11], 11.7, 11.7)
    ring.push(frames[11], 11.8, 11.8)                  # these two overwrite unread 9 and 10, which nobody wanted
    assert ring.dropped == 6 and ring.skipped == 4
    assert ring.sample(12.0) is None and ring.latest().t == 11.8 and ring.last_time == 11.8


def test_audio_ring_wraps_gives_windows_ending_at_a_time_and_counts_only_samples_never_read():
    ring = AudioRing(100, 10)
    ring.push(np.arange(60, dtype=np.float32), 6.0, 6.0)
    ring.push(np.arange(60, 120, dtype=np.float32), 12.0, 12.0)
    assert ring.dropped == 20                          # the health monitor never read samples 0-19
    np.testing.assert_array_equal(ring.unread(), np.arange(20, 120))
    window, arrival = ring.window(11.0, 30)            # the 30 samples up to t = 11.0
    np.testing.assert_array_equal(window, np.arange(80, 110))
    assert arrival == 12.0
    ring.push(np.zeros(60, np.float32), 18.0, 18.0)    # read by the monitor already: overwriting loses nothing
    assert ring.dropped == 20 and ring.unread().size == 60
    ring.push(np.zeros(500, np.float32), 68.0, 68.0)  # a block larger than the ring keeps only its tail
    assert ring.window(68.0, 1000)[0].size == 100 and ring.dropped == 420


def test_token_ring_orders_oldest_first_and_pads_with_the_oldest():
    ring = TokenRing(4, 1)
    for i in range(2):
        ring.push(np.array([i], np.float32), float(i))
    np.testing.assert_array_equal(ring.window()[:, 0], [0, 0, 0, 1])
    for i in range(2, 7):
        ring.push(np.array([i], np.float32), float(i))
    np.testing.assert_array_equal(ring.window()[:, 0], [3, 4, 5, 6])
    assert ring.newest_arrival == 6.0


def _frames(seed: int, n: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).integers(40, 200, (n, 8, 8, 3), dtype=np.uint8)


def test_video_health_reasons():
    cfg = HealthConfig()
    h = VideoHealth(cfg)
    assert h.update(0.0, CONNECTED, None) == WAITING
    assert h.update(0.0, RECONNECTING, None) == RECONNECTING
    assert h.update(0.1, CONNECTED, (_frames(0)[0], 0.1, 0)) is None
    assert h.update(1.0, CONNECTED, (_frames(0)[0], 0.1, 0)) == "stale"
    black = np.zeros((8, 8, 3), np.uint8)
    assert VideoHealth(cfg).update(0.0, CONNECTED, (black, 0.0, 0)) == "black"
    white = np.full((8, 8, 3), 255, np.uint8)
    assert VideoHealth(cfg).update(0.0, CONNECTED, (white, 0.0, 0)) == "saturated"
    h = VideoHealth(cfg)
    frozen = _frames(1)[0]
    reasons = [h.update(i * 0.125, CONNECTED, (frozen.copy(), i * 0.125, i)) for i in range(8)]
    first = next(i for i, r in enumerate(reasons) if r == "frozen")  # identical since the frame at t = 0
    assert reasons[:first] == [None] * first and reasons[first:] == ["frozen"] * (8 - first)
    assert (first - 1) * 0.125 < cfg.frozen_s <= first * 0.125
    assert h.update(1.0, CONNECTED, (_frames(2)[0], 1.0, 8)) is None  # motion again: usable at once


def test_audio_health_reasons():
    cfg = HealthConfig()
    rng = np.random.default_rng(0)
    speech = rng.normal(0, 0.1, 1600).astype(np.float32)
    h = AudioHealth(cfg)
    assert h.update(0.0, CONNECTED, None, np.zeros(0, np.float32)) == WAITING
    assert h.update(0.1, CONNECTED, 0.1, speech) is None
    assert h.update(0.8, CONNECTED, 0.1, np.zeros(0, np.float32)) == "stale"
    silent = [h.update(0.2 + 0.1 * i, CONNECTED, 0.2 + 0.1 * i, np.zeros(1600, np.float32)) for i in range(7)]
    assert silent[0] is None and silent[-1] == "silent"
    h = AudioHealth(cfg)
    assert h.update(0.1, CONNECTED, 0.1, np.ones(1600, np.float32)) == "clipped"
    assert h.update(0.6, CONNECTED, 0.6, speech) == "clipped"          # still inside the model's 1 s window
    assert h.update(1.2, CONNECTED, 1.2, speech) is None
    nan = speech.copy()
    nan[5] = np.nan
    assert h.update(1.3, CONNECTED, 1.3, nan) == "NaN/Inf samples"


def test_events_hysteresis_min_duration_and_modalities():
    cfg = EventsConfig(ema_alpha=1.0, start_at=0.5, end_below=0.3, min_duration_s=0.5)
    tracker = EventTracker(cfg, LABELS)
    strong = (np.array([0.1, 0.9]), np.array([0.0, 0.0, 1.0]))
    middling = (np.array([0.4, 0.6]), np.array([0.0, 0.3, 0.7]))   # 0.42: below start, above end
    weak = (np.array([0.5, 0.5]), np.array([0.3, 0.3, 0.4]))
    out = []
    out += tracker.update(0.0, *middling, ["V"])                      # never started: below start_at
    out += tracker.update(0.125, *strong, ["V", "F"])
    out += tracker.update(0.25, *middling, ["V", "F", "A"])          # hysteresis: stays open
    out += tracker.update(0.75, *middling, ["A"])
    assert out == []
    out += tracker.update(0.875, *weak, ["A"])                        # below end_below: closes
    assert out == [{"type": "event", "start": 0.125, "end": 0.875, "verb": "push", "noun": "2",
                    "confidence": pytest.approx((0.9 + 0.42 + 0.42) / 3, abs=1e-3),
                    "modalities": ["V", "F", "A"]}]
    assert tracker.update(1.0, *strong, ["V"]) == []
    assert tracker.update(1.125, None, None, []) == []                # too short (< 0.5 s): not reported


def test_load_shedder_lowers_flow_resolution_then_drops_flow_then_recovers():
    shedder = LoadShedder(SheddingConfig(budget_ms=10, flow_scales=(1.0, 0.5), shed_after=2, recover_after=3))
    seen = [shedder.flow_scale]
    for _ in range(6):
        shedder.update(50.0)
        seen.append(shedder.flow_scale)
    assert seen[0] == 1.0 and 0.5 in seen and seen[-1] is None
    for _ in range(6):
        shedder.update(1.0)
    assert shedder.flow_scale == 1.0


def test_runtime_config_rejects_unknown_keys_and_wrong_types(tmp_path):
    assert load_runtime_config() == RuntimeConfig()
    bad = tmp_path / "r.yaml"
    bad.write_text("health:\n  stale_seconds: 1\n")
    with pytest.raises(ConfigError, match="unknown key"):
        load_runtime_config(bad)
    bad.write_text("shedding:\n  budget_ms: fast\n")
    with pytest.raises(ConfigError, match="budget_ms must be float"):
        load_runtime_config(bad)
    bad.write_text("health:\n  min_tokens: {V: 4, F: 4}\n")
    with pytest.raises(ConfigError, match="min_tokens"):
        load_runtime_config(bad)
    with pytest.raises(ConfigError, match="does not exist"):
        load_runtime_config(tmp_path / "missing.yaml")


def test_fault_injector_scripts_loss_and_corruption_on_the_source_timeline():
    frames = _frames(3, 16)
    src = FaultInjector(ArrayVideo(frames, 4.0, realtime=False),
                        [Fault(1.0, 2.0, "lost"), Fault(2.5, 3.0, "frozen"), Fault(3.0, 3.25, "black")], audio=False)
    src.open()
    got, lost = [], 0
    while True:
        try:
            item = src.read()
        except SourceLost:
            lost += 1
            src.close()   # the reconnect path: the wrapped source keeps running
            src.open()
            continue
        if item is None:
            break
        got.append(item)
    assert lost == 4 and [t for t, _ in got][:4] == [0.0, 0.25, 0.5, 0.75]
    by_t = dict(got)
    assert np.array_equal(by_t[2.5], frames[9]) and np.array_equal(by_t[2.75], frames[9])
    assert not by_t[3.0].any() and np.array_equal(by_t[3.25], frames[13])
    audio = FaultInjector(ArrayAudio(np.full(800, 0.1, np.float32), 400, realtime=False, block_s=0.5),
                          [Fault(1.0, 1.5, "nan")], audio=True)
    blocks = [audio.read() for _ in range(4)]
    assert np.isnan(blocks[1][1]).all() and not np.isnan(blocks[0][1]).any()
    with pytest.raises(SourceError, match="unknown video fault"):
        FaultInjector(ArrayVideo(frames, 4.0), [Fault(0, 1, "nan")], audio=False)


def test_pacer_skips_items_that_are_already_late_instead_of_bursting():
    pacer = Pacer(realtime=True, late_s=0.05)
    assert pacer.due(0.0)
    assert not pacer.due(-1.0)       # a second behind: skipped
    assert pacer.skipped == 1


def test_runtime_config_round_trips_through_replace():
    cfg = dataclasses.replace(RuntimeConfig(), status_interval_s=1.0)
    assert RuntimeConfig.from_dict(cfg.to_dict()) == cfg


def test_injected_clipping_saturates_even_quiet_audio():
    """A quiet room (rms 0.003) must clip too, or the soak's clipping fault injects nothing the monitor could see."""
    from edge.stats import audio_stats

    quiet = (0.003 * np.random.default_rng(0).standard_normal(16000)).astype(np.float32)
    source = FaultInjector(ArrayAudio(quiet, 16000, realtime=False, block_s=0.05), [Fault(0.5, 1.0, "clip")],
                           audio=True)
    source.open()
    blocks = {"clean": [], "clip": []}
    while (item := source.read()) is not None:
        blocks["clip" if 0.5 <= item[0] < 1.0 else "clean"].append(item[1])
    threshold = HealthConfig().clipped_fraction
    assert all(audio_stats(b)[1] >= threshold for b in blocks["clip"]) and blocks["clip"]
    assert all(audio_stats(b)[1] < threshold for b in blocks["clean"])


def test_every_source_declares_what_it_delivers(tmp_path):
    """Colour order, rate, late-skipped and driver-dropped counts, on every source, wrapped or not: callers (the
    pipeline, the recorder) read them instead of walking wrapper chains or guessing with getattr."""
    from edge.live.devices import MicSource, OpenCVCamera
    from edge.live.media import MediaAudio, MediaVideo
    from tests.media_helpers import write_video

    clip = tmp_path / "clip.mp4"
    write_video(clip, 10, 25, audio=True)
    video, audio = MediaVideo(clip, realtime=False), MediaAudio(clip, 16000, realtime=False)
    camera, wrapped = OpenCVCamera(0), FaultInjector(video, [], audio=False)
    sources = [camera, MicSource("default", 16000), video, audio, wrapped,
               ArrayVideo(np.zeros((2, 8, 8, 3), np.uint8), 12.0), ArrayAudio(np.zeros(100, np.float32), 8000)]
    for source in sources:
        assert isinstance(source.bgr, bool) and source.skipped == 0 and source.dropped == 0, source.name
    assert camera.bgr and not video.bgr
    assert camera.rate is None and video.rate is None          # a device or file states its rate once open
    wrapped.open()
    audio.open()
    assert video.rate == wrapped.rate == 25.0 and audio.rate == 16000 and sources[-2].rate == 12.0
    for source in (wrapped, audio):
        source.close()
