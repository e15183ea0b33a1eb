"""Free-running recording: the session records on, and keys mark segments of the current action (1-9 start a
segment of that action, s / Space / Enter start or stop one of the current action, n / p change it, q stops)."""
from __future__ import annotations

from typing import Protocol

from edge.record.plan import Plan, Take


class RecordingSession(Protocol):
    """What free mode uses of the recording session (edge/record/recorder.py)."""

    plan: Plan
    done: dict[tuple[str, str], int]       # takes recorded so far per (verb, noun)
    stop_requested: bool

    def say(self, text: str) -> None: ...

    def ready(self, now: float) -> bool: ...

    def finish(self, take: Take, now: float) -> str | None: ...


class FreeSegments:
    """The keys of free mode, turned into takes of `session` (its plan, readiness and take bookkeeping)."""

    def __init__(self, session: RecordingSession) -> None:
        self.session = session
        self.current = 0                   # index of the current action in the plan
        self.segment: Take | None = None   # the segment being recorded

    def help(self) -> None:
        say = self.session.say
        say("free recording: keys 1-9 start a segment of that action (ending the one running), "
            "s / Space / Enter start or stop a segment of the current action, n / p change the current "
            "action, q stops. Actions:")
        for i, a in enumerate(self.session.plan.actions, 1):
            say(f"  {i}: {a.label}")

    def key(self, key: str, t: float) -> None:
        """One key pressed at session time `t`."""
        acts = self.session.plan.actions
        if key == "q":
            if self.segment is not None:
                self._end(t)
            self.session.say("stopping (q).")
            self.session.stop_requested = True
        elif key.isdigit() and 1 <= int(key) <= min(9, len(acts)):
            if self.segment is not None:
                self._end(t)
            self.current = int(key) - 1
            self._start(t)
        elif key in ("s", " ", "\n"):
            if self.segment is not None:
                self._end(t)
            else:
                self._start(t)
        elif key in ("n", "p"):
            self.current = (self.current + (1 if key == "n" else -1)) % len(acts)
            self.session.say(f"current action: {acts[self.current].label}")

    def _start(self, t: float) -> None:
        session = self.session
        if not session.ready(t):
            session.say("not recording yet (waiting for the sensors); segment not started.")
            return
        a = session.plan.actions[self.current]
        k = session.done[(a.verb, a.noun)]
        session.done[(a.verb, a.noun)] += 1
        self.segment = Take(a, k, a.splits[k % len(a.splits)], start=t)
        session.say(f"start: {a.label} ({self.segment.split})")

    def _end(self, t: float) -> None:
        seg, self.segment = self.segment, None
        why = self.session.finish(seg, t)
        if why:
            self.session.done[(seg.action.verb, seg.action.noun)] -= 1
            self.session.say(f"end: {seg.action.label} -- segment lost ({why}); mark it again.")
        else:
            self.session.say(f"end: {seg.action.label} ({seg.end - seg.start:.1f} s)")
