"""Per-modality health: is the stream usable right now, or missing and why (decided from the stream itself)."""
from __future__ import annotations

import math

import numpy as np

from edge.live.config import HealthConfig
from edge.stats import audio_stats, frame_stats

# Source states the capture layer reports.
CONNECTED, RECONNECTING, ENDED, OFF = "connected", "reconnecting", "ended", "off"
WAITING = "waiting"  # connected, no data yet: the start of a run, not a fault


def warm_up() -> None:
    """Load the statistics now, not on the first live frame (the monitor looks at model-size frames: numpy)."""
    frame = np.zeros((8, 8, 3), np.uint8)
    frame_stats(frame, frame)
    frame_stats(frame, None)
    audio_stats(np.zeros(16, np.float32))


class VideoHealth:
    """Disconnected, stale, frozen, black or saturated frames make V (and with it F) missing."""

    def __init__(self, cfg: HealthConfig) -> None:
        self.cfg = cfg
        self._prev: np.ndarray | None = None
        self._prev_seq = -1
        self._prev_t = 0.0
        self._frozen_since: float | None = None
        self._dark = self._bright = 0.0

    def update(self, now: float, state: str, latest: tuple[np.ndarray, float, int] | None) -> str | None:
        """`latest` = (model-size RGB frame, its stream time, its sequence number); returns the reason V is
        missing, or None when usable."""
        if state != CONNECTED:
            self._reset()
            return state
        if latest is None:
            return WAITING
        frame, t, seq = latest
        if now - t > self.cfg.stale_s:
            self._reset()
            return "stale"
        if seq != self._prev_seq:
            mean, dark, bright, diff = frame_stats(frame, self._prev)
            if not math.isnan(diff) and diff < self.cfg.frozen_diff:  # frozen since the previous, identical frame
                self._frozen_since = self._prev_t if self._frozen_since is None else self._frozen_since
            else:
                self._frozen_since = None
            self._prev, self._prev_seq, self._prev_t = frame, seq, t
            self._dark, self._bright = dark, bright
        if self._dark >= self.cfg.dark_fraction:
            return "black"
        if self._bright >= self.cfg.bright_fraction:
            return "saturated"
        if self._frozen_since is not None and t - self._frozen_since >= self.cfg.frozen_s:
            return "frozen"
        return None

    def _reset(self) -> None:
        self._prev, self._prev_seq, self._frozen_since = None, -1, None


class AudioHealth:
    """Disconnected, stale, silent (for silent_s), clipped or NaN/Inf audio make A missing."""

    def __init__(self, cfg: HealthConfig) -> None:
        self.cfg = cfg
        self._silent_since: float | None = None
        self._bad_until = -math.inf
        self._bad_reason = ""
        self._prev_last_t: float | None = None

    def update(self, now: float, state: str, last_t: float | None, new_samples: np.ndarray) -> str | None:
        """`new_samples` = audio that arrived since the previous update; returns why A is missing, or None."""
        if state != CONNECTED:
            self._silent_since, self._bad_until, self._prev_last_t = None, -math.inf, None
            return state
        if last_t is None:
            return WAITING
        if now - last_t > self.cfg.stale_s:
            return "stale"
        if new_samples.size:
            rms, clipped, nonfinite = audio_stats(new_samples)
            if nonfinite:
                self._bad_until, self._bad_reason = last_t + self.cfg.hold_s, "NaN/Inf samples"
            elif clipped >= self.cfg.clipped_fraction:
                self._bad_until, self._bad_reason = last_t + self.cfg.hold_s, "clipped"
            if rms < self.cfg.silent_rms and not nonfinite:  # silent since the end of the previous audio
                start = last_t if self._prev_last_t is None else self._prev_last_t
                self._silent_since = start if self._silent_since is None else self._silent_since
            elif not nonfinite:
                self._silent_since = None
            self._prev_last_t = last_t
        if now < self._bad_until:
            return self._bad_reason
        if self._silent_since is not None and now - self._silent_since >= self.cfg.silent_s:
            return "silent"
        return None
