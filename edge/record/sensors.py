"""The one place the recorder imports the live runtime's sources.

`make_sources` turns `--camera X` / `--mic Y` into sources exactly as run_live.py does (index, device path, URL,
media file, `none`); the recorder uses only what every source declares (edge/live/sources.py): open/read/close,
`name`, `is_file`, `bgr`, `rate`, `skipped` and `dropped`.
"""
from __future__ import annotations

from edge.live.faults import Fault, FaultInjector
from edge.live.media import MediaAudio, MediaVideo
from edge.live.sensors import camera_source, mic_source
from edge.live.sources import DEMO_HINT, NoAudioStream, Source, SourceError, SourceLost

__all__ = ["Fault", "FaultInjector", "MediaAudio", "MediaVideo", "NoAudioStream", "Source", "SourceError", "SourceLost",
           "make_sources"]


def make_sources(camera: str, mic: str, rate: int, block_s: float, realtime: bool) -> tuple[Source | None,
                                                                                             Source | None]:
    """(video, audio) sources, not opened; None for `none`."""
    return camera_source(camera, realtime), mic_source(mic, rate, block_s, realtime)


def without_demo_hint(message: str) -> str:
    """The live sources' sentences end by pointing at run_live.py's demo; the recorder's user wants none of it."""
    for tail in (f", or {DEMO_HINT}", f"; {DEMO_HINT}"):
        message = message.replace(tail, "")
    return message
