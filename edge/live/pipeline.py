"""The threaded pipeline: capture drivers around a Recognizer (edge/live/core.py), records out to sinks.

Two drivers feed the same core. Real time: one capture thread per sensor stamps each frame or audio block with
time.monotonic() and stores it in the core; when that makes a tick due it wakes the loop, which runs the tick at
once (so capture-to-prediction is the work, not a timer's wait) or, when data is late, at the instant's grace
deadline. Fast: one thread reads the sources in timestamp order, stamps data with its media time and ticks as
the media clock passes, so a file runs as fast as the CPU allows with every sampling decision the same.

`run_session` is the one way to run: run_live.py, the demo and every benchmark call it.
"""
from __future__ import annotations

import signal
import sys
import threading
import time
from dataclasses import dataclass
from typing import Callable, Sequence

from edge.bundle import Bundle
from edge.errors import PreprocessError
from edge.live.capture import capture, in_time_order
from edge.live.config import CaptureConfig, RuntimeConfig
from edge.live.console import warn
from edge.live.core import SENSORS, Recognizer
from edge.live.health import CONNECTED, ENDED, RECONNECTING, warm_up as health_warm_up
from edge.live.sensors import Sensor
from edge.live.sources import Source, SourceError, SourceLost
from edge.preprocess import CameraFrame

DEVICE = {"V": "camera", "A": "mic"}  # the name of each sensor in counters and thread names
Sink = Callable[[dict], None]


@dataclass
class Outcome:
    """What a session leaves: its summary record, why it made no usable prediction (None: it made some, or
    was stopped by the user before it could) and whether every sink took every record."""

    summary: dict
    diagnosis: str | None
    jsonl_complete: bool
    interrupted: bool


class CaptureThread(threading.Thread):
    """Reads one (already opened) source into the core through the one capture loop (edge/live/capture.py): a
    failing source is reopened with a backoff that doubles while the outage lasts; the outage (one warning, one
    count) ends at the next good read."""

    def __init__(self, session: "Session", m: str, source: Source, cfg: CaptureConfig) -> None:
        super().__init__(name=f"capture-{DEVICE[m]}", daemon=True)
        self.session, self.m, self.source, self.cfg = session, m, source, cfg
        self.core = session.core
        self.kind = DEVICE[m]

    def run(self) -> None:
        capture(self.source, self, self.session.stop_event, (self.cfg.backoff_initial_s, self.cfg.backoff_max_s))

    # ---- the capture loop's listener ----
    def item(self, pts: float, data: object) -> None:
        # A device stamps its own capture time (a microphone block: its callback); files: now.
        stamp = time.monotonic() if self.source.is_file else pts
        self.session.deliver(self.m, stamp, data, stamp)

    def lost(self, error: SourceLost, unexpected: bool) -> None:
        if unexpected:
            self.core.metrics.count(f"{self.kind}_errors")
        self.session.sensor_lost(self.m, error, say=True)
        self.session.wake.set()

    def back(self) -> None:
        if self.m == "A":  # a reopened microphone may run at another rate
            self.core.reset_audio(int(self.source.rate))
        self.core.set_state(self.m, CONNECTED)
        self.session.wake.set()

    def ended(self, error: SourceError | None) -> None:
        self.session.sensor_ended(self.m, error)
        self.session.wake.set()


class Session:
    """One run of a Recognizer over already opened sources, until the duration, the end of every file source,
    or stop(); every record goes to every sink."""

    def __init__(self, core: Recognizer, video: Sensor, audio: Sensor, sinks: Sequence[Sink] = (), *,
                 realtime: bool = True, duration_s: float | None = None) -> None:
        if video.source is None and audio.source is None:
            raise SourceError(f"neither a camera nor a microphone is left to run on (camera: {video.absent}, "
                              f"microphone: {audio.absent}).")
        self.core, self.sensors, self.sinks = core, {"V": video, "A": audio}, list(sinks)
        self.realtime, self.duration_s = realtime, duration_s
        self.stop_event, self.wake = threading.Event(), threading.Event()
        self.interrupted = False
        self._threads: dict[str, CaptureThread] = {}

    def stop(self, interrupted: bool = False) -> None:
        """Ask the run to end (from any thread or a signal handler); `interrupted`: the user asked."""
        self.interrupted = self.interrupted or interrupted
        self.stop_event.set()
        self.wake.set()

    def sensor_lost(self, m: str, error: SourceLost, *, say: bool) -> None:
        """A failed read: the sensor is reconnecting (counted once an outage; said too when `say`)."""
        if self.core.states[m] != RECONNECTING:
            self.core.metrics.count(f"{DEVICE[m]}_reconnects")
            if say:
                warn(f"{error} Reconnecting.")
            self.core.set_state(m, RECONNECTING)

    def sensor_ended(self, m: str, error: SourceError | None) -> None:
        """The sensor's source ended (None: a file's end) or cannot be had any more (said once per key)."""
        if error is not None:
            warn(str(error), key=error.key)
        self.core.set_state(m, ENDED)

    def deliver(self, m: str, t: float, data: object, arrival: float) -> bool:
        """Store one item in the core (a video source's frame given its one type, CameraFrame, here); True (and
        the loop woken) when it makes a tick due."""
        if m == "A":
            due = self.core.push_audio(t, data, arrival)
        else:
            try:
                frame = CameraFrame(data, bgr=self.sensors["V"].source.bgr)
            except PreprocessError as exc:  # a frame no conversion can use: counted, said once a session
                self.core.metrics.count("bad_frames")
                warn(f"{exc} Such frames are skipped.", key=f"bad_frames:{id(self)}")
                return False
            due = self.core.push_frame(t, frame, arrival)
        if due:
            self.wake.set()
        return due

    def _emit(self, records: list[dict]) -> None:
        for record in records:
            for sink in self.sinks:
                sink(record)

    def run(self) -> Outcome:
        """Run, close the sinks with the summary, and say why nothing usable came out if so."""
        self.core.student.warm_up()
        health_warm_up()
        try:
            if self.realtime:
                self._run_realtime()
            else:
                self._run_fast()
        finally:
            self._shutdown()
        self._emit(self.core.finish())
        for m, sensor in self.sensors.items():    # what the sources lost before the core saw it, when anything
            if sensor.source is not None:
                for what, n in (("late_skipped", sensor.source.skipped), ("dropped", sensor.source.dropped)):
                    if n:
                        self.core.metrics.counters[f"{DEVICE[m]}_{what}"] = n
        summary = self.core.summary(mode="realtime" if self.realtime else "fast")
        diagnosis = None if self.interrupted else diagnose(self.core, self.sensors, summary, self.duration_s)
        for sink in self.sinks:
            close = getattr(sink, "close", None)
            if close is not None:
                close(summary)
        complete = all(getattr(sink, "complete", True) for sink in self.sinks)
        return Outcome(summary, diagnosis, complete, self.interrupted)

    def _finished(self, t_rel: float) -> bool:
        if self.stop_event.is_set() or (self.duration_s is not None and t_rel >= self.duration_s):
            return True
        files = [m for m, s in self.sensors.items() if s.source is not None and s.source.is_file]
        return bool(files) and all(self.core.states[m] == ENDED for m in files)  # live devices never end a run

    def _run_realtime(self) -> None:
        origin = time.monotonic()
        self.core.reset(origin)
        for m, sensor in self.sensors.items():
            if sensor.source is not None:
                self._threads[m] = CaptureThread(self, m, sensor.source, self.core.cfg.capture)
                self._threads[m].start()
        end = origin + self.duration_s if self.duration_s is not None else float("inf")
        while True:
            self.wake.wait(max(0.0, min(self.core.next_deadline(), end) - time.monotonic()))
            self.wake.clear()
            now = time.monotonic()
            if self._finished(now - origin):
                return
            self._emit(self.core.tick(now))

    def _run_fast(self) -> None:
        """Read the sources in timestamp order (edge/live/capture.py), stamping data with media time; tick as the
        media clock passes."""
        self.core.reset(0.0)
        readers = {m: s.source for m, s in self.sensors.items() if s.source is not None}
        for m, what, pts, payload in in_time_order(readers):
            if what == "lost":
                if self.stop_event.is_set():   # asked to stop while a source fails read after read (no item to
                    return                     # check the stop at)
                self.sensor_lost(m, payload, say=False)   # media time goes on; the next good item reconnects
            elif what == "ended":
                self.sensor_ended(m, payload)
            elif what == "item":   # ("back" needs nothing: the item reconnects after the ticks its time makes due)
                while (deadline := self.core.next_deadline()) <= pts:  # an instant's data is late: it runs without
                    if self._finished(deadline):
                        return
                    self._emit(self.core.tick(deadline))
                if self._finished(pts):
                    return
                if self.core.states[m] == RECONNECTING:
                    self.core.set_state(m, CONNECTED)
                if self.deliver(m, pts, payload, time.monotonic()):
                    self._emit(self.core.tick(pts))

    def _shutdown(self) -> None:
        self.stop_event.set()
        for thread in self._threads.values():
            thread.join(timeout=2.0)
        for m, sensor in self.sensors.items():
            thread = self._threads.get(m)
            if sensor.source is not None and (thread is None or not thread.is_alive()):
                sensor.source.close()


def diagnose(core: Recognizer, sensors: dict[str, Sensor], summary: dict,
             duration_s: float | None = None) -> str | None:
    """Why a run made no usable prediction, in one sentence (None when it made one): a --duration too short for
    any prediction says so; else per sensor the cause when one is known (no data, too few frames per second,
    slower than real time, clipped audio); else a window that never filled; else the reason each modality was
    missing most often."""
    if summary["counters"].get("predictions", 0):
        return None
    window = core.pre.window_s
    too_short = (f"no usable prediction was made: the run ended before the model's {window:g} s token window "
                 "filled; run it for longer.")
    earliest = core.cfg.health.min_tokens["V"] / core.pre.sample_fps     # no prediction can come sooner
    if duration_s is not None and duration_s < earliest:
        return too_short
    missing = {m: core.missing[m].most_common(1)[0][0] if core.missing[m] else None for m in ("V", "A")}
    causes, generic = [], []
    video, audio = sensors["V"].source, sensors["A"].source
    if video is not None:
        fps, need = core.frame_rate(), core.pre.sample_fps
        if video.skipped > core.frames_received:
            causes.append(f"{video.name} decodes slower than real time ({video.skipped} of "
                          f"{video.skipped + core.frames_received} frames came too late and were skipped; "
                          "--fast runs it at its own pace)")
        elif core.frames_received == 0:
            causes.append(f"{video.name} delivered no frame that could be decoded")
        elif fps is None or fps < need:
            rate = "a single frame" if fps is None else f"{fps:.2g} frames per second"
            causes.append(f"{video.name} delivers {rate}, below the {need:g} per second the sampler needs")
        else:
            generic.append(f"video (V) was {missing['V']} throughout")
    if audio is not None:
        if core.audio_samples_received == 0:
            causes.append(f"{audio.name} delivered no audio")
        elif missing["A"] == "clipped":
            causes.append(f"{audio.name} is clipped throughout (full-scale samples)")
        else:
            generic.append(f"audio (A) was {missing['A']} throughout")
    in_use = [m for m, src in (("V", video), ("A", audio)) if src is not None]
    if not causes and {missing[m] for m in in_use} <= {"filling", "waiting", None}:
        return too_short
    return f"no usable prediction was made: {'; '.join(causes + generic)}."


def install_stop_handlers(session: Session) -> None:
    """Ctrl-C and SIGTERM stop the session cleanly (it then closes the sinks and prints the summary). Once a stop
    was asked, more of them are ignored, also while the interpreter shuts down (Python restores the default,
    fatal action for its own handlers then, but leaves an ignored signal ignored)."""
    def handler(signum, frame) -> None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        session.stop(interrupted=True)

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)


def recognizer_for(bundle: Bundle, cfg: RuntimeConfig, video: Sensor, audio: Sensor, **parts) -> Recognizer:
    """A Recognizer for these (opened) sensors: their states, the microphone's rate; `parts` (metrics, student,
    shedder) replace the core's own."""
    states = {m: CONNECTED if s.source is not None else s.absent for m, s in zip(SENSORS, (video, audio))}
    return Recognizer(bundle, cfg, states, None if audio.source is None else int(audio.source.rate), **parts)


EXIT_NO_PREDICTION, EXIT_JSONL_INCOMPLETE = 3, 4


def exit_status(outcome: Outcome) -> int:
    """Say what went wrong with a finished run, if anything (one sentence), and return its exit code."""
    if outcome.diagnosis is not None:
        print(f"error: {outcome.diagnosis}", file=sys.stderr)
        return EXIT_NO_PREDICTION
    if not outcome.jsonl_complete:
        print("error: the JSONL file is incomplete (a write failed; see the warning above).", file=sys.stderr)
        return EXIT_JSONL_INCOMPLETE
    return 0


def run_session(bundle: Bundle, cfg: RuntimeConfig, video: Sensor, audio: Sensor, sinks: Sequence[Sink] = (), *,
                realtime: bool = True, duration_s: float | None = None, core: Recognizer | None = None,
                on_start: Callable[[Session], None] | None = None, signals: bool = False) -> Outcome:
    """Run one session: a Recognizer (built for these sensors unless `core` is given), the drivers, the sinks.
    `on_start` sees the session before it runs (benchmarks start their schedulers); `signals` installs the
    Ctrl-C / SIGTERM handlers (main thread only)."""
    core = core or recognizer_for(bundle, cfg, video, audio)
    session = Session(core, video, audio, sinks, realtime=realtime, duration_s=duration_s)
    if signals:
        install_stop_handlers(session)
    if on_start is not None:
        on_start(session)
    return session.run()
