"""Media files through PyAV: the video and the audio stream of a file, paced in real time or as fast as possible."""
from __future__ import annotations

import itertools
import math
from pathlib import Path
from typing import Iterator

import numpy as np

from edge.live.sources import NoAudioStream, Pacer, SourceError, SourceLost, Truncated
from edge.preprocess import CameraFrame


def _open_container(path: Path):
    import av

    if path.is_dir():
        raise SourceError(f"{path} is a directory, not a media file.")
    if not path.is_file():
        raise SourceError(f"media file {path} does not exist.")
    if path.stat().st_size == 0:
        raise SourceError(f"media file {path} is empty (0 bytes).")
    try:
        return av.open(str(path))
    except av.error.FFmpegError as exc:
        raise SourceError(f"media file {path} cannot be read ({exc.strerror or type(exc).__name__}); "
                          "it is corrupt or not a media file.") from None


def _check_decodable(container, stream, path: Path) -> None:
    if stream.codec_context is None:
        kind = stream.type  # read before close(): the stream does not outlive its container
        container.close()
        raise SourceError(f"media file {path} has its {kind} in a codec this FFmpeg build cannot decode; "
                          "convert it (e.g. to H.264 video / AAC audio) first.")


def _check_complete(container, reached_s: float, path: Path) -> None:
    """At the end of a stream: one that stops well before the duration its file states was cut off."""
    stated = container.duration / 1e6 if container.duration else None  # microseconds (AV_TIME_BASE)
    if stated is not None and reached_s < stated - max(1.0, 0.05 * stated):
        raise Truncated(f"media file {path} stops at {reached_s:.1f} s of the {stated:.1f} s it states; "
                        "it is truncated.", path)


class MediaVideo:
    """The video stream of a media file through PyAV, paced at its own speed (realtime) or as fast as possible."""

    is_file = True
    bgr = False                # frames are PyAV frames, converted to RGB where taken
    dropped = 0

    def __init__(self, path: str | Path, realtime: bool = True) -> None:
        self.path = Path(path)
        self.name = f"video of {self.path.name}"
        self.rate: float | None = None
        self.pacer = Pacer(realtime)
        self._container = None
        self._frames: Iterator | None = None

    @property
    def skipped(self) -> int:
        return self.pacer.skipped

    def open(self) -> None:
        import av

        container = _open_container(self.path)
        if not container.streams.video:
            container.close()
            raise SourceError(f"media file {self.path} has no video stream.")
        stream = container.streams.video[0]
        _check_decodable(container, stream, self.path)
        stream.thread_type = "AUTO"
        stated = stream.average_rate or stream.guessed_rate
        self.rate = float(stated) if stated else None
        self._container = container
        self._reached = 0.0
        self._frames = container.decode(stream)
        self._av_error = av.error.FFmpegError

    def read(self) -> tuple[float, np.ndarray] | None:
        if self._frames is None:
            raise SourceLost(f"{self.name} is not open.")
        while True:
            try:
                frame = next(self._frames, None)
            except self._av_error as exc:
                raise SourceError(f"media file {self.path} is corrupt or truncated "
                                  f"({exc.strerror or type(exc).__name__}).") from None
            if frame is None:
                _check_complete(self._container, self._reached, self.path)
                return None
            pts = float(frame.time) if frame.time is not None else 0.0
            self._reached = pts + (float(frame.duration * frame.time_base) if frame.duration else 0.0)
            if self.pacer.due(pts):
                return pts, frame  # converted to RGB only if the sampler takes it

    def close(self) -> None:
        if self._container is not None:
            self._container.close()
            self._container, self._frames = None, None


class MediaAudio:
    """The audio stream of a media file through PyAV, resampled to `rate` and mixed down by averaging channels."""

    is_file = True
    bgr = False
    dropped = 0

    def __init__(self, path: str | Path, rate: int, realtime: bool = True) -> None:
        self.path = Path(path)
        self.rate = rate
        self.name = f"audio of {self.path.name}"
        self.pacer = Pacer(realtime)
        self._container = None
        self._blocks: Iterator | None = None

    @property
    def skipped(self) -> int:
        return self.pacer.skipped

    def open(self) -> None:
        container = _open_container(self.path)
        if not container.streams.audio:
            container.close()
            raise NoAudioStream(f"media file {self.path} has no audio stream; running with audio (A) missing.")
        _check_decodable(container, container.streams.audio[0], self.path)
        self._container = container
        self._blocks = self._decode(container)

    def _decode(self, container) -> Iterator[tuple[float, np.ndarray]]:
        import av

        # Planar float at the model rate in the file's own channel layout, then the channels averaged: FFmpeg's
        # mono downmix sums front channels, which pushes loud but unclipped stereo or 5.1 past full scale.
        resampler = av.AudioResampler(format="fltp", layout=None, rate=self.rate)
        done = 0
        try:
            for frame in itertools.chain(container.decode(container.streams.audio[0]), [None]):  # None: flush
                for out in resampler.resample(frame):
                    x = out.to_ndarray().mean(axis=0, dtype=np.float32)
                    done += x.size
                    yield done / self.rate, x
            _check_complete(container, done / self.rate, self.path)
        except av.error.FFmpegError as exc:
            raise SourceError(f"media file {self.path} is corrupt or truncated "
                              f"({exc.strerror or type(exc).__name__}).") from None

    def read(self) -> tuple[float, np.ndarray] | None:
        """(time of the block's last sample, samples): a block is due once its last sample has 'happened'."""
        if self._blocks is None:
            raise SourceLost(f"{self.name} is not open.")
        while True:
            item = next(self._blocks, None)
            if item is None:
                return None
            if self.pacer.due(item[0]):
                return item

    def close(self) -> None:
        if self._container is not None:
            self._container.close()
            self._container, self._blocks = None, None


def read_audio(path: str | Path, rate: int) -> np.ndarray:
    """A media file's whole audio track, mono float32 at `rate` (NoAudioStream without one; SourceError when the
    file cannot be read)."""
    audio = MediaAudio(path, rate, realtime=False)
    audio.open()
    try:
        blocks = [block for _, block in iter(audio.read, None)]
    finally:
        audio.close()
    return np.concatenate(blocks) if blocks else np.zeros(0, np.float32)


def read_video(path: str | Path, start_s: float = 0.0, stop_s: float = math.inf) -> tuple[list[np.ndarray], float | None]:
    """A media file's video frames from `start_s` to before `stop_s` as RGB uint8 arrays, and their frame rate
    (None with fewer than two frames); SourceError when the file cannot be read."""
    video = MediaVideo(path, realtime=False)
    video.open()
    times, frames = [], []
    try:
        for pts, frame in iter(video.read, None):
            if pts >= stop_s:
                break
            if pts >= start_s:
                times.append(pts)
                frames.append(CameraFrame(frame).rgb())
    finally:
        video.close()
    fps = (len(times) - 1) / max(1e-6, times[-1] - times[0]) if len(times) >= 2 else None
    return frames, fps
