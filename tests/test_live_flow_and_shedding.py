"""Where live flow runs (runtime `flow` keys: size, backend) and the load shedder's ladder, step by step."""
# Tier: unit.
from __future__ import annotations

import cv2
import numpy as np
import pytest

from edge.bundle import load_bundle
from edge.errors import ConfigError
from edge.live.config import DEFAULT_PATH, FlowRuntimeConfig, RuntimeConfig, SheddingConfig, load_runtime_config
from edge.live.pipeline import recognizer_for, run_session
from edge.live.shedding import LoadShedder
from edge.live.arrays import ArrayVideo
from edge.live.sensors import Sensor
from edge.live.streaming import StreamingStudent

HEAVY = DEFAULT_PATH.parent / "runtime_flow360_torch.yaml"
MIN_TOKENS = {"V": 4, "F": 4, "A": 3}


@pytest.fixture(scope="module")
def bundle(random_bundle):
    return load_bundle(random_bundle)


def test_runtime_flow_keys_default_to_the_trained_flow_and_bad_values_are_one_sentence(tmp_path):
    assert load_runtime_config().flow == FlowRuntimeConfig(size=0, backend="")
    assert load_runtime_config(HEAVY).flow == FlowRuntimeConfig(size=360, backend="torch")
    bad = tmp_path / "r.yaml"
    for text, message in [("flow:\n  resolution: 360\n", "unknown key"),
                          ("flow:\n  size: 360p\n", "flow.size must be int"),
                          ("flow:\n  size: 360.0\n", "flow.size must be int"),
                          ("flow:\n  size: -1\n", "flow.size must be a finite number from 0 to 4096"),
                          ("flow:\n  backend: raft\n", "flow.backend one of"),
                          ("flow: torch\n", "flow must be a mapping")]:
        bad.write_text(text)
        with pytest.raises(ConfigError, match=message) as err:
            load_runtime_config(bad)
        assert "\n" not in str(err.value)


def test_flow_smaller_than_the_model_frame_is_refused(bundle):
    with pytest.raises(ConfigError, match="below the model's frame size 64"):
        StreamingStudent(bundle, MIN_TOKENS, flow_size=32)


def _shifted_pair(size: int, shift: int) -> tuple[np.ndarray, np.ndarray]:
    """A smooth random texture and the same texture moved `shift` pixels to the right."""
    rng = np.random.default_rng(0)
    texture = cv2.GaussianBlur(rng.integers(0, 256, (size, size + 2 * shift), dtype=np.uint8), (0, 0), size / 64)
    return np.ascontiguousarray(texture[:, shift:shift + size]), np.ascontiguousarray(texture[:, :size])


@pytest.mark.parametrize("scale", [1.0, 0.5])
def test_flow_at_a_larger_size_reaches_the_model_at_its_size_and_in_its_pixels(bundle, scale):
    """8 px of motion at 256x256 is 2 px in the model's 64x64 frame, at full and at half flow resolution."""
    student = StreamingStudent(bundle, MIN_TOKENS, flow_size=256)
    assert student.flow_side == 256
    flow = student.model_flow(*_shifted_pair(256, 8), scale)
    assert flow.shape == (64, 64, 2)
    inner = flow[16:48, 16:48]
    assert np.median(inner[..., 0]) == pytest.approx(2.0, abs=0.3) and abs(np.median(inner[..., 1])) < 0.3


def test_pipeline_gives_flow_the_sampled_frame_at_the_flow_size_and_predicts_with_flow(bundle):
    rng = np.random.default_rng(1)
    base = cv2.GaussianBlur(rng.integers(0, 256, (200, 260, 3), dtype=np.uint8), (0, 0), 2)
    frames = np.stack([base[:, 2 * i:2 * i + 160] for i in range(24)])  # 8 fps, 3 s, panning
    cfg = RuntimeConfig(flow=FlowRuntimeConfig(size=128))
    video, audio = Sensor(ArrayVideo(frames, 8.0, realtime=False)), Sensor(None, "off")
    core = recognizer_for(bundle, cfg, video, audio)
    add_frame, shapes = core.student.add_frame, []

    def spy(frame, arrival, flow_scale, flow_frame=None):
        shapes.append((frame.shape, flow_frame.shape))
        return add_frame(frame, arrival, flow_scale, flow_frame=flow_frame)

    core.student.add_frame = spy
    records: list[dict] = []
    summary = run_session(bundle, cfg, video, audio, [records.append], realtime=False, duration_s=3.0,
                          core=core).summary
    assert shapes and set(shapes) == {((64, 64, 3), (128, 128, 3))}
    assert summary["counters"].get("bad_frames", 0) == 0
    assert [r["modalities"] for r in records if r["type"] == "prediction"][-1] == ["V", "F"]


def _levels(shedder: LoadShedder, ticks_ms: list[float], flow_ms: float = 0.0) -> list[float | None]:
    out = []
    for ms in ticks_ms:
        shedder.update(ms, flow_ms)
        out.append(shedder.flow_scale)
    return out


def test_shedder_steps_down_one_level_per_run_of_ticks_over_budget():
    shedder = LoadShedder(SheddingConfig(budget_ms=40, flow_scales=(1.0, 0.5, 0.25), shed_after=3,
                                         recover_after=4))
    # Two over, one within budget: the run restarts, nothing is shed.
    assert _levels(shedder, [50, 50, 30, 50, 50]) == [1.0] * 5
    assert _levels(shedder, [50]) == [0.5]                 # the third over in a row
    assert _levels(shedder, [50, 50, 50]) == [0.5, 0.5, 0.25]
    assert _levels(shedder, [50, 50, 50]) == [0.25, 0.25, None]   # flow dropped
    assert _levels(shedder, [50] * 6) == [None] * 6        # nothing further to shed
    assert shedder.escalations == 3


def test_shedder_holds_between_half_and_full_budget_and_recovers_one_level_per_quiet_run():
    shedder = LoadShedder(SheddingConfig(budget_ms=40, flow_scales=(1.0, 0.5), shed_after=1, recover_after=4))
    assert _levels(shedder, [50, 50]) == [0.5, None]
    assert _levels(shedder, [30] * 10) == [None] * 10       # within budget but not under half: hold
    assert _levels(shedder, [10, 10, 10, 30, 10, 10, 10]) == [None] * 7   # a tick over half restarts the run
    assert _levels(shedder, [10]) == [0.5]                   # four under half in a row: one step back
    assert _levels(shedder, [10] * 4) == [0.5, 0.5, 0.5, 1.0]
    assert _levels(shedder, [10] * 8) == [1.0] * 8


def test_shedder_stays_down_while_the_higher_resolution_would_miss_the_budget():
    shedder = LoadShedder(SheddingConfig(budget_ms=40, flow_scales=(1.0, 0.5, 0.25), shed_after=1,
                                         recover_after=3))
    assert _levels(shedder, [50], flow_ms=45) == [0.5]
    # Still loaded: 13 ms a tick, 11 of them flow; at full resolution 13 + 3 * 11 = 46 ms > 40: no step up.
    assert shedder.projected_one_up_ms(13, 11) == 46
    assert _levels(shedder, [13] * 10, flow_ms=11) == [0.5] * 10
    # Load gone: 8 ms, 5.5 of them flow -> 24.5 ms at full resolution: back after 3 ticks.
    assert _levels(shedder, [8] * 3, flow_ms=5.5) == [0.5, 0.5, 1.0]
    # From dropped flow there is no flow time to scale: the half-budget rule alone brings flow back.
    assert _levels(shedder, [50] * 3, flow_ms=40) == [0.5, 0.25, None]
    assert _levels(shedder, [5] * 3) == [None, None, 0.25]
