"""Wiring: capture threads -> rings -> health mask -> streaming student -> events -> JSONL / status / display.

Predictions tick at twice the sampling rate; ticks alternate between a video tick (sample the freshest frame,
encode it and its flow) and an audio tick (encode the freshest audio window), so every prediction sees one
new token and the fusion model is the only thing that runs on every tick.

Two drivers share the same `step`: real time (capture threads stamp data with time.monotonic(), the loop
sleeps to each tick) and `fast` (one thread reads the sources in timestamp order and stamps data with its media
time, so a file runs as fast as the CPU allows while every sampling decision stays the same).
"""
from __future__ import annotations

import dataclasses
import json
import shutil
import sys
import threading
import time
from dataclasses import dataclass
from typing import IO, Callable

import numpy as np

from edge.bundle import Bundle
from edge.modalities import MODALITIES
from edge.errors import PreprocessError
from edge.live.config import CaptureConfig, RuntimeConfig
from edge.live.events import EventTracker
from edge.live.health import CONNECTED, ENDED, RECONNECTING, WAITING, AudioHealth, VideoHealth
from edge.live.health import warm_up as health_warm_up
from edge.live.metrics import Metrics, status_line
from edge.live.rings import AudioRing, FrameRing
from edge.live.shedding import LoadShedder
from edge.live.sources import STDERR_LOCK, Source, SourceError, SourceLost
from edge.live.streaming import StreamingStudent
from edge.preprocess import prepare_frame, to_rgb_uint8


DEVICE = {"V": "camera", "A": "mic"}  # the name of each sensor in counters and thread names


def warn(message: str) -> None:
    with STDERR_LOCK:  # not while a capture thread has the C libraries' stderr silenced
        sys.stderr.write(f"\nwarning: {message}\n")
        sys.stderr.flush()


class CaptureThread(threading.Thread):
    """Reads one (already opened) source into `deliver`. A failing source is closed and reopened with a
    backoff that doubles while the outage lasts; the outage (one warning, one count) ends at the next good read."""

    def __init__(self, source: Source, deliver: Callable[[float, np.ndarray, float], None], cfg: CaptureConfig,
                 metrics: Metrics, kind: str, stop: threading.Event,
                 on_reopen: Callable[[], None] | None = None) -> None:
        super().__init__(name=f"capture-{kind}", daemon=True)
        self.source, self.deliver, self.cfg, self.metrics, self.kind = source, deliver, cfg, metrics, kind
        self.stop, self.on_reopen = stop, on_reopen
        self.state = CONNECTED

    def run(self) -> None:
        backoff = self.cfg.backoff_initial_s
        while not self.stop.is_set():
            try:
                item = self.source.read()
            except SourceLost as exc:
                backoff = self._reopen(exc, backoff)
                continue
            except SourceError as exc:
                warn(str(exc))
                self.state = ENDED
                return
            except PreprocessError:  # one unusable frame (e.g. an unsupported pixel format): skip it
                self.metrics.count("bad_frames")
                continue
            except Exception as exc:  # a driver or decoder failing in a way nobody anticipated: reopen it
                self.metrics.count(f"{self.kind}_errors")
                backoff = self._reopen(SourceLost(f"{self.source.name} failed ({type(exc).__name__}: {exc})."),
                                       backoff)
                continue
            if item is None:
                self.state = ENDED
                return
            if self.state == RECONNECTING:
                if self.on_reopen is not None:
                    self.on_reopen()
                self.state = CONNECTED
                backoff = self.cfg.backoff_initial_s
            # A device stamps its own capture time (a microphone block: its callback); files: now.
            stamp = time.monotonic() if self.source.is_file else item[0]
            self.deliver(stamp, item[1], stamp)

    def _reopen(self, exc: SourceError, backoff: float) -> float:
        """Close, then try to open every `backoff` seconds (doubling); returns the next backoff."""
        if self.state != RECONNECTING:
            self.state = RECONNECTING
            self.metrics.count(f"{self.kind}_reconnects")
            warn(f"{exc} Reconnecting.")
        self.source.close()
        while not self.stop.wait(backoff):
            backoff = min(2 * backoff, self.cfg.backoff_max_s)
            try:
                self.source.open()
                return backoff
            except SourceError:
                continue
        return backoff


@dataclass
class Sensor:
    """One modality's source (None: not used) and its state when there is no source (why it is absent)."""

    source: Source | None
    absent: str = "off"


class Pipeline:
    """One run: owns the rings, the streaming student, health, shedding, events and the drivers; the
    sources come in already opened (so a microphone's actual rate is known)."""

    def __init__(self, bundle: Bundle, cfg: RuntimeConfig, video: Sensor, audio: Sensor, *,
                 realtime: bool = True, duration_s: float | None = None, jsonl: IO[str] | None = None,
                 status: bool = False, display: bool = False,
                 on_record: Callable[[dict], None] | None = None) -> None:
        if video.source is None and audio.source is None:
            raise SourceError(f"neither a camera nor a microphone is left to run on (camera: {video.absent}, "
                              f"microphone: {audio.absent}).")
        self.bundle, self.cfg, self.video, self.audio = bundle, cfg, video, audio
        self.sensors = {"V": video, "A": audio}
        self.pre = bundle.preprocess
        self.realtime, self.duration_s, self.jsonl = realtime, duration_s, jsonl
        self.status, self.display, self.on_record = status, display, on_record
        self.metrics = Metrics()
        self.student = StreamingStudent(bundle, cfg.health.min_tokens, self.metrics, cfg.flow.size, cfg.flow.backend)
        self.shedder = LoadShedder(cfg.shedding)
        self.events = EventTracker(cfg.events, bundle.labels)
        self.video_health, self.audio_health = VideoHealth(cfg.health), AudioHealth(cfg.health)
        # The ring keeps frames at the flow's size (the model's, unless flow.size asks for more).
        s = self.student.flow_side
        self._ring_pre = dataclasses.replace(self.pre, frame_size=s)
        self.frame_ring = FrameRing(cfg.capture.frame_ring, (s, s, 3))
        self.audio_ring: AudioRing | None = None
        if audio.source is not None:
            self._make_audio_ring()
        self.stop_event = threading.Event()
        self.states = {"V": CONNECTED if video.source is not None else video.absent,
                       "A": CONNECTED if audio.source is not None else audio.absent}
        self.display_frame: np.ndarray | None = None
        self.last_reasons: dict[str, str | None] = {}
        self._audio_seen = 0
        self._t_last = 0.0
        self._last_mask: tuple[bool, bool, bool] | None = None
        self._last_status = 0.0
        self._threads: dict[str, CaptureThread] = {}

    # ---- capture side (capture threads or the fast driver) ----
    def _make_audio_ring(self) -> None:
        rate = int(self.audio.source.rate)
        self.audio_ring = AudioRing(int(self.cfg.capture.audio_ring_s * rate), rate)
        self._audio_seen = 0

    def push_frame(self, t: float, data: np.ndarray, arrival: float) -> None:
        try:
            with self.metrics.time("frame_prepare"):
                frame = prepare_frame(to_rgb_uint8(data, bgr=False), self._ring_pre)
        except PreprocessError as exc:
            self.metrics.count("bad_frames")
            if self.metrics.counters["bad_frames"] == 1:
                warn(f"{exc} Such frames are skipped.")
            return
        self.frame_ring.push(frame, t, arrival)
        self.display_frame = data

    def push_audio(self, t: float, block: np.ndarray, arrival: float) -> None:
        self.audio_ring.push(block, t, arrival)

    def _audio_reopened(self) -> None:
        # A reopened microphone may run at another rate, and old audio must not be stitched to new.
        self._make_audio_ring()

    # ---- one prediction tick ----
    def step(self, now: float, t_rel: float, video_tick: bool) -> dict | None:
        """One tick at stream time `now` (the rings' clock); returns the prediction record (None: no new input)."""
        tick_start = time.perf_counter()
        latest = self.frame_ring.latest() if self.video.source is not None else None
        frame = None if latest is None else prepare_frame(latest[0], self.pre)  # the model's size
        v_reason = self.video_health.update(now, self.states["V"],
                                            None if latest is None else (frame, latest[1], latest[3]))
        a_reason = self._audio_health(now)
        flow_scale = self.shedder.flow_scale
        flow_ms = 0.0
        if video_tick:
            if v_reason is None:
                flow_ms = self.student.add_frame(frame, latest[2], flow_scale, flow_frame=latest[0])
            else:
                self.student.reset_video()
        else:
            a_reason = self._encode_audio(a_reason)
        reasons = {"V": v_reason, "F": v_reason or (None if flow_scale is not None else "shed"), "A": a_reason}
        self.last_reasons = reasons
        mask = tuple(reasons[m] is None and self.student.ready(m) for m in MODALITIES)
        fresh = mask[0] if video_tick else mask[2]
        if any(mask) and not fresh and mask == self._last_mask:
            # Nothing in use changed since the last prediction (e.g. audio alone on a video tick): fusion
            # would repeat it with an older capture time, so this tick predicts nothing.
            self.metrics.count("ticks_without_new_input")
            return None
        self._last_mask = mask
        record, finished = self._predict(t_rel, mask, reasons)
        record["flow_scale"] = flow_scale
        tick_ms = (time.perf_counter() - tick_start) * 1000.0
        self.metrics.stage("tick_video" if video_tick else "tick_audio", tick_ms)
        if video_tick:
            self.shedder.update(tick_ms, flow_ms)
        for rec in (record, *finished):
            self._emit(rec)
        return record

    def _encode_audio(self, a_reason: str | None) -> str | None:
        """Encode the freshest audio window when A is usable; returns A's (possibly new) missing reason."""
        if a_reason is not None:
            self.student.reset_audio()
            return a_reason
        ring = self.audio_ring  # one ring for this tick: a reopened microphone swaps it from its thread
        window, _, arrival, _ = ring.latest(int(round(self.pre.audio_window_s * ring.rate)))
        try:
            self.student.add_audio(window, ring.rate, arrival)
        except PreprocessError:  # NaN/Inf that arrived after the health check
            self.student.reset_audio()
            return "NaN/Inf samples"
        return None

    def _predict(self, t_rel: float, mask: tuple[bool, bool, bool],
                 reasons: dict[str, str | None]) -> tuple[dict, list[dict]]:
        """Fusion over the token rings (or the reason there is no prediction); the record and finished events."""
        modalities = [m for m, on in zip(MODALITIES, mask) if on]
        record = {"type": "prediction", "t": round(t_rel, 3), "modalities": modalities, "verb": None,
                  "noun": None, "confidence": None, "latency_ms": None}
        if modalities:
            verb_p, noun_p = self.student.predict(mask)
            v, n = int(verb_p.argmax()), int(noun_p.argmax())
            latency = (time.monotonic() - self.student.newest_arrival(mask)) * 1000.0
            self.metrics.capture_to_prediction.add(latency)
            self.metrics.count("predictions")
            for m in modalities:
                self.metrics.modality_use[m] += 1
            record.update(verb=self.bundle.labels["verb"][v], noun=self.bundle.labels["noun"][n],
                          confidence=round(float(verb_p[v] * noun_p[n]), 4),
                          verb_confidence=round(float(verb_p[v]), 4), noun_confidence=round(float(noun_p[n]), 4),
                          latency_ms=round(latency, 2), state="ok")
            finished = self.events.update(t_rel, verb_p, noun_p, modalities)
        else:
            waiting = any(reasons[m] in (None, WAITING) for m in MODALITIES)
            record["state"] = "warming_up" if waiting else "no_input"
            self.metrics.count(record["state"])
            finished = self.events.update(t_rel, None, None, [])
        missing = {m: r if r is not None else "filling" for m, r in reasons.items() if m not in modalities}
        if missing:
            record["missing"] = missing
        return record, finished

    def _audio_health(self, now: float) -> str | None:
        ring = self.audio_ring
        if ring is None:
            return self.audio_health.update(now, self.states["A"], None, np.zeros(0, np.float32))
        written = ring.written
        new = ring.since(self._audio_seen) if written > self._audio_seen else np.zeros(0, np.float32)
        self._audio_seen = written
        return self.audio_health.update(now, self.states["A"], ring.last_time, new)

    def _emit(self, record: dict) -> None:
        if self.jsonl is not None:
            self.jsonl.write(json.dumps(record) + "\n")
            self.jsonl.flush()
        if self.on_record is not None:
            self.on_record(record)
        if record["type"] == "event":
            self.metrics.count("events")

    # ---- drivers ----
    def run(self) -> dict:
        """Run until the duration, the end of every file source, or stop(); return the summary record."""
        self.student.warm_up()
        health_warm_up()
        try:
            if self.realtime:
                self._run_realtime()
            else:
                self._run_fast()
        finally:
            self._shutdown()
        for ev in self.events.flush(self._t_last):
            self._emit(ev)
        summary = self.metrics.summary(
            events=self.events.emitted, bundle=self.bundle.manifest["name"], precision=self.bundle.precision,
            frame_ring={"dropped": self.frame_ring.dropped, "skipped": self.frame_ring.skipped},
            audio_ring_dropped=self.audio_ring.dropped if self.audio_ring else 0,
            shedding={"final_level": self.shedder.level, "escalations": self.shedder.escalations},
            mode="realtime" if self.realtime else "fast")
        if self.status:
            sys.stderr.write("\n")
        self._emit(summary)
        return summary

    def stop(self) -> None:
        self.stop_event.set()

    def _finished(self, t_rel: float) -> bool:
        if self.stop_event.is_set() or (self.duration_s is not None and t_rel >= self.duration_s):
            return True
        files = [m for m, s in self.sensors.items() if s.source is not None and s.source.is_file]
        return bool(files) and all(self.states[m] == ENDED for m in files)  # live devices never end a run

    def _run_realtime(self) -> None:
        sources = (("V", self.video.source, self.push_frame, None),
                   ("A", self.audio.source, self.push_audio, self._audio_reopened))
        for m, source, deliver, on_reopen in sources:
            if source is not None:
                self._threads[m] = CaptureThread(source, deliver, self.cfg.capture, self.metrics,
                                                 DEVICE[m], self.stop_event, on_reopen)
                self._threads[m].start()
        period = 0.5 / self.pre.sample_fps
        origin = time.monotonic()
        k = 0
        self._t_last = 0.0
        while True:
            wait = origin + k * period - time.monotonic()
            if wait > 0 and self.stop_event.wait(wait):
                break
            now = time.monotonic()
            behind = int((now - origin - k * period) / period)
            if behind > 0:  # the loop fell behind: skip ticks, never queue them
                self.metrics.count("late_ticks", behind)
                k += behind
            for m, thread in self._threads.items():
                self.states[m] = thread.state
            self._t_last = now - origin
            if self._finished(self._t_last):
                break
            record = self.step(now, self._t_last, video_tick=k % 2 == 0)
            self._after_tick(record)
            k += 1

    def _run_fast(self) -> None:
        """Read sources in timestamp order, stamping data with media time; tick whenever time passes a tick."""
        heads: dict[str, tuple[float, np.ndarray] | None] = {}
        readers = {m: s.source for m, s in self.sensors.items() if s.source is not None}
        push = {"V": self.push_frame, "A": self.push_audio}

        def advance(m: str) -> None:
            while True:
                try:
                    heads[m] = readers[m].read()
                except SourceLost:
                    if self.states[m] != RECONNECTING:  # media time goes on; the next good item reconnects it
                        self.metrics.count(f"{DEVICE[m]}_reconnects")
                        self.states[m] = RECONNECTING
                    continue
                except SourceError as exc:
                    warn(str(exc))
                    heads[m] = None
                if heads[m] is None:
                    self.states[m] = ENDED
                return

        for m in readers:
            advance(m)
        period = 0.5 / self.pre.sample_fps
        k = 0
        self._t_last = 0.0
        while True:
            live = {m: h for m, h in heads.items() if h is not None}
            next_tick = k * period
            if live and min(h[0] for h in live.values()) < next_tick:
                m = min(live, key=lambda key: live[key][0])
                pts, data = live[m]
                if self.states[m] == RECONNECTING:
                    self.states[m] = CONNECTED
                push[m](pts, data, time.monotonic())
                advance(m)
                continue
            self._t_last = next_tick
            if self._finished(next_tick):
                break
            record = self.step(next_tick, next_tick, video_tick=k % 2 == 0)
            self._after_tick(record)
            k += 1

    def _after_tick(self, record: dict | None) -> None:
        if record is None:
            return
        now = time.monotonic()
        if self.status and now - self._last_status >= self.cfg.status_interval_s:
            self._last_status = now
            drops = self.frame_ring.dropped + (self.audio_ring.dropped if self.audio_ring else 0)
            line = status_line(record, self.last_reasons, drops)
            width = max(40, shutil.get_terminal_size((120, 24)).columns - 1)
            sys.stderr.write("\r" + line[:width].ljust(width))
            sys.stderr.flush()
        if self.display and self.display_frame is not None:
            from edge.live.overlay import show

            if not show(self.display_frame, record, self.last_reasons):
                self.stop_event.set()

    def _shutdown(self) -> None:
        self.stop_event.set()
        for thread in self._threads.values():
            thread.join(timeout=2.0)
        for m, sensor in self.sensors.items():
            thread = self._threads.get(m)
            if sensor.source is not None and (thread is None or not thread.is_alive()):
                sensor.source.close()
        if self.display:
            from edge.live.overlay import close

            close()
