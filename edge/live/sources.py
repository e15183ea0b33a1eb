"""Sensor sources behind one small interface: open(), read() -> (pts_s, data) | None at the end, close().

Video sources return frames as captured, unconverted (only the frames the sampler takes are converted): arrays
in RGB order, or in BGR where the source says `bgr` (OpenCV), or PyAV frames not yet converted to RGB (files);
audio sources return mono float32 blocks. Every source declares what it delivers: `bgr` (colour order), `rate`
(a microphone's samples per second; the frames per second a camera or video file states once open, None when it
states none), `skipped` (items a file's pacer dropped because they were already late: a source slower than real
time) and `dropped` (items the driver lost before a read took them: a microphone's overflowed blocks).
`pts_s` is the source's own timeline in seconds: media time for files and arrays, and for live devices
(is_file False) the time.monotonic() of the capture itself, which the capture thread uses as the stamp.
read() raises SourceLost when a running source fails (the capture thread reopens it with backoff; --fast, at
once);
open() raises SourceError with one sentence when the source cannot be had at all.
"""
from __future__ import annotations

import os
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Protocol

import numpy as np

from edge.errors import EdgeError
from edge.live.console import STDERR_LOCK

DEMO_HINT = "run `karmma-live --demo` (or `python run_live.py --demo`) to see the recognizer on its demo stream"


@contextmanager
def quiet_c_stderr() -> Iterator[None]:
    """Silence file descriptor 2 for a moment: ALSA and PortAudio print several lines of their own straight to
    it each time a vanished microphone fails to reopen, burying the one sentence the user should read."""
    with STDERR_LOCK:
        sys.stderr.flush()
        saved = os.dup(2)
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 2)
            os.close(devnull)
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)


class SourceError(EdgeError):
    """A sensor that cannot be opened or read (one sentence for the user)."""

    key: str | None = None   # said once per key (edge.live.console.warn), e.g. once per truncated file


class SourceLost(SourceError):
    """A running sensor that failed; the capture thread reopens it with backoff."""


class NoAudioStream(SourceError):
    """A media file given as the microphone has no audio stream: the run goes on with audio missing."""


class Truncated(SourceError):
    """A media file that stops well before the duration it states (said once per file, not per stream)."""

    def __init__(self, message: str, path: Path) -> None:
        super().__init__(message)
        self.key = f"truncated:{path}"


class Source(Protocol):
    name: str
    is_file: bool

    @property
    def bgr(self) -> bool:
        """Video: array frames come in OpenCV's BGR order (else RGB, or PyAV frames)."""

    @property
    def rate(self) -> float | None:
        """Audio: samples per second; video: the frames per second it states once open (None: none)."""

    @property
    def skipped(self) -> int:
        """Items a file's pacer dropped because they were already late."""

    @property
    def dropped(self) -> int:
        """Items the driver lost before a read took them (a microphone's overflows)."""

    def open(self) -> None: ...

    def read(self) -> tuple[float, np.ndarray] | None: ...

    def close(self) -> None: ...


class Pacer:
    """Releases timestamped items at their own speed; items already later than `late_s` are skipped.

    Skipping late items is what a live sensor does after a stall: it never delivers a backlog.
    """

    def __init__(self, realtime: bool, late_s: float = 0.2) -> None:
        self.realtime = realtime
        self.late_s = late_s
        self.skipped = 0
        self._origin: float | None = None

    @property
    def origin(self) -> float | None:
        """The monotonic time at which pts 0 was due (None before the first item)."""
        return self._origin

    def due(self, pts_s: float) -> bool:
        """Wait until `pts_s` is due; False when the item is too late and should be skipped."""
        if not self.realtime:
            return True
        now = time.monotonic()
        if self._origin is None:
            self._origin = now - pts_s
        wait = self._origin + pts_s - now
        if wait > 0:
            time.sleep(wait)
        elif -wait > self.late_s:
            self.skipped += 1
            return False
        return True
