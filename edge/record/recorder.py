"""The recording session: capture -> one media file, prompts -> takes -> CSV rows.

Real time: one capture thread per sensor stamps each item with its capture clock (a live device's
time.monotonic(); a media file's own timeline) and queues it; the main thread
writes the file, runs the prompts and reads keys, so a slow terminal never costs a frame. `fast` (media
files only): one thread reads the sources in timestamp order and the session clock is media time, so
takes and timers run on the stream's own time as fast as the CPU allows (tests).

Guided mode walks the plan's remaining takes: countdown, "now: <prompt>", stop, pause; with `interactive`
each take waits for Enter first. Free mode (edge/record/free.py) records continuously and keys mark segments
of the current action. A take (or segment) during which a sensor was lost, dropped data or stalled is marked
in the session log and asked for again. A take's CSV row is appended (atomically) once its media is on disk.
"""
from __future__ import annotations

import json
import sys
import time
from typing import IO

import numpy as np

from edge.errors import EdgeError
from edge.record.folder import FolderError, OutputFolder
from edge.record.plan import Plan, Take
from edge.record.capture import KIND_NAME, FastCapture, RealtimeCapture, Stats
from edge.record.free import FreeSegments
from edge.record.keys import KeyReader
from edge.record.writer import DiskFull, SessionWriter, WriteError, readable_end

STALL_S = 0.5              # a sensor silent this long inside a take spoils it


class Recorder:
    def __init__(self, plan: Plan, folder: OutputFolder, video=None, audio=None, *, realtime: bool = True,
                 interactive: bool = False, free: bool = False, duration_s: float | None = None,
                 fps: float = 30.0, quality: int = 3, keys: KeyReader | None = None, out: IO = None) -> None:
        if video is None and audio is None:
            raise EdgeError("give a sensor to record with --camera and/or --mic.")
        self.plan, self.folder, self.realtime = plan, folder, realtime
        self.sources = {k: s for k, s in (("V", video), ("A", audio)) if s is not None}
        self.interactive, self.duration_s = interactive, duration_s
        self.keys = keys
        self.out = out or sys.stdout
        self.media_path = folder.new_session()
        self.media_rel = folder.relative(self.media_path)
        self.writer = SessionWriter(self.media_path, video=video is not None,
                                    audio_rate=audio.rate if audio is not None else None,
                                    fps=fps, quality=quality)
        self.stats = Stats()
        self.stop_requested = False
        self.interrupted = False
        self.end_reason: str | None = None
        self.source_ended = False
        self.failure: EdgeError | None = None
        self.down: dict[str, tuple[float, str]] = {}
        self.losses: list[tuple[str, float, float, str]] = []     # (kind, from, to, why)
        self.last_t: dict[str, float] = {}
        self.pending: list[tuple[Take, dict]] = []
        self.kept: list[Take] = []
        self.rejected: list[tuple[Take, str]] = []
        self.committed = 0
        self.backlog = 0           # items captured but not yet handled
        self.log_path = self.media_path.with_suffix(".log.jsonl")
        self._log = None
        done = folder.counts()
        self.done = {(a.verb, a.noun): done.get((a.verb, a.noun), 0) for a in plan.actions}
        self.todo: list[Take] = [Take(a, k, a.splits[k]) for a in plan.actions
                                 for k in range(min(self.done[(a.verb, a.noun)], a.takes), a.takes)]
        self.already = sum(min(self.done[(a.verb, a.noun)], a.takes) for a in plan.actions)
        # guided state
        self.state = "waiting"
        self.take: Take | None = None
        self.t_state = 0.0
        self.said = None
        self.free_mode = FreeSegments(self) if free else None

    # ---- output ---------------------------------------------------------------------------------------------
    def say(self, text: str) -> None:
        self.out.write(text + "\n")
        self.out.flush()

    def log(self, take: Take, status: str, why: str | None = None) -> None:
        if self._log is None:
            self._log = open(self.log_path, "a", encoding="utf-8")
        rec = {"verb": take.action.verb, "noun": take.action.noun, "take": take.index + 1, "split": take.split,
               "attempt": take.attempt, "status": status, "start": round(self._file_t(take.start), 3),
               "end": round(self._file_t(take.end), 3)}
        if why:
            rec["why"] = why
        self._log.write(json.dumps(rec) + "\n")
        self._log.flush()

    def _file_t(self, t: float) -> float:
        return t - (self.writer.origin or 0.0)

    # ---- events ---------------------------------------------------------------------------------------------
    def handle(self, ev: tuple) -> None:
        kind = ev[0]
        if kind == "V":
            _, t, frame, _disc = ev
            self._gap("V", t)
            self.stats.frames_in += 1
            self.writer.add_video(t, frame)
        elif kind == "A":
            _, t, block, disc = ev
            self.stats.samples_in += len(block)
            if disc and "A" in self.last_t:
                self.losses.append(("A", self.last_t["A"], t, "the microphone dropped audio"))
            self._gap("A", t)
            self.writer.add_audio(t, block, disc)
        elif kind == "lost":
            _, k, t, msg = ev
            self.stats.lost[k] += 1
            self.down[k] = (t, f"the {KIND_NAME[k]} was lost: {(msg or 'no data').rstrip('.')}")
            self.say(f"warning: {msg} Reconnecting.")
        elif kind == "back":
            _, k, t, _ = ev
            since, msg = self.down.pop(k, (t, ""))
            self.losses.append((k, since, t, msg.rstrip(".")))
            self.say(f"the {KIND_NAME[k]} is back.")
        elif kind == "ended":
            _, k, t, msg = ev
            if msg:
                self.say(f"warning: {msg}")
            self.end_reason = msg or f"the {KIND_NAME[k]}'s media file ended"
            self.source_ended = True
            self.stop_requested = True

    def _gap(self, k: str, t: float) -> None:
        last = self.last_t.get(k)
        if last is not None and t - last > STALL_S:
            self.stats.gaps.append((k, round(last, 3), round(t, 3)))
            self.losses.append((k, last, t, f"the {KIND_NAME[k]} delivered nothing for {t - last:.1f} s"))
        self.last_t[k] = t if last is None else max(last, t)

    def _spoiled(self, take: Take) -> str | None:
        for k, (since, msg) in self.down.items():
            if since < take.end:
                return msg.rstrip(".")
        for k, a, b, why in self.losses:
            if a < take.end and b > take.start:
                return why
        for k in self.sources:  # a sensor that delivered nothing since before the take ended (judged only when
            if self.backlog == 0 and self.last_t.get(k, -1e9) < take.end - STALL_S:  # nothing is queued)
                return f"the {KIND_NAME[k]} delivered nothing for {take.end - self.last_t.get(k, 0):.1f} s"
        return None

    def ready(self, now: float) -> bool:
        """Recording has started and every sensor delivers: a take can begin."""
        return (self.writer.started and all(k in self.last_t for k in self.sources) and not self.down
                and (self.writer.audio_rate is None or self.writer.samples > 0))

    # ---- takes ----------------------------------------------------------------------------------------------
    def finish(self, take: Take, now: float) -> str | None:
        """End `take` at `now`: kept for its CSV row, or logged as lost; returns why it was lost (None: kept)."""
        take.end = now
        why = self._spoiled(take)
        if why:
            self.rejected.append((take, why))
            self.log(take, "lost", why)
            return why
        self.pending.append((take, {"media": self.media_rel, "verb": take.action.verb, "noun": take.action.noun}))
        self.log(take, "recorded")
        return None

    def commit(self, upto: float) -> None:
        """Append the rows of takes whose media is on disk up to file time `upto`."""
        ready = [(t, r) for t, r in self.pending if self._file_t(t.end) <= upto]
        if not ready:
            return
        by_split: dict[str, list[dict]] = {}
        for take, row in ready:
            row = dict(row, start=max(0.0, self._file_t(take.start)), end=self._file_t(take.end))
            by_split.setdefault(take.split, []).append(row)
        for split, rows in by_split.items():
            self.folder.append(split, rows)
        for item in ready:
            self.pending.remove(item)
            self.kept.append(item[0])
            self.committed += 1

    def guided_step(self, now: float, keys: list[str]) -> None:
        if "q" in keys:
            self.say("stopping (q).")
            self.stop_requested = True
            return
        if self.state == "waiting":
            if not self.ready(now):
                if self.down and self.said != "down":
                    self.said = "down"
                    self.say(f"waiting for the {', '.join(KIND_NAME[k] for k in self.down)} to come back ...")
                return
            self._next(now)
        elif self.state == "ready":
            if "\n" in keys or " " in keys or "s" in keys:
                self._countdown(now)
        elif self.state == "countdown":
            left = round(self.t_state + self.plan.countdown - now, 6)
            if left <= 0:
                self.take.start = now
                self.state = "take"
                self.say(f"now: {self.take.action.prompt}")
            elif int(np.ceil(left)) != self.said:
                self.said = int(np.ceil(left))
                self.say(f"  {self.said} ...")
        elif self.state == "take":
            end = self.take.start + self.take.action.seconds
            if now >= end and (self.backlog == 0 or now >= end + 2.0):
                why = self.finish(self.take, now)
                if why:
                    self.say(f"stop. take lost ({why}): it will be asked again.")
                    retry = Take(self.take.action, self.take.index, self.take.split, attempt=self.take.attempt + 1)
                    self.todo.insert(0, retry)
                else:
                    self.say("stop.")
                self.take = None
                self.state, self.t_state = "pause", now
        elif self.state == "pause":
            if now >= self.t_state + self.plan.pause:
                self.state, self.said = "waiting", None

    def _next(self, now: float) -> None:
        if not self.todo:
            self.say("the plan is complete.")
            self.end_reason = "the plan is complete"
            self.stop_requested = True
            self.state = "done"
            return
        self.take = self.todo.pop(0)
        a, k = self.take.action, self.take.index
        done = self.already + len(self.kept) + len(self.pending)
        again = " again" if self.take.attempt > 1 else ""
        self.say(f"[{done + 1}/{self.plan.total_takes}] {a.label}: take {k + 1}/{a.takes}{again} "
                 f"({self.take.split}, {a.seconds:g} s)")
        if self.interactive:
            self.say("  press Enter to start (q stops).")
            self.state = "ready"
        else:
            self._countdown(now)

    def _countdown(self, now: float) -> None:
        self.state, self.t_state, self.said = "countdown", now, None
        self.guided_step(now, [])

    # ---- main loop ----------------------------------------------------------------------------------------------
    def request_stop(self) -> None:
        self.interrupted = True
        self.stop_requested = True

    def run(self) -> dict:
        if self.free_mode is None and not self.todo:
            self.say(f"the plan is complete: all {self.plan.total_takes} takes are recorded in {self.folder.root}.")
            for src in self.sources.values():
                src.close()
            return self.summary(0.0)
        self.folder.merge_labels(self.plan)
        self.folder.reserve()
        remaining = len(self.todo)
        if self.free_mode is not None:
            self.free_mode.help()
        else:
            self.say(f"recording {remaining} take(s) into {self.media_path}"
                     + (f" ({self.already} already recorded: resuming)" if self.already else "") + ".")
        capture = RealtimeCapture(self.sources, self.stats) if self.realtime else \
            FastCapture(self.sources, stopped=lambda: self.interrupted)
        now = 0.0
        try:
            while not self.stop_requested:
                for ev in capture.events(0.02):
                    self.handle(ev)
                self.backlog = capture.backlog()
                now = capture.now()
                keys = self.keys.keys() if self.keys is not None else []
                if any(k == "eof" for _, k in keys):
                    self.keys = None  # stdin closed: go on without keys (guided takes follow on the timer)
                    if self.interactive:
                        self.interactive = False
                        self.say("stdin is closed: takes follow each other on the timer.")
                        if self.state == "ready":
                            self._countdown(now)
                keys = [(t, k) for t, k in keys if k != "eof"]
                if self.free_mode is not None:
                    for t_key, k in keys:
                        self.free_mode.key(k, (t_key - capture.t0) if self.realtime else now)
                else:
                    self.guided_step(now, [k for _, k in keys])
                if self.duration_s is not None and now >= self.duration_s:
                    self.end_reason = f"--duration {self.duration_s:g} s reached"
                    break
                self.commit(self.writer.durable_s)
            self._drain(capture)
        except (DiskFull, WriteError, FolderError) as exc:
            self.failure = exc
        finally:
            capture.stop()
            for s in self.sources.values():
                try:
                    s.close()
                except Exception:
                    pass
        unfinished = self.take if self.state in ("take", "countdown") else \
            self.free_mode.segment if self.free_mode is not None else None
        if unfinished is not None and unfinished.start:
            unfinished.end = now
            self.log(unfinished, "interrupted")
            self.say(f"the take of {unfinished.action.label} in progress was not finished: it is not kept.")
        if self.failure is None:
            try:
                self.writer.close()
                self.commit(self.writer.written_s)
            except (DiskFull, WriteError, FolderError) as exc:
                self.failure = exc
        if self.failure is not None:
            # the disk is full (or failing): free the reserve, and list every finished take whose media can be
            # read back from the file as it is
            self.writer.abort()
            self.folder.release_reserve()
            try:
                self.commit(readable_end(self.media_path) if self.writer.started else 0.0)
            except EdgeError:
                pass
        else:
            self.folder.release_reserve()
        if self._log is not None:
            self._log.close()
        return self.summary(now)

    def _drain(self, capture) -> None:
        """After the last take: keep writing until the file holds every finished take (a take ends on the
        session clock; its last frames and samples are still in the queue or held for anchoring)."""
        if not self.pending or self.source_ended or self.failure is not None:
            return
        want = max(self._file_t(t.end) for t, _ in self.pending) + 0.1
        deadline = time.monotonic() + 3.0
        while self.writer.written_s < want and time.monotonic() < deadline:
            events = capture.events(0.02)
            for ev in events:
                if ev[0] in ("V", "A"):
                    self.handle(ev)
            if not events and not self.realtime:
                break

    def summary(self, now: float) -> dict:
        w = self.writer
        rate = w.audio_rate
        return {
            "media": str(self.media_path) if w.started else None,
            "seconds": round(now, 3),
            "takes_kept": len(self.kept), "takes_lost": len(self.rejected), "takes_pending": len(self.pending),
            "takes_left": len(self.todo) + (1 if self.take is not None else 0),
            "takes_total": self.plan.total_takes,
            "takes_recorded_before": self.already,
            "frames_captured": self.stats.frames_in, "frames_written": w.frames,
            "frames_dropped": self.stats.frames_dropped,
            "frames_skipped_by_file_reader": sum(s.skipped for k, s in self.sources.items() if k == "V"),
            "frames_resized": w.resized,
            "audio_rate": rate, "samples_captured": self.stats.samples_in, "samples_written": w.samples,
            "samples_dropped": self.stats.samples_dropped, "silence_filled": w.padded, "audio_lead_in": w.lead_in,
            "samples_trimmed": w.trimmed,
            "audio_runs": w.runs, "audio_drift_fixes": w.drift_fixes,
            "mic_dropped_blocks": self.sources["A"].dropped if "A" in self.sources else 0,
            "sensor_losses": dict((KIND_NAME[k], v) for k, v in self.stats.lost.items() if k in self.sources),
            "stalls": self.stats.gaps,
            "interrupted": self.interrupted, "end_reason": self.end_reason,
            "failure": str(self.failure) if self.failure else None,
        }
