"""The recognizer core: no threads, no I/O. Push frames and audio with their capture times; `tick(now)` runs
whatever sampling instant their arrival made due and returns the prediction and finished events; `reset()`
starts over (in the spirit of openWakeWord's Model.predict).

Ticks are driven by arriving data. Video instants fall every 1 / sample_fps s from the origin, audio instants
half a period later; a video tick runs when the first frame at or after its instant has arrived (that frame is
the one sampled), an audio tick when the sample at its instant has arrived (the window ends there). An instant
whose data is `grace` late runs anyway with what there is (the freshest older frame, the newest audio), so a
lost sensor still yields predictions that say so. A frame is converted and downscaled only when it is looked at
(the sampled frame; the newest one at each tick, for the health monitor), never on arrival.

The core owns the rings, health, the availability mask (decided here and only here), load shedding, the
streaming student and the events; each part can be passed in (benchmarks record what the shedder sees).
"""
from __future__ import annotations

import collections
import math
import time

import numpy as np

from edge.bundle import Bundle
from edge.modalities import MODALITIES, best_action
from edge.errors import PreprocessError
from edge.live.config import RuntimeConfig
from edge.live.events import EventTracker
from edge.live.health import CONNECTED, ENDED, RECONNECTING, WAITING, AudioHealth, VideoHealth
from edge.live.metrics import Metrics
from edge.live.rings import AudioRing, Frame, FrameRing
from edge.live.shedding import LoadShedder
from edge.live.streaming import StreamingStudent
from edge.preprocess import CameraFrame

SENSORS = ("V", "A")  # the modalities with their own sensor and sampling instants (F comes with V)


class Recognizer:
    """One recognizer over a bundle. `states` gives each sensor's state: CONNECTED when it has a source, else
    why it is absent ("off", "no audio stream"); `audio_rate` is the microphone's rate (None: no audio)."""

    def __init__(self, bundle: Bundle, cfg: RuntimeConfig, states: dict[str, str], audio_rate: int | None = None,
                 *, metrics: Metrics | None = None, student: StreamingStudent | None = None,
                 shedder: LoadShedder | None = None) -> None:
        self.bundle, self.cfg, self.pre = bundle, cfg, bundle.preprocess
        self.metrics = metrics or Metrics()
        self.student = student or StreamingStudent(bundle, cfg.health.min_tokens, self.metrics, cfg.flow.size,
                                                   cfg.flow.backend)
        self.shedder = shedder or LoadShedder(cfg.shedding)
        self.period = {"V": 1.0 / self.pre.sample_fps, "A": self.pre.audio_hop_s}
        self.grace = {m: 0.5 * p for m, p in self.period.items()}
        self.present = {m: states[m] == CONNECTED for m in SENSORS}
        self.initial_states, self.audio_rate = dict(states), audio_rate
        self.reset()

    # ---- lifecycle ----
    def reset(self, origin: float = 0.0) -> None:
        """Start over at stream time `origin`: empty rings, fresh health, student, events and schedule (the load
        shedder keeps its level and the metrics their counts: they describe the machine and the session)."""
        self.origin = origin
        self.states = dict(self.initial_states)
        self.frames = FrameRing(self.cfg.capture.frame_ring)
        self.audio: AudioRing | None = None
        if self.audio_rate is not None:
            self.reset_audio(self.audio_rate)
        self.video_health, self.audio_health = VideoHealth(self.cfg.health), AudioHealth(self.cfg.health)
        self.student.reset_video()
        self.student.reset_audio()
        self.events = EventTracker(self.cfg.events, self.bundle.labels, self.bundle.actions)
        self._next = {"V": origin, "A": origin + 0.5 * self.period["V"]}
        self._seen: tuple[np.ndarray, float, int] | None = None  # the health monitor's view: (frame, t, seq)
        self._encoded = self._failed = -1  # the last frame encoded, the last that could not be converted
        self._stale_checked = {m: -math.inf for m in SENSORS}  # newest data time already checked for staleness
        self.last_frame: Frame | None = None
        self._last_mask: tuple[bool, bool, bool] | None = None
        self._t_last = 0.0
        self._first_frame_t: float | None = None
        self.frames_received = 0
        self.audio_samples_received = 0
        self.missing: dict[str, collections.Counter] = {m: collections.Counter() for m in MODALITIES}

    def reset_audio(self, rate: int) -> None:
        """A new (or reopened) microphone at `rate`: old audio must not be stitched to new."""
        self.audio_rate = rate
        self.audio = AudioRing(int(self.cfg.capture.audio_ring_s * rate), rate)

    def set_state(self, modality: str, state: str) -> None:
        """What the capture side knows about a sensor: CONNECTED, RECONNECTING or ENDED."""
        self.states[modality] = state

    # ---- input (any thread; only stores) ----
    def push_frame(self, t: float, frame: CameraFrame, arrival: float) -> bool:
        """Store one captured frame; True when it makes a video tick due."""
        if not isinstance(frame, CameraFrame):
            raise TypeError(f"push_frame takes a CameraFrame (edge.preprocess), got {type(frame).__name__}.")
        self.frames.push(frame, t, arrival)
        self.frames_received += 1
        if self._first_frame_t is None:
            self._first_frame_t = t
        return t >= self._next["V"]

    def push_audio(self, t_end: float, block: np.ndarray, arrival: float) -> bool:
        """Store one mono block whose last sample is at `t_end`; True when it makes an audio tick due."""
        ring = self.audio
        ring.push(block, t_end, arrival)
        self.audio_samples_received += len(block)
        return t_end >= self._next["A"]

    # ---- ticks ----
    def next_deadline(self) -> float:
        """The latest stream time by which the next tick runs even if no data comes: an instant's grace, or the
        moment a sensor in use goes stale."""
        instants = [self._next[m] + self.grace[m] for m in SENSORS if self.present[m]]
        return min([*instants, *self._stale_deadlines().values()], default=math.inf)

    def _last_time(self, m: str) -> float | None:
        return self.frames.last_time if m == "V" else (self.audio.last_time if self.audio else None)

    def _due(self, m: str, instant: float, now: float) -> bool:
        last = self._last_time(m)
        return (last is not None and last >= instant) or now >= instant + self.grace[m]

    def _stale_deadlines(self) -> dict[str, float]:
        """For each sensor in use whose newest data has not been checked yet: when that data turns stale."""
        out = {}
        for m in SENSORS:
            last = self._last_time(m)
            if self._last_mask and self._last_mask[MODALITIES.index(m)] and last is not None \
                    and last > self._stale_checked[m]:
                out[m] = last + self.cfg.health.stale_s + 1e-3
        return out

    def tick(self, now: float) -> list[dict]:
        """Run every tick that is due at stream time `now`; returns the prediction records and finished events.
        Instants that are overdue with a later one also due are skipped (counted as late_ticks), never queued."""
        out: list[dict] = []
        while True:
            due = [m for m in SENSORS if self.present[m] and self._due(m, self._next[m], now)]
            if not due:
                return out or self._health_tick(now)
            m = min(due, key=lambda key: self._next[key])
            instant = self._next[m]
            while self._due(m, instant + self.period[m], now):
                instant += self.period[m]
                self.metrics.count("late_ticks")
            self._next[m] = instant + self.period[m]
            out += self._video_tick(instant, now) if m == "V" else self._audio_tick(instant, now)

    def _video_tick(self, instant: float, now: float) -> list[dict]:
        start = time.perf_counter()
        frame = self.frames.sample(instant) or self.frames.latest()  # no frame after the instant: the freshest
        self.frames.wanted_from = instant + self.period["V"]
        self._look_at(frame, self.student.flow_side)
        v_reason = self.video_health.update(now, self.states["V"], self._seen)
        flow_scale = self.shedder.flow_scale
        flow_ms, added = 0.0, None
        if v_reason is not None:
            self.student.reset_video()
        elif frame is not None and frame.seq == self._seen[2] and frame.seq != self._encoded:
            small, side = self._seen[0], self.student.flow_side
            with self.metrics.time("frame_prepare"):
                flow_frame = frame.data.prepared(side)[0]  # mostly prepared already, with the model's size
            flow_ms = self.student.add_frame(small, frame.arrival, flow_scale, flow_frame=flow_frame)
            self._encoded, self.last_frame, added = frame.seq, frame, "V"
        records = self._predict(instant, v_reason, self._audio_reason(now), added, flow_scale)
        tick_ms = (time.perf_counter() - start) * 1000.0
        self.metrics.stage("tick_video", tick_ms)
        self.shedder.update(tick_ms, flow_ms)
        return records

    def _health_tick(self, now: float) -> list[dict]:
        """Between instants (a sensor's state changed, or its data went stale): a modality in use that is now
        missing is said at once, with a prediction from what is left; anything else waits for its instant."""
        if self._last_mask is None:
            return []
        for m, deadline in self._stale_deadlines().items():
            if now >= deadline:
                self._stale_checked[m] = self._last_time(m)
        v_reason = self.video_health.update(now, self.states["V"], self._seen)
        a_reason = self._audio_reason(now)
        lost = [m for m, reason in (("V", v_reason), ("A", a_reason))
                if reason is not None and self._last_mask[MODALITIES.index(m)]]
        if not lost:
            return []
        if v_reason is not None:
            self.student.reset_video()
        if a_reason is not None:
            self.student.reset_audio()
        return self._predict(now, v_reason, a_reason, None, self.shedder.flow_scale)

    def _look_at(self, frame: Frame | None, flow_side: int | None = None) -> None:
        """Give the health monitor its view of `frame` (model size, prepared once per frame): every tick looks
        at the newest frame, so a frozen or black camera is noticed at the tick rate, not the sampling rate.
        A video tick also asks for `flow_side`, the size it will encode flow at, in the same conversion."""
        if frame is None or frame.seq in (self._failed, -1 if self._seen is None else self._seen[2]):
            return
        sizes = (self.pre.frame_size,) if flow_side is None else (self.pre.frame_size, flow_side)
        try:
            with self.metrics.time("frame_prepare"):
                self._seen = (frame.data.prepared(*sizes)[0], frame.t, frame.seq)
        except PreprocessError:  # e.g. a float frame holding NaN: unusable, like a missing one
            self._failed = frame.seq
            self.metrics.count("bad_frames")

    def _audio_tick(self, instant: float, now: float) -> list[dict]:
        start = time.perf_counter()
        a_reason = self._audio_reason(now)
        if a_reason is None:
            ring = self.audio  # one ring for this tick: a reopened microphone swaps it from its thread
            window, arrival = ring.window(instant, int(round(self.pre.audio_window_s * ring.rate)))
            try:
                self.student.add_audio(window, ring.rate, arrival)
            except PreprocessError:  # NaN/Inf that arrived after the health check
                a_reason = "NaN/Inf samples"
        if a_reason is not None:
            self.student.reset_audio()
        if self.present["V"]:
            self._look_at(self.frames.peek())
        v_reason = self.video_health.update(now, self.states["V"], self._seen)
        if v_reason is not None:
            self.student.reset_video()
        records = self._predict(instant, v_reason, a_reason, "A" if a_reason is None else None,
                                self.shedder.flow_scale)
        self.metrics.stage("tick_audio", (time.perf_counter() - start) * 1000.0)
        return records

    def _audio_reason(self, now: float) -> str | None:
        ring = self.audio
        if ring is None:
            return self.audio_health.update(now, self.states["A"], None, np.zeros(0, np.float32))
        return self.audio_health.update(now, self.states["A"], ring.last_time, ring.unread())

    def _predict(self, instant: float, v_reason: str | None, a_reason: str | None, added: str | None,
                 flow_scale: float | None) -> list[dict]:
        """The availability mask (the one place it is decided), then fusion or the reason there is none.
        `added`: the modality this tick gave a new token (None: none); flow goes with video, unless shed."""
        reasons = {"V": v_reason, "F": v_reason or (None if flow_scale is not None else "shed"), "A": a_reason}
        mask = tuple(reasons[m] is None and self.student.ready(m) for m in MODALITIES)
        fresh = added is not None and mask[MODALITIES.index(added)]
        if any(mask) and not fresh and mask == self._last_mask:
            # No new token and nothing in use changed since the last prediction (e.g. audio alone on a video
            # tick): fusion would repeat it with an older capture time, so this tick predicts nothing.
            self.metrics.count("ticks_without_new_input")
            return []
        for m in SENSORS:       # a sensor in use stopped delivering: how long after its last data this says so
            i = MODALITIES.index(m)
            dropped = self._last_mask and self._last_mask[i] and not mask[i]
            if dropped and reasons[m] in ("stale", RECONNECTING, ENDED):     # not black, silent...: data flows
                last = self._last_time(m)
                if last is not None:
                    self.metrics.loss_to_prediction.add(max(0.0, instant - last) * 1000.0)
        self._last_mask = mask
        t_rel = self._t_last = instant - self.origin
        modalities = [m for m, on in zip(MODALITIES, mask) if on]
        record = {"type": "prediction", "t": round(t_rel, 3), "modalities": modalities, "verb": None,
                  "noun": None, "confidence": None, "latency_ms": None}
        self.metrics.count("prediction_records")
        if modalities:
            verb_p, noun_p = self.student.predict(mask)
            v, n = best_action(verb_p, noun_p, self.bundle.actions)
            latency = (time.monotonic() - self.student.newest_arrival(mask)) * 1000.0
            if fresh:       # a new token made it: capture-to-prediction
                self.metrics.capture_to_prediction.add(latency)
            else:           # a health change made it (a sensor lost between instants): its data's age, apart
                self.metrics.count("health_change_predictions")
            self.metrics.count("predictions")
            for m in modalities:
                self.metrics.modality_use[m] += 1
            labels = self.bundle.labels
            record.update(verb=labels["verb"][v], noun=labels["noun"][n],
                          confidence=round(float(verb_p[v] * noun_p[n]), 4),
                          verb_confidence=round(float(verb_p[v]), 4), noun_confidence=round(float(noun_p[n]), 4),
                          latency_ms=round(latency, 2) if fresh else None,
                          **({} if fresh else {"data_age_ms": round(latency, 2)}), state="ok")
            finished = self.events.update(t_rel, verb_p, noun_p, modalities)
        else:
            waiting = any(reasons[m] in (None, WAITING) for m in MODALITIES)
            record["state"] = "warming_up" if waiting else "no_input"
            self.metrics.count(record["state"])
            finished = self.events.update(t_rel, None, None, [])
        missing = {m: r if r is not None else "filling" for m, r in reasons.items() if m not in modalities}
        for m, r in missing.items():
            self.missing[m][r] += 1
        if missing:
            record["missing"] = missing
        record["flow_scale"] = flow_scale
        self.metrics.count("events", len(finished))
        return [record, *finished]

    # ---- end of a run ----
    def finish(self) -> list[dict]:
        """Close the open action event at the last prediction's time."""
        finished = self.events.flush(self._t_last)
        self.metrics.count("events", len(finished))
        return finished

    def frame_rate(self) -> float | None:
        """Frames per second received so far (None before two frames)."""
        last = self.frames.last_time
        if self.frames_received < 2 or last is None or last <= self._first_frame_t:
            return None
        return (self.frames_received - 1) / (last - self._first_frame_t)

    def summary(self, **extra) -> dict:
        """The run's summary record (the metrics' summary with the rings, shedding and missing reasons)."""
        return self.metrics.summary(
            events=self.events.emitted, bundle=self.bundle.manifest["name"], precision=self.bundle.precision,
            frame_ring={"dropped": self.frames.dropped, "skipped": self.frames.skipped},
            audio_ring_dropped=self.audio.dropped if self.audio else 0,
            shedding={"final_level": self.shedder.level, "escalations": self.shedder.escalations},
            missing={m: dict(c) for m, c in self.missing.items() if c}, **extra)
