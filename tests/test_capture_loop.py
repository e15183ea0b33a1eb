"""The one capture layer (edge/live/capture.py) that the live runtime and the recorder share. Real time: items
through, a lost source reopened with a doubling backoff until it opens, the outage ended by the next good read, and
every way a source ends. Fast: media items merged in timestamp order with the same reopen. Driven with scripted
sources and a stop event that records its waits instead of sleeping."""
from __future__ import annotations

import pytest

from edge.live.capture import capture, in_time_order
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


def test_fast_mode_merges_sources_in_timestamp_order_and_ties_go_to_the_first_source():
    video = ScriptedSource([(0.0, "v0"), (0.5, "v1"), (1.0, "v2"), None])
    audio = ScriptedSource([(0.25, "a0"), (0.5, "a1"), (1.5, "a2"), None])
    events = list(in_time_order({"V": video, "A": audio}))
    items = [(key, pts, data) for key, what, pts, data in events if what == "item"]
    assert items == [("V", 0.0, "v0"), ("A", 0.25, "a0"), ("V", 0.5, "v1"), ("A", 0.5, "a1"), ("V", 1.0, "v2"),
                     ("A", 1.5, "a2")]
    # a source's end is said as it is read ahead, right after its last item (the other source goes on)
    assert [(k, w) for k, w, _, _ in events[-3:]] == [("V", "ended"), ("A", "item"), ("A", "ended")]


def test_fast_mode_reopens_a_lost_source_at_once_and_says_when_it_is_back():
    video = ScriptedSource([(0.0, "v0"), SourceLost("glitch."), SourceLost("glitch."), (1.0, "v1"), None])
    audio = ScriptedSource([(0.5, "a0"), None])
    events = [(k, w, pts, str(p) if isinstance(p, Exception) else p)
              for k, w, pts, p in in_time_order({"V": video, "A": audio})]
    assert events == [("V", "item", 0.0, "v0"), ("V", "lost", None, "glitch."), ("V", "lost", None, "glitch."),
                      ("A", "item", 0.5, "a0"), ("A", "ended", None, None), ("V", "back", 1.0, None),
                      ("V", "item", 1.0, "v1"), ("V", "ended", None, None)]
    assert video.calls == ["close", "open", "close", "open"]            # no backoff: media time stands still


def test_fast_mode_ends_a_source_that_cannot_be_reopened_or_fails_for_good():
    unplugged = ScriptedSource([SourceLost("gone.")], bad_opens=1)
    corrupt = ScriptedSource([(0.0, "a"), SourceError("the file is corrupt.")])
    events = [(k, w, str(p)) for k, w, _, p in in_time_order({"V": unplugged, "A": corrupt})]
    assert events == [("V", "lost", "gone."), ("V", "ended", "still unplugged."), ("A", "item", "a"),
                      ("A", "ended", "the file is corrupt.")]


def test_the_recorders_fast_capture_says_an_outage_once_and_marks_the_first_item_after_it():
    import numpy as np

    from edge.record.capture import FastCapture

    picture = np.zeros((2, 2, 3), np.uint8)
    video = ScriptedSource([(0.0, picture), SourceLost("glitch."), SourceLost("glitch."), (1.0, picture), None])
    audio = ScriptedSource([(0.5, "a0"), (1.5, "a1"), None])
    video.bgr = audio.bgr = False
    capture = FastCapture({"V": video, "A": audio})
    events = []
    while batch := capture.events():
        events += batch
    assert [e[:2] for e in events if e[0] in ("lost", "back", "ended")] == [
        ("lost", "V"), ("back", "V"), ("ended", "V"), ("ended", "A")]
    assert next(e for e in events if e[0] == "lost")[2] == 0.0          # stamped with the media clock so far
    assert next(e for e in events if e[0] == "back")[2] == 1.0          # at the item that ends the outage
    assert [e[3] for e in events if e[0] == "V"] == [False, True]       # that item follows a discontinuity


def test_the_recorders_fast_capture_hands_back_control_at_a_failed_read_once_asked_to_stop():
    """A file that reopens fine but fails every read brings no item: once the session is stopping (Ctrl-C),
    each failed read returns, so the recorder's loop gets to see its stop."""
    from edge.record.capture import FastCapture

    failing = ScriptedSource([SourceLost("glitch.")] * 1000)
    failing.bgr = False
    stopping = []
    capture = FastCapture({"A": failing}, stopped=lambda: bool(stopping))
    stopping.append(True)
    assert capture.events() == [("lost", "A", 0.0, "glitch.")] and capture.events() == []
    assert len(failing.script) == 998             # one read per call: control came back each time
