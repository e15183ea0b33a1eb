"""The one capture loop, shared by the live runtime (edge/live/pipeline.py) and the recorder (edge/record/recorder.py):
read an opened source until it ends or the run stops, and when it fails, close it and reopen it with a backoff that
doubles while the outage lasts. What happens to each item and each outage is the caller's: a `CaptureListener`."""
from __future__ import annotations

import threading
from typing import Protocol

from edge.live.sources import Source, SourceError, SourceLost


class CaptureListener(Protocol):
    def item(self, pts: float, data: object) -> None:
        """A good read: (the source's timestamp, its data)."""

    def lost(self, error: SourceLost, unexpected: bool) -> None:
        """A failed read (every one of an outage; `unexpected`: the driver raised something no source raises)."""

    def back(self) -> None:
        """The first good read after an outage (called before its `item`)."""

    def ended(self, error: SourceError | None) -> None:
        """The source ended (None: a file's end) or cannot be had any more; the loop stops."""


def capture(source: Source, listener: CaptureListener, stop: threading.Event, backoff_s: tuple[float, float]) -> None:
    """Read `source` into `listener` until it ends or `stop` is set. A lost source is closed, then reopened every
    `backoff` seconds, from backoff_s[0] doubling up to backoff_s[1]; the next good read ends the outage."""
    backoff, down = backoff_s[0], False
    while not stop.is_set():
        try:
            item = source.read()
        except SourceLost as exc:
            listener.lost(exc, unexpected=False)
        except SourceError as exc:
            listener.ended(exc)
            return
        except Exception as exc:  # a driver or decoder failing in a way nobody anticipated: reopen it
            listener.lost(SourceLost(f"{source.name} failed ({type(exc).__name__}: {exc})."), unexpected=True)
        else:
            if item is None:
                listener.ended(None)
                return
            if down:
                down, backoff = False, backoff_s[0]
                listener.back()
            listener.item(*item)
            continue
        down = True
        backoff = _reopen(source, stop, backoff, backoff_s[1])


def _reopen(source: Source, stop: threading.Event, backoff: float, most: float) -> float:
    """Close, then try to open every `backoff` seconds (doubling up to `most`); returns the next backoff."""
    try:
        source.close()
    except Exception:  # a source that fails to close is reopened all the same
        pass
    while not stop.wait(backoff):
        backoff = min(2 * backoff, most)
        try:
            source.open()
            return backoff
        except SourceError:
            continue
    return backoff
