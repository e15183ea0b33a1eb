"""Preallocated, bounded ring buffers stamped with stream time; a slow consumer loses the oldest data, counted."""
from __future__ import annotations

import threading

import numpy as np


class FrameRing:
    """The last `capacity` model-size frames with their stream time and wall-clock arrival.

    The sampler only ever asks for the freshest frame; frames it never looked at are `skipped` (by design,
    the camera runs faster than the sampling rate), frames overwritten while the ring was full of unread ones
    are `dropped`.
    """

    def __init__(self, capacity: int, shape: tuple[int, ...]) -> None:
        if capacity <= 0:
            raise ValueError("a ring needs a positive capacity")
        self.capacity = capacity
        self._frames = np.zeros((capacity, *shape), np.uint8)
        self._t = np.zeros(capacity)
        self._arrival = np.zeros(capacity)
        self._written = 0      # frames ever pushed
        self._read = 0         # frames up to this count were seen by the consumer
        self.dropped = 0
        self.skipped = 0
        self._lock = threading.Lock()

    def push(self, frame: np.ndarray, t: float, arrival: float) -> None:
        with self._lock:
            slot = self._written % self.capacity
            if self._written - self._read >= self.capacity:
                self.dropped += 1
                self._read += 1
            self._frames[slot] = frame
            self._t[slot] = t
            self._arrival[slot] = arrival
            self._written += 1

    def latest(self) -> tuple[np.ndarray, float, float, int] | None:
        """(frame copy, stream time, arrival, sequence number) of the freshest frame, or None when empty."""
        with self._lock:
            if self._written == 0:
                return None
            seq = self._written - 1
            slot = seq % self.capacity
            self.skipped += max(0, seq - self._read)
            self._read = self._written
            return self._frames[slot].copy(), float(self._t[slot]), float(self._arrival[slot]), seq

    @property
    def last_time(self) -> float | None:
        with self._lock:
            return None if self._written == 0 else float(self._t[(self._written - 1) % self.capacity])


class AudioRing:
    """The last `capacity` mono samples at `rate` Hz; each push stamps the time of its last sample."""

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
        self.dropped = 0       # samples overwritten before the consumer read past them
        self._lock = threading.Lock()

    def push(self, samples: np.ndarray, t_end: float, arrival: float) -> None:
        x = np.asarray(samples, np.float32).reshape(-1)
        with self._lock:
            if x.size > self.capacity:
                self.dropped += x.size - self.capacity
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

    def latest(self, n: int) -> tuple[np.ndarray, float, float, int]:
        """(the newest min(n, available) samples, stream time and arrival of the last one, total written).

        Marks everything as read: the consumer never works through a backlog.
        """
        with self._lock:
            n = min(n, self._written, self.capacity)
            end = self._written % self.capacity
            idx = (np.arange(end - n, end)) % self.capacity
            out = self._buf[idx]
            self._read = self._written
            return out, self._t_end, self._arrival_end, self._written

    def since(self, count: int) -> np.ndarray:
        """Samples written after total count `count` (at most the capacity), without marking them read."""
        with self._lock:
            n = max(0, min(self._written - count, self.capacity))
            end = self._written % self.capacity
            return self._buf[(np.arange(end - n, end)) % self.capacity]

    @property
    def written(self) -> int:
        with self._lock:
            return self._written

    @property
    def last_time(self) -> float | None:
        with self._lock:
            return None if self._written == 0 else self._t_end

    def reset(self) -> None:
        """Forget the samples (a reopened device: old audio must not be stitched to new)."""
        with self._lock:
            self._buf[:] = 0.0
            self._written = self._read = 0
