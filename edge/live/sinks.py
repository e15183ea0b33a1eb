"""Where records go: the JSONL file, the terminal status line, the overlay window.

A sink is a callable taking each record (prediction, event) as it is made; `close(summary)` ends it. Any
callable works as a sink (`records.append` collects them).
"""
from __future__ import annotations

import json
import os
import time
from typing import TYPE_CHECKING, Callable

from edge.errors import UsageError
from edge.live.config import RuntimeConfig
from edge.live.console import end_status, status, warn
from edge.live.core import Recognizer
from edge.live.metrics import status_line

if TYPE_CHECKING:
    from edge.live.pipeline import Session


class JsonlSink:
    """One JSON object per line, written unbuffered (no buffer that could flush half a line later). A write that
    fails (a full disk) is one warning: the file is cut back to its last whole line with os.ftruncate, nothing
    more is written, and `complete` turns False."""

    def __init__(self, path: str) -> None:
        self.path = path
        try:
            self._fh = open(path, "wb", buffering=0)    # raw: each write goes to the descriptor; closed on GC
        except OSError as exc:
            raise UsageError(f"cannot write the JSONL file {path} ({exc.strerror}).") from None
        self._good = 0
        self.complete = True

    def __call__(self, record: dict) -> None:
        if not self.complete:
            return
        data = (json.dumps(record) + "\n").encode()
        try:
            done = 0
            while done < len(data):
                done += self._fh.write(data[done:])
            self._good += len(data)
        except OSError as exc:
            self._fail(exc)

    def _fail(self, exc: OSError) -> None:
        self.complete = False
        warn(f"cannot write to the JSONL file {self.path} any more ({exc.strerror}); predictions go on, "
             "but the file ends at its last whole line.")
        try:
            os.ftruncate(self._fh.fileno(), self._good)
        except (OSError, ValueError):
            pass

    def close(self, summary: dict) -> None:
        """Write the summary record and close the file."""
        self(summary)
        self._fh.close()

    def append(self, record: dict) -> None:
        """One more record after the summary (the demo's score)."""
        if not self.complete:
            return
        try:
            self._fh = open(self.path, "ab", buffering=0)
        except OSError as exc:
            self.complete = False
            warn(f"cannot reopen the JSONL file {self.path} ({exc.strerror}); the demo's score is not in it.")
            return
        self.close(record)


class StatusSink:
    """The one-line terminal status (top prediction, per-modality badges, latency, drops), every `interval_s`."""

    def __init__(self, interval_s: float, drops: Callable[[], int]) -> None:
        self.interval_s, self.drops = interval_s, drops
        self._last = 0.0

    def __call__(self, record: dict) -> None:
        now = time.monotonic()
        if record["type"] == "prediction" and now - self._last >= self.interval_s:
            self._last = now
            status(status_line(record, record.get("missing", {}), self.drops()))

    def close(self, summary: dict) -> None:
        end_status()


class OverlaySink:
    """The --display window: the last sampled camera frame with the prediction and badges; closing it (or q /
    Esc) stops the session it is bound to."""

    def __init__(self, core: Recognizer) -> None:
        self.core = core
        self.stop: Callable[[], None] = lambda: None

    def bind(self, session: "Session") -> None:
        """Closing the window stops `session`."""
        self.stop = session.stop

    def __call__(self, record: dict) -> None:
        from edge.live.overlay import show

        frame = self.core.last_frame
        if record["type"] == "prediction" and frame is not None:
            if not show(frame.data.rgb(), record, record.get("missing", {})):
                self.stop()

    def close(self, summary: dict) -> None:
        from edge.live.overlay import close

        close()


def standard_sinks(jsonl: str | None, status_line_on: bool, cfg: RuntimeConfig, core: Recognizer) -> list:
    """The JSONL file (when a path is given) and the terminal status line (when stderr is a terminal)."""
    sinks: list = []
    if jsonl is not None:
        sinks.append(JsonlSink(jsonl))
    if status_line_on:
        sinks.append(StatusSink(cfg.status_interval_s,
                                lambda: core.frames.dropped + (core.audio.dropped if core.audio else 0)))
    return sinks
