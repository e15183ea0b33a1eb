"""Bounded ring buffers stamped with stream time; a consumer that falls behind loses the oldest data, counted."""
from __future__ import annotations

import math
import threading
from typing import NamedTuple

import numpy as np

from edge.preprocess import CameraFrame


class Frame(NamedTuple):
    """One captured frame (converted only if the sampler takes it), with its stream time, arrival and sequence
    number."""

    data: CameraFrame
    t: float
    arrival: float
    seq: int


class FrameRing:
    """The last `capacity` frames as captured (references: the capture side stamps and stores, nothing more).

    The sampler takes the first frame at or after each sampling instant; the frames before it are `skipped`
    (by design: the camera runs faster than the sampling rate). A frame the sampler still wanted (at or after
    `wanted_from`, the next instant) that is overwritten before it was looked at is `dropped`.
    """

    def __init__(self, capacity: int) -> None:
        if capacity <= 0:
            raise ValueError("a ring needs a positive capacity")
        self.capacity = capacity
        self._slots: list[Frame | None] = [None] * capacity
        self._written = 0      # frames ever pushed
        self._read = 0         # frames up to this count were looked at by the sampler
        self.wanted_from = -math.inf
        self.dropped = 0
        self.skipped = 0
        self._lock = threading.Lock()

    def push(self, data: CameraFrame, t: float, arrival: float) -> None:
        with self._lock:
            slot = self._written % self.capacity
            old = self._slots[slot]
            if old is not None and old.seq >= self._read:
                if old.t >= self.wanted_from:
                    self.dropped += 1
                else:
                    self.skipped += 1
                self._read = old.seq + 1
            self._slots[slot] = Frame(data, t, arrival, self._written)
            self._written += 1

    def _held(self) -> list[Frame]:
        first = max(self._read, self._written - self.capacity)
        return [self._slots[i % self.capacity] for i in range(first, self._written)]

    def sample(self, instant: float) -> Frame | None:
        """The first unread frame at or after `instant` (None: none yet); the frames before it are skipped."""
        with self._lock:
            for frame in self._held():
                if frame.t >= instant:
                    self.skipped += frame.seq - self._read
                    self._read = frame.seq + 1
                    return frame
            return None

    def latest(self) -> Frame | None:
        """The freshest frame (read or not), marking everything read; None when nothing was ever pushed."""
        with self._lock:
            if self._written == 0:
                return None
            frame = self._slots[(self._written - 1) % self.capacity]
            self.skipped += max(0, frame.seq - self._read)
            self._read = self._written
            return frame

    def peek(self) -> Frame | None:
        """The freshest frame, read or not, marking nothing read (the health monitor's look between samples)."""
        with self._lock:
            return None if self._written == 0 else self._slots[(self._written - 1) % self.capacity]

    @property
    def last_time(self) -> float | None:
        frame = self.peek()
        return None if frame is None else frame.t


class AudioRing:
    """The last `capacity` mono samples at `rate` Hz; each push stamps the time of its last sample.

    The health monitor reads every sample once (`unread`); samples overwritten before it did are `dropped`.
    The encoder reads windows ending at a given time (`window`), which reads nothing away.
    """

    def __init__(self, capacity: int, rate: int) -> None:
        if capacity <= 0 or rate <= 0:
            raise ValueError("an audio ring needs a positive capacity and rate")
        self.capacity = capacity
        self.rate = rate
        self._buf = np.zeros(capacity, np.float32)
        self._written = 0
        self._t_end = 0.0
        self._arrival_end = 0.0
        self._read = 0
        self.dropped = 0
        self._lock = threading.Lock()

    def push(self, samples: np.ndarray, t_end: float, arrival: float) -> None:
        x = np.asarray(samples, np.float32).reshape(-1)
        with self._lock:
            if x.size > self.capacity:  # a block larger than the ring: its head is lost at once
                self._written += x.size - self.capacity
                x = x[-self.capacity:]
            start = self._written % self.capacity
            first = min(x.size, self.capacity - start)
            self._buf[start:start + first] = x[:first]
            self._buf[:x.size - first] = x[first:]
            self._written += x.size
            lost = self._written - self.capacity - self._read
            if lost > 0:
                self.dropped += lost
                self._read += lost
            self._t_end, self._arrival_end = t_end, arrival

    def _tail(self, end: int, n: int) -> np.ndarray:
        n = max(0, min(n, end, self.capacity - (self._written - end)))
        return self._buf[np.arange(end - n, end) % self.capacity]

    def unread(self) -> np.ndarray:
        """The samples written since the previous call, marked read."""
        with self._lock:
            out = self._tail(self._written, self._written - self._read)
            self._read = self._written
            return out

    def window(self, t_end: float, n: int) -> tuple[np.ndarray, float]:
        """The newest n samples up to stream time `t_end` (fewer at the start of a stream), and the arrival of the
        block that brought the last of them."""
        with self._lock:
            back = max(0, int(round((self._t_end - t_end) * self.rate)))
            return self._tail(self._written - back, n), self._arrival_end

    @property
    def last_time(self) -> float | None:
        with self._lock:
            return None if self._written == 0 else self._t_end
