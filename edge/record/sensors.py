"""The one place the recorder imports the live runtime's sources.

`open_sensors` turns `--camera X` / `--mic Y` into opened sources exactly as run_live.py does (index, device
path, URL, media file, `none`); the recorder only needs open/read/close, `is_file`, `rate`, `name`, `bgr` and `skipped`.
"""
from __future__ import annotations

from edge.live.devices import MicSource, OpenCVCamera
from edge.live.faults import Fault, FaultInjector
from edge.live.media import MediaAudio, MediaVideo
from edge.live.sensors import camera_source, mic_source
from edge.live.sources import DEMO_HINT, NoAudioStream, Source, SourceError, SourceLost

__all__ = ["Fault", "FaultInjector", "MediaAudio", "MediaVideo", "MicSource", "NoAudioStream", "OpenCVCamera", "Source",
           "SourceError", "SourceLost", "make_sources", "nominal_fps"]


def make_sources(camera: str, mic: str, rate: int, block_s: float, realtime: bool) -> tuple[Source | None,
                                                                                             Source | None]:
    """(video, audio) sources, not opened; None for `none`."""
    return camera_source(camera, realtime), mic_source(mic, rate, block_s, realtime)


def nominal_fps(source, default: float = 30.0) -> float:
    """The frame rate a video source states (a media file's stream rate, a camera's CAP_PROP_FPS), else default."""
    import cv2

    inner = source
    while inner is not None and not isinstance(inner, (MediaVideo, OpenCVCamera)):
        inner = getattr(inner, "source", None)
    if isinstance(inner, MediaVideo):
        import av

        try:
            with av.open(str(inner.path)) as c:
                rate = c.streams.video[0].average_rate or c.streams.video[0].guessed_rate
                if rate:
                    return float(rate)
        except Exception:
            return default
    if isinstance(inner, OpenCVCamera) and getattr(inner, "_cap", None) is not None:
        fps = float(inner._cap.get(cv2.CAP_PROP_FPS) or 0)
        if 1 <= fps <= 240:
            return fps
    return default


def without_demo_hint(message: str) -> str:
    """The live sources' sentences end by pointing at run_live.py's demo; the recorder's user wants none of it."""
    for tail in (f", or {DEMO_HINT}", f"; {DEMO_HINT}"):
        message = message.replace(tail, "")
    return message
