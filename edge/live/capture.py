"""The one capture layer, shared by the live runtime (edge/live/pipeline.py) and the recorder (edge/record/):

- `capture`, real time, one thread per source: read an opened source until it ends or the run stops, and when it
  fails, close it and reopen it with a backoff that doubles while the outage lasts. What happens to each item and
  each outage is the caller's: a `CaptureListener`.
- `in_time_order`, fast: media files read in one thread as fast as the CPU allows, their items merged in timestamp
  order, with the same reopen on a loss (no backoff: media time stands still while nothing is read).
"""
from __future__ import annotations

import threading
from typing import Iterator, Protocol

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


def _close(source: Source) -> None:
    try:
        source.close()
    except Exception:  # a source that fails to close is reopened all the same
        pass


def _reopen(source: Source, stop: threading.Event, backoff: float, most: float) -> float:
    """Close, then try to open every `backoff` seconds (doubling up to `most`); returns the next backoff."""
    _close(source)
    while not stop.wait(backoff):
        backoff = min(2 * backoff, most)
        try:
            source.open()
            return backoff
        except SourceError:
            continue
    return backoff


def in_time_order(sources: dict[str, Source]) -> Iterator[tuple[str, str, float | None, object]]:
    """Read opened media sources ahead one item each and yield, as (key, what, pts, payload):
    ("item", pts, data) for every item of every source in timestamp order (ties: in the order of `sources`);
    ("lost", None, SourceLost) for every failed read, as it happens while the source is read ahead (the source is
    then closed and reopened at once); ("back", pts, None) just before the first item after an outage;
    ("ended", None, None | SourceError) when a source ends, fails for good, or cannot be reopened."""
    heads: dict[str, tuple[float, object]] = {}
    down: set[str] = set()

    def read_ahead(key: str) -> Iterator[tuple[str, str, float | None, object]]:
        source = sources[key]
        while True:
            try:
                item = source.read()
            except SourceLost as exc:
                down.add(key)
                yield key, "lost", None, exc
                try:
                    _close(source)
                    source.open()
                except SourceError as error:
                    yield key, "ended", None, error
                    return
                continue
            except SourceError as exc:
                yield key, "ended", None, exc
                return
            if item is None:
                yield key, "ended", None, None
            else:
                heads[key] = item
            return

    for key in sources:
        yield from read_ahead(key)
    while heads:
        key = min((k for k in sources if k in heads), key=lambda k: heads[k][0])
        pts, data = heads.pop(key)
        if key in down:
            down.discard(key)
            yield key, "back", pts, None
        yield key, "item", pts, data
        yield from read_ahead(key)
