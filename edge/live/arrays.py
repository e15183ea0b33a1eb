"""Frames and samples held in memory, delivered like a camera and a microphone: the demo stream, the soak,
benchmarks and tests."""
from __future__ import annotations

import numpy as np

from edge.live.sources import Pacer


class _InMemory:
    """What both in-memory sources share: nothing to open or close, a pacer, a read position."""

    is_file = True
    bgr = False
    dropped = 0

    def __init__(self, realtime: bool, name: str, loop: bool) -> None:
        self.name, self.loop = name, loop
        self.pacer = Pacer(realtime)
        self._i = 0

    @property
    def skipped(self) -> int:
        return self.pacer.skipped

    def open(self) -> None:
        return None

    def close(self) -> None:
        return None


class ArrayVideo(_InMemory):
    """Frames held in memory (N, H, W, 3) RGB uint8 at `fps`: the demo stream and tests.
    With `loop` the frames repeat for ever on a timeline that keeps going (the soak)."""

    def __init__(self, frames: np.ndarray, fps: float, realtime: bool = True, name: str = "array video",
                 loop: bool = False) -> None:
        super().__init__(realtime, name, loop)
        self.frames, self.fps, self.rate = frames, fps, fps

    def read(self) -> tuple[float, np.ndarray] | None:
        while self.loop or self._i < len(self.frames):
            i = self._i
            self._i += 1
            if self.pacer.due(i / self.fps):
                return i / self.fps, self.frames[i % len(self.frames)]
        return None


class ArrayAudio(_InMemory):
    """Mono float32 samples held in memory, delivered in blocks of `block_s` like a microphone.
    With `loop` the samples repeat for ever on a timeline that keeps going (the soak)."""

    def __init__(self, samples: np.ndarray, rate: int, realtime: bool = True, block_s: float = 0.02,
                 name: str = "array audio", loop: bool = False) -> None:
        super().__init__(realtime, name, loop)
        self.samples, self.rate = np.asarray(samples, np.float32), rate
        self.block = max(1, int(round(rate * block_s)))

    def read(self) -> tuple[float, np.ndarray] | None:
        n = self.samples.size
        while self.loop or self._i < n:
            start = self._i
            self._i = start + self.block if self.loop else min(n, start + self.block)
            if self.pacer.due(self._i / self.rate):
                if self.loop:
                    return self._i / self.rate, np.take(self.samples, np.arange(start, self._i), mode="wrap")
                return self._i / self.rate, self.samples[start:self._i]
        return None
