"""The one capture loop (edge/live/capture.py) that the live runtime and the recorder share: items through, a lost
source reopened with a doubling backoff until it opens, the outage ended by the next good read, and every way a
source ends. Driven with a scripted source and a stop event that records its waits instead of sleeping."""
from __future__ import annotations

import pytest

from edge.live.capture import capture
from edge.live.sources import SourceError, SourceLost


class ScriptedSource:
    """read() plays `script` (an item, an exception to raise, or None for the end); open() fails `bad_opens`
    times before it succeeds."""

    name, is_file, skipped = "scripted camera", False, 0

    def __init__(self, script: list, bad_opens: int = 0) -> None:
        self.script, self.bad_opens, self.calls = list(script), bad_opens, []

    def read(self):
        step = self.script.pop(0)
        if isinstance(step, BaseException):
            raise step
        return step

    def open(self) -> None:
        self.calls.append("open")
        if self.bad_opens:
            self.bad_opens -= 1
            raise SourceError("still unplugged.")

    def close(self) -> None:
        self.calls.append("close")


class Recorded:
    """A CaptureListener writing down what it is told."""

    def __init__(self) -> None:
        self.events = []

    def item(self, pts, data):
        self.events.append(("item", pts, data))

    def lost(self, error, unexpected):
        self.events.append(("lost", str(error), unexpected))

    def back(self):
        self.events.append(("back",))

    def ended(self, error):
        self.events.append(("ended", None if error is None else str(error)))


class Clock:
    """A stop event whose wait() returns at once and remembers how long it was asked to wait."""

    def __init__(self, stop_after: int | None = None) -> None:
        self.waits, self.stop_after = [], stop_after

    def is_set(self) -> bool:
        return self.stop_after is not None and len(self.waits) >= self.stop_after

    def wait(self, seconds: float) -> bool:
        self.waits.append(seconds)
        return self.is_set()


def test_a_lost_source_is_reopened_with_a_doubling_backoff_and_comes_back():
    source = ScriptedSource([(0.0, "a"), SourceLost("camera unplugged."), (1.0, "b"), SourceLost("again."),
                             (2.0, "c"), None], bad_opens=3)
    listener, clock = Recorded(), Clock()
    capture(source, listener, clock, (0.1, 0.5))
    assert listener.events == [("item", 0.0, "a"), ("lost", "camera unplugged.", False), ("back",), ("item", 1.0, "b"),
                               ("lost", "again.", False), ("back",), ("item", 2.0, "c"), ("ended", None)]
    assert clock.waits == [0.1, 0.2, 0.4, 0.5, 0.1]        # 3 failed opens, the 4th works; the next outage restarts
    assert source.calls == ["close", "open", "open", "open", "open", "close", "open"]


@pytest.mark.parametrize("failure, event", [
    (SourceError("the file is corrupt."), ("ended", "the file is corrupt.")),
    (None, ("ended", None)),
])
def test_a_source_that_ends_stops_the_loop(failure, event):
    listener = Recorded()
    capture(ScriptedSource([(0.0, "a"), failure, (1.0, "never read")]), listener, Clock(), (0.1, 0.5))
    assert listener.events == [("item", 0.0, "a"), event]


def test_an_unforeseen_driver_error_is_an_outage_not_a_crash():
    listener = Recorded()
    capture(ScriptedSource([ZeroDivisionError("bad driver"), (0.5, "a"), None]), listener, Clock(), (0.1, 0.5))
    assert listener.events == [("lost", "scripted camera failed (ZeroDivisionError: bad driver).", True), ("back",),
                               ("item", 0.5, "a"), ("ended", None)]


def test_stopping_during_an_outage_ends_the_loop_without_reopening():
    source = ScriptedSource([SourceLost("gone.")], bad_opens=100)
    listener, clock = Recorded(), Clock(stop_after=3)
    capture(source, listener, clock, (0.1, 0.5))
    assert listener.events == [("lost", "gone.", False)] and len(clock.waits) == 3 and source.calls.count("open") == 2
