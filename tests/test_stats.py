"""Health-monitor statistics: known values, numba and numpy agree, bad inputs are one sentence."""
# Tier: unit, except the test marked integration (python -c in a subprocess).
import math

import numpy as np
import pytest

from edge import stats
from edge.errors import PreprocessError


def test_frame_stats_known_values():
    frame = np.zeros((4, 5, 3), np.uint8)
    frame[0] = 255          # 1 of 4 rows saturated
    frame[1] = 100          # 1 row mid-grey, 2 rows black
    mean, dark, bright, diff = stats.frame_stats(frame, None)
    assert mean == pytest.approx((255 + 100) / 4)
    assert dark == pytest.approx(0.5) and bright == pytest.approx(0.25)
    assert math.isnan(diff)
    assert stats.frame_stats(frame, frame)[3] == 0.0                        # frozen
    assert stats.frame_stats(frame, np.full_like(frame, 10))[3] == pytest.approx((245 + 90 + 10 + 10) / 4)


def test_frame_stats_thresholds_are_inclusive():
    frame = np.array([[stats.DARK_LEVEL, stats.DARK_LEVEL + 1, stats.BRIGHT_LEVEL - 1, stats.BRIGHT_LEVEL]], np.uint8)
    _, dark, bright, _ = stats.frame_stats(frame, None)
    assert dark == 0.25 and bright == 0.25


def test_audio_stats_known_values():
    x = np.array([0.5, -0.5, 1.0, -1.0, np.nan, np.inf], np.float32)
    rms, clipped, nonfinite = stats.audio_stats(x)
    assert rms == pytest.approx(math.sqrt((0.25 + 0.25 + 1 + 1) / 4))
    assert clipped == pytest.approx(0.5) and nonfinite == 2
    assert stats.audio_stats(np.full(8, np.nan, np.float32)) == (0.0, 0.0, 8)
    assert stats.audio_stats(np.zeros((10, 2), np.float64))[0] == 0.0     # stereo / float64 accepted


@pytest.mark.skipif(stats._numba_kernel() is None, reason="numba is not installed")
def test_numba_and_numpy_agree():
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
    prev = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
    for p in (None, prev.reshape(-1)):
        np.testing.assert_allclose(stats._frame_stats_numba(frame.reshape(-1), p),
                                   stats._frame_stats_numpy(frame.reshape(-1), p), equal_nan=True)


@pytest.mark.parametrize("call, needle", [
    (lambda: stats.frame_stats(np.zeros((0, 4), np.uint8), None), "empty"),
    (lambda: stats.frame_stats(np.zeros((4, 4), np.float32), None), "uint8"),
    (lambda: stats.frame_stats(np.zeros((4, 4), np.uint8), np.zeros((4, 5), np.uint8)), "one shape"),
    (lambda: stats.audio_stats(np.zeros(0, np.float32)), "empty"),
    (lambda: stats.audio_stats(np.zeros(4, np.int16)), "float"),
])
def test_bad_inputs_one_sentence(call, needle):
    with pytest.raises(PreprocessError, match=needle):
        call()


@pytest.mark.integration
def test_the_live_runtime_does_not_load_numba_for_model_size_frames():
    """The health monitor looks at 64x64 frames: numpy does those in microseconds, and importing numba would cost
    the runtime about 60 MB (docs/RELIABILITY.md, memory)."""
    import subprocess
    import sys

    code = ("import sys, numpy as np; from edge.live.health import warm_up; from edge.stats import frame_stats; "
            "warm_up(); f = np.zeros((64, 64, 3), np.uint8); frame_stats(f, f); print('numba' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "False"
