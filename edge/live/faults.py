"""Scripted faults around any source: losses and corrupt data on the source's own timeline (tests, the demo's
dropouts, the soak)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edge.live.sources import Source, SourceError, SourceLost


@dataclass(frozen=True)
class Fault:
    """Between start_s and end_s of the source's own timeline: lost | frozen | black | wrong_shape |
    wrong_channels (video), lost | silence | clip | nan | inf (audio)."""

    start_s: float
    end_s: float
    kind: str


VIDEO_FAULTS = ("lost", "frozen", "black", "wrong_shape", "wrong_channels")
AUDIO_FAULTS = ("lost", "silence", "clip", "nan", "inf")


class FaultInjector:
    """Wraps a source and injects scripted faults on its timeline (tests, the demo's dropouts, the soak).

    "lost" raises SourceLost for every item in the window while the wrapped source keeps running, so its
    timeline goes on as a live sensor's would and the capture thread's reconnect path is exercised.
    """

    def __init__(self, source: Source, faults: list[Fault], *, audio: bool) -> None:
        allowed = AUDIO_FAULTS if audio else VIDEO_FAULTS
        for f in faults:
            if f.kind not in allowed:
                raise SourceError(f"unknown {'audio' if audio else 'video'} fault {f.kind!r}; use one of {allowed}.")
        self.source, self.faults = source, list(faults)
        self.name, self.is_file, self.bgr = source.name, source.is_file, source.bgr
        self._opened = False
        self._injected = False
        self._last: np.ndarray | None = None

    def open(self) -> None:
        if not self._opened:
            self.source.open()
            self._opened = True

    @property
    def rate(self) -> float | None:
        return self.source.rate

    @property
    def skipped(self) -> int:
        return self.source.skipped

    @property
    def dropped(self) -> int:
        return self.source.dropped

    def _active(self, pts: float) -> str | None:
        return next((f.kind for f in self.faults if f.start_s <= pts < f.end_s), None)

    def read(self) -> tuple[float, np.ndarray] | None:
        item = self.source.read()
        if item is None:
            return None
        pts, data = item
        kind = self._active(pts)
        if kind == "lost":
            self._injected = True
            raise SourceLost(f"{self.name} failed (injected fault).")
        if kind == "frozen" and self._last is not None:
            return pts, self._last
        if kind is not None and not isinstance(data, np.ndarray):  # a PyAV frame: corrupt its pixels
            data = data.to_ndarray(format="rgb24")
        if kind == "black":
            data = np.zeros_like(data)
        elif kind == "wrong_shape":
            data = np.ascontiguousarray(data[::2, ::3, 0])
        elif kind == "wrong_channels":  # two channels: no camera format, so the frame cannot be used
            data = np.ascontiguousarray(data[:, :, :2])
        elif kind == "silence":
            data = np.zeros_like(data)
        elif kind == "clip":  # the gain jumps until the signal saturates, however quiet it was
            rms = float(np.sqrt(np.mean(np.square(data, dtype=np.float64)))) if data.size else 0.0
            data = np.clip(data * (8.0 / max(rms, 1e-4)), -1.0, 1.0).astype(data.dtype)
        elif kind == "nan":
            data = np.full_like(data, np.nan)
        elif kind == "inf":
            data = np.where(np.arange(data.size) % 2 == 0, np.inf, -np.inf).astype(data.dtype)
        self._last = data
        return pts, data

    def close(self) -> None:
        """After an injected loss the reconnect path closes and reopens: keep the wrapped source running."""
        if self._injected:
            self._injected = False
            return
        self.source.close()
        self._opened = False
