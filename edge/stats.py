"""One-pass frame and audio statistics for the live health monitor (black / saturated / frozen / silent / clipped).

Frame statistics of camera-size frames run in one numba-compiled pass over the pixels; the live monitor looks at
model-size frames (64x64), where numpy takes microseconds, so numba (about 60 MB of memory once imported) is
loaded only when a frame of NUMBA_MIN_VALUES or more arrives (numpy when numba is absent). `python -m edge.bench
stats` measures the two side by side. Audio statistics stay in numpy: a numba loop was
slower than numpy's vectorised isfinite/dot on a 48k-sample block (the NaN branch blocks SIMD).

Thresholds (the health monitor decides what is "too dark" etc. from these fractions):
  DARK_LEVEL   a pixel value <= 16 counts as dark (black frame, covered lens)
  BRIGHT_LEVEL a pixel value >= 250 counts as saturated
  CLIP_LEVEL   an audio sample with |x| >= 0.999 (full scale is 1.0) counts as clipped
"""
from __future__ import annotations

import functools
import math

import numpy as np

from edge.errors import PreprocessError

DARK_LEVEL = 16
BRIGHT_LEVEL = 250
CLIP_LEVEL = 0.999

NUMBA_MIN_VALUES = 100_000      # below this many pixel values numpy is fast enough and numba is not imported


def _frame_stats_numpy(flat: np.ndarray, prev: np.ndarray | None) -> tuple[float, float, float, float]:
    n = flat.size
    mean = float(flat.mean())
    dark = float(np.count_nonzero(flat <= DARK_LEVEL) / n)
    bright = float(np.count_nonzero(flat >= BRIGHT_LEVEL) / n)
    diff = float(np.abs(flat.astype(np.int16) - prev).mean()) if prev is not None else math.nan
    return mean, dark, bright, diff


@functools.lru_cache(maxsize=1)
def _numba_kernel():
    """The compiled one-pass kernel, made on first use; None without numba."""
    try:
        import numba
    except ImportError:  # numba is a declared dependency; the fallback keeps edge usable without it
        return None

    @numba.njit(cache=True, nogil=True)
    def kernel(flat, prev, has_prev):  # pragma: no cover - compiled
        total = 0
        dark = 0
        bright = 0
        diff = 0
        for i in range(flat.size):
            v = np.int32(flat[i])
            total += v
            if v <= DARK_LEVEL:
                dark += 1
            elif v >= BRIGHT_LEVEL:
                bright += 1
            if has_prev:
                d = v - np.int32(prev[i])
                diff += d if d >= 0 else -d
        return total, dark, bright, diff

    return kernel


def _frame_stats_numba(flat: np.ndarray, prev: np.ndarray | None) -> tuple[float, float, float, float]:
    kernel = _numba_kernel()
    if kernel is None:
        return _frame_stats_numpy(flat, prev)
    n = flat.size
    total, dark, bright, diff = kernel(flat, flat if prev is None else prev, prev is not None)
    return total / n, dark / n, bright / n, (diff / n if prev is not None else math.nan)


def _flat_frame(frame: np.ndarray, what: str) -> np.ndarray:
    if not isinstance(frame, np.ndarray) or frame.dtype != np.uint8:
        kind = frame.dtype if isinstance(frame, np.ndarray) else type(frame).__name__
        raise PreprocessError(f"frame_stats needs a uint8 {what} frame, got {kind}.")
    if frame.size == 0:
        raise PreprocessError(f"frame_stats got an empty {what} frame of shape {frame.shape}.")
    return np.ascontiguousarray(frame).reshape(-1)


def frame_stats(frame_uint8: np.ndarray, prev_uint8: np.ndarray | None) -> tuple[float, float, float, float]:
    """(mean, dark_fraction, bright_fraction, mean_abs_diff) of a uint8 frame (any channel layout).

    mean is in pixel levels 0..255; dark/bright fractions count values <= DARK_LEVEL / >= BRIGHT_LEVEL over all
    channels; mean_abs_diff is the mean |frame - prev| in pixel levels (near 0 = frozen), NaN when prev is None.
    """
    flat = _flat_frame(frame_uint8, "current")
    prev = None
    if prev_uint8 is not None:
        prev = _flat_frame(prev_uint8, "previous")
        if prev_uint8.shape != frame_uint8.shape:
            raise PreprocessError(
                f"frame_stats needs frames of one shape, got {frame_uint8.shape} and previous {prev_uint8.shape}."
            )
    return (_frame_stats_numba if flat.size >= NUMBA_MIN_VALUES else _frame_stats_numpy)(flat, prev)


def audio_stats(samples_float32: np.ndarray) -> tuple[float, float, int]:
    """(rms, clipped_fraction, nonfinite_count) of a float audio block (any shape, full scale 1.0).

    rms and clipped_fraction (|x| >= CLIP_LEVEL) are over the finite samples only (0.0 when there are none);
    nonfinite_count counts NaN and Inf samples.
    """
    x = np.asarray(samples_float32)
    if x.dtype.kind != "f":
        raise PreprocessError(f"audio_stats needs float samples in [-1, 1], got dtype {x.dtype}.")
    if x.size == 0:
        raise PreprocessError("audio_stats got an empty audio block.")
    x = x.astype(np.float32, copy=False).reshape(-1)
    finite = np.isfinite(x)
    n_finite = int(np.count_nonzero(finite))
    nonfinite = x.size - n_finite
    if not n_finite:
        return 0.0, 0.0, nonfinite
    if nonfinite:
        x = x[finite]
    rms = math.sqrt(float(np.dot(x, x)) / n_finite)
    return rms, float(np.count_nonzero(np.abs(x) >= CLIP_LEVEL) / n_finite), nonfinite
