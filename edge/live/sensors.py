"""A command line's --camera / --mic as a source, and a sensor: an opened source, or why there is none."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from edge.live.devices import MicSource, OpenCVCamera
from edge.live.media import MediaAudio, MediaVideo
from edge.live.sources import NoAudioStream, Source


@dataclass
class Sensor:
    """One modality's source (None: not used) and its state when there is no source (why it is absent)."""

    source: Source | None
    absent: str = "off"


def camera_source(spec: str, realtime: bool) -> Source | None:
    """none | an index | a device path or stream URL (OpenCV) | a media file (PyAV)."""
    if spec == "none":
        return None
    if spec.isdigit():
        return OpenCVCamera(int(spec))
    if "://" in spec or spec.startswith("/dev/"):
        return OpenCVCamera(spec)
    return MediaVideo(spec, realtime=realtime)


def mic_source(spec: str, rate: int, block_s: float, realtime: bool) -> Source | None:
    """none | default | an index | a device name (sounddevice) | a media file (PyAV)."""
    if spec == "none":
        return None
    if spec == "default":
        return MicSource("default", rate, block_s)
    if spec.isdigit():
        return MicSource(int(spec), rate, block_s)
    if Path(spec).exists() or os.sep in spec or Path(spec).suffix:
        return MediaAudio(spec, rate, realtime=realtime)
    return MicSource(spec, rate, block_s)


def open_sensor(source: Source | None, on_absent: Callable[[str], None] | None = None) -> Sensor:
    """Open `source` (None: the sensor is off); a media file without audio gives a sensor absent for that
    reason (`on_absent` gets the sentence: the command line prints it)."""
    if source is None:
        return Sensor(None, "off")
    try:
        source.open()
    except NoAudioStream as exc:
        if on_absent is not None:
            on_absent(str(exc))
        return Sensor(None, "no audio stream")
    return Sensor(source)
