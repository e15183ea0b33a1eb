"""How the recorder reads its sources into events ("V"|"A", t, data, discontinuity) and ("lost"|"back"|"ended",
kind, t, message): in real time, one thread per sensor on the runtime's capture loop (edge/live/capture.py), each
item stamped with its capture clock (a live device's time.monotonic(), a media file's own timeline); or, for media
files (`fast`), read in timestamp order as fast as the CPU allows, the clock being media time."""
from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

from edge.live.capture import capture, in_time_order
from edge.preprocess import CameraFrame
from edge.record.sensors import SourceError, SourceLost

KIND_NAME = {"V": "camera", "A": "microphone"}
BACKOFF_S = (0.1, 0.5)
QUEUE_ITEMS = 600          # ~7 s of 30 fps video + 50 audio blocks/s before anything is dropped


@dataclass
class Stats:
    frames_in: int = 0
    frames_dropped: int = 0        # queue full (the writer fell behind)
    samples_in: int = 0
    samples_dropped: int = 0
    lost: dict = field(default_factory=lambda: {"V": 0, "A": 0})
    gaps: list = field(default_factory=list)   # (kind, from, to) stalls longer than STALL_S


class CaptureThread(threading.Thread):
    """Reads one opened source, through the runtime's capture loop (edge/live/capture.py: a lost source is reopened
    with doubling backoff, 0.1 to 0.5 s), into `out` as ("V"|"A", t, data, discontinuity) and ("lost"|"back"|"ended",
    kind, t, message)."""

    def __init__(self, kind: str, source, out: queue.Queue, t0: float, stop: threading.Event, stats: Stats):
        super().__init__(name=f"record-{KIND_NAME[kind]}", daemon=True)
        self.kind, self.source, self.out, self.t0, self.stop_event, self.stats = kind, source, out, t0, stop, stats
        self.down = self.coming_back = self.disc = False
        self.skipped_seen = 0

    def _stamp(self, pts: float) -> float:
        """Session time of an item: a live device's capture stamp (time.monotonic()) less the session start; a
        media file's own timeline, shared by its video and audio (two readers of one file start a few tens of
        ms apart, and stamping each on arrival would record that as an offset between the streams)."""
        return pts if self.source.is_file else pts - self.t0

    def _now(self) -> float:
        return time.monotonic() - self.t0

    def run(self) -> None:
        capture(self.source, self, self.stop_event, BACKOFF_S)

    # ---- the capture loop's listener ----
    def lost(self, error: SourceLost, unexpected: bool) -> None:
        if not self.down:
            self.out.put(("lost", self.kind, self._now(), str(error)))
            self.down = True
        self.disc = True

    def back(self) -> None:
        self.down, self.coming_back = False, True

    def ended(self, error: SourceError | None) -> None:
        self.out.put(("ended", self.kind, self._now(), None if error is None else str(error)))

    def item(self, pts: float, data) -> None:
        if self.kind == "V":
            data = CameraFrame(data, self.source.bgr).rgb()  # the recorder keeps every frame
        t = self._stamp(pts)
        if self.coming_back:
            self.out.put(("back", self.kind, t, None))
            self.coming_back = False
        skipped = self.source.skipped + self.source.dropped
        if skipped != self.skipped_seen:
            self.skipped_seen, self.disc = skipped, True
        try:
            self.out.put_nowait((self.kind, t, data, self.disc))
            self.disc = False
        except queue.Full:
            if self.kind == "V":
                self.stats.frames_dropped += 1
            else:
                self.stats.samples_dropped += len(data)
            self.disc = True


class RealtimeCapture:
    def __init__(self, sources: dict, stats: Stats) -> None:
        self.t0 = time.monotonic()
        self.q: queue.Queue = queue.Queue(maxsize=QUEUE_ITEMS)
        self.stop_event = threading.Event()
        self.threads = [CaptureThread(k, s, self.q, self.t0, self.stop_event, stats) for k, s in sources.items()]
        for th in self.threads:
            th.start()

    def now(self) -> float:
        return time.monotonic() - self.t0

    def events(self, timeout: float = 0.02) -> list:
        out = []
        try:
            out.append(self.q.get(timeout=timeout))
            while len(out) < 64:
                out.append(self.q.get_nowait())
        except queue.Empty:
            pass
        return out

    def backlog(self) -> int:
        return self.q.qsize()

    def stop(self) -> None:
        self.stop_event.set()
        for th in self.threads:
            th.join(timeout=3.0)


class FastCapture:
    """Media-file sources read in timestamp order as fast as the CPU allows (the runtime's `in_time_order`, as
    `run_live.py --fast` reads them); the clock is media time."""

    def __init__(self, sources: dict, stopped: Callable[[], bool] = lambda: False) -> None:
        self.sources, self.stopped = sources, stopped
        self._merged = in_time_order(sources)
        self.down: dict[str, bool] = {k: False for k in sources}
        self.disc: dict[str, bool] = {k: False for k in sources}
        self._now = 0.0

    def now(self) -> float:
        return self._now

    def events(self, timeout: float = 0.0) -> list:
        """What happened up to and including the next item (all that is left at the end), or up to a failed read
        once `stopped()` says so (a source failing read after read brings no item to stop at)."""
        out = []
        for kind, what, pts, payload in self._merged:
            if what == "lost":
                if not self.down[kind]:
                    out.append(("lost", kind, self._now, str(payload)))
                    self.down[kind] = True
                self.disc[kind] = True
                if self.stopped():
                    return out
            elif what == "back":
                out.append(("back", kind, pts, None))
                self.down[kind] = False
            elif what == "ended":
                out.append(("ended", kind, self._now, None if payload is None else str(payload)))
            else:
                data = CameraFrame(payload, self.sources[kind].bgr).rgb() if kind == "V" else payload
                self._now = max(self._now, pts)
                out.append((kind, pts, data, self.disc[kind]))
                self.disc[kind] = False
                return out
        return out

    def backlog(self) -> int:
        return 0

    def stop(self) -> None:
        return None
