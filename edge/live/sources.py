"""Sensor sources behind one small interface: open(), read() -> (pts_s, data) | None at the end, close().

Video sources return frames as captured, unconverted (only the frames the sampler takes are converted): arrays
in RGB order, or in BGR where the source says `bgr` (OpenCV), or PyAV frames not yet converted to RGB (files);
audio sources return mono float32 blocks and have a `rate`. `skipped` counts items a file pacer dropped because
they were already late (a source slower than real time).
`pts_s` is the source's own timeline in seconds: media time for files and arrays, and for live devices
(is_file False) the time.monotonic() of the capture itself, which the capture thread uses as the stamp.
read() raises SourceLost when a running source fails (the capture thread reopens it with backoff);
open() raises SourceError with one sentence when the source cannot be had at all.
"""
from __future__ import annotations

import collections
import itertools
import os
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Protocol

import cv2
import numpy as np

from edge.errors import EdgeError
from edge.live.console import STDERR_LOCK
from edge.preprocess import mixdown

DEMO_HINT = "run `karmma-live --demo` (or `python run_live.py --demo`) to see the recognizer on its built-in demo stream"


@contextmanager
def quiet_c_stderr() -> Iterator[None]:
    """Silence file descriptor 2 for a moment: ALSA and PortAudio print several lines of their own straight to
    it each time a vanished microphone fails to reopen, burying the one sentence the user should read."""
    with STDERR_LOCK:
        sys.stderr.flush()
        saved = os.dup(2)
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 2)
            os.close(devnull)
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)


class SourceError(EdgeError):
    """A sensor that cannot be opened or read (one sentence for the user)."""


class SourceLost(SourceError):
    """A running sensor that failed; the capture thread reopens it with backoff."""


class NoAudioStream(SourceError):
    """A media file given as the microphone has no audio stream: the run goes on with audio missing."""


class Truncated(SourceError):
    """A media file that stops well before the duration it states (said once per file, not per stream)."""

    def __init__(self, message: str, path: Path) -> None:
        super().__init__(message)
        self.key = f"truncated:{path}"


class Source(Protocol):
    name: str
    is_file: bool
    skipped: int

    def open(self) -> None: ...

    def read(self) -> tuple[float, np.ndarray] | None: ...

    def close(self) -> None: ...


class Pacer:
    """Releases timestamped items at their own speed; items already later than `late_s` are skipped.

    Skipping late items is what a live sensor does after a stall: it never delivers a backlog.
    """

    def __init__(self, realtime: bool, late_s: float = 0.2) -> None:
        self.realtime = realtime
        self.late_s = late_s
        self.skipped = 0
        self._origin: float | None = None

    @property
    def origin(self) -> float | None:
        """The monotonic time at which pts 0 was due (None before the first item)."""
        return self._origin

    def due(self, pts_s: float) -> bool:
        """Wait until `pts_s` is due; False when the item is too late and should be skipped."""
        if not self.realtime:
            return True
        now = time.monotonic()
        if self._origin is None:
            self._origin = now - pts_s
        wait = self._origin + pts_s - now
        if wait > 0:
            time.sleep(wait)
        elif -wait > self.late_s:
            self.skipped += 1
            return False
        return True


class OpenCVCamera:
    """A camera by index, a device path or a stream URL, through OpenCV."""

    is_file = False
    bgr = True
    skipped = 0

    def __init__(self, spec: int | str) -> None:
        self.spec = spec
        self.name = f"camera {spec}"
        self._cap = None

    def open(self) -> None:
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)  # its warnings would bury our sentence
        os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # and so would FFmpeg's (read at its first use)
        cap = cv2.VideoCapture(self.spec)
        if not cap.isOpened():
            cap.release()
            if isinstance(self.spec, int):
                raise SourceError(f"there is no camera at index {self.spec} (none is connected or it is in use); "
                                  f"{DEMO_HINT}.")
            raise SourceError(f"camera {self.spec} could not be opened; check the path or URL, or {DEMO_HINT}.")
        self._cap = cap

    def read(self) -> tuple[float, np.ndarray]:
        if self._cap is None:
            raise SourceLost(f"{self.name} is not open.")
        ok, frame = self._cap.read()
        if not ok or frame is None:
            raise SourceLost(f"{self.name} stopped delivering frames.")
        return time.monotonic(), frame

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None


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

    def __init__(self, path: str | Path, realtime: bool = True) -> None:
        self.path = Path(path)
        self.name = f"video of {self.path.name}"
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


class MicSource:
    """A microphone through sounddevice; its callback fills a small bounded block queue that read() drains.

    Opens at the model rate when the device offers it, else at the device's own rate (the streaming student
    resamples each window); a stereo-only device is mixed down in the callback.
    """

    is_file = False

    def __init__(self, device: str | int, rate: int, block_s: float = 0.02, timeout_s: float = 1.0) -> None:
        self.device = device
        self.wanted_rate = rate
        self.rate = rate
        self.block_s = block_s
        self.timeout_s = timeout_s
        self.name = f"microphone {device}"
        self.dropped_blocks = 0
        self._stream = None
        self._blocks: collections.deque = collections.deque(maxlen=max(4, int(1.0 / block_s)))
        self.skipped = 0  # blocks are never late-skipped; overflows count in dropped_blocks
        self._ready = threading.Condition()
        self._status_error: str | None = None

    def _resolve(self, sd) -> tuple[int, dict]:
        try:
            if self.device == "default":
                index = sd.default.device[0]
                if index is None or index < 0:
                    raise SourceError(f"there is no microphone: PortAudio finds no input device; {DEMO_HINT}.")
                info = sd.query_devices(index, "input")
            else:
                info = sd.query_devices(self.device, "input")
        except ValueError:
            raise SourceError(f"there is no microphone named or numbered {self.device!r} "
                              f"(see `python -m sounddevice` for the list); {DEMO_HINT}.") from None
        except sd.PortAudioError as exc:
            raise SourceError(f"microphone {self.device!r} cannot be queried ({exc}); {DEMO_HINT}.") from None
        return info["index"], info

    def open(self) -> None:
        try:
            import sounddevice as sd
        except OSError:
            raise SourceError(f"the PortAudio library is missing (install libportaudio2), so no microphone can be "
                              f"used; {DEMO_HINT}.") from None
        index, info = self._resolve(sd)
        channels = 1
        rate = self.wanted_rate
        try:
            with quiet_c_stderr():
                sd.check_input_settings(device=index, channels=1, samplerate=rate, dtype="float32")
        except Exception:
            rate = int(info["default_samplerate"])
            channels = max(1, min(2, int(info["max_input_channels"])))
        self.rate = rate
        self._blocks.clear()
        self._status_error = None
        try:
            with quiet_c_stderr():
                stream = sd.InputStream(device=index, channels=channels, samplerate=rate, dtype="float32",
                                        blocksize=max(1, int(rate * self.block_s)), callback=self._callback)
                stream.start()
        except Exception as exc:
            raise SourceLost(f"microphone {self.device!r} could not be started ({exc}).") from None
        self._stream = stream

    def _callback(self, indata, frames, time_info, status) -> None:
        if status.input_overflow:
            self.dropped_blocks += 1
        block = mixdown(indata.copy())
        with self._ready:
            if len(self._blocks) == self._blocks.maxlen:
                self.dropped_blocks += 1
            self._blocks.append((time.monotonic(), block))
            self._ready.notify()

    def read(self) -> tuple[float, np.ndarray]:
        with self._ready:
            if not self._blocks:
                self._ready.wait(self.timeout_s)
            if self._blocks:
                return self._blocks.popleft()
        stream = self._stream
        if stream is None or not stream.active:
            raise SourceLost(f"microphone {self.device!r} stopped.")
        raise SourceLost(f"microphone {self.device!r} delivered no audio for {self.timeout_s:g} s.")

    def close(self) -> None:
        if self._stream is not None:
            try:
                with quiet_c_stderr():
                    self._stream.abort()
                    self._stream.close()
            except Exception:  # a vanished device may fail to close; it is gone either way
                pass
            self._stream = None


class ArrayVideo:
    """Frames held in memory (N, H, W, 3) RGB uint8 at `fps`: the demo stream and tests.
    With `loop` the frames repeat for ever on a timeline that keeps going (the soak)."""

    is_file = True

    def __init__(self, frames: np.ndarray, fps: float, realtime: bool = True, name: str = "array video",
                 loop: bool = False) -> None:
        self.frames, self.fps, self.name, self.loop = frames, fps, name, loop
        self.pacer = Pacer(realtime)
        self._i = 0

    @property
    def skipped(self) -> int:
        return self.pacer.skipped

    def open(self) -> None:
        return None

    def read(self) -> tuple[float, np.ndarray] | None:
        while self.loop or self._i < len(self.frames):
            i = self._i
            self._i += 1
            if self.pacer.due(i / self.fps):
                return i / self.fps, self.frames[i % len(self.frames)]
        return None

    def close(self) -> None:
        return None


class ArrayAudio:
    """Mono float32 samples held in memory, delivered in blocks of `block_s` like a microphone.
    With `loop` the samples repeat for ever on a timeline that keeps going (the soak)."""

    is_file = True

    def __init__(self, samples: np.ndarray, rate: int, realtime: bool = True, block_s: float = 0.02,
                 name: str = "array audio", loop: bool = False) -> None:
        self.samples, self.rate, self.name, self.loop = np.asarray(samples, np.float32), rate, name, loop
        self.block = max(1, int(round(rate * block_s)))
        self.pacer = Pacer(realtime)
        self._i = 0

    @property
    def skipped(self) -> int:
        return self.pacer.skipped

    def open(self) -> None:
        return None

    def read(self) -> tuple[float, np.ndarray] | None:
        n = self.samples.size
        while self.loop or self._i < n:
            start = self._i
            self._i = start + self.block if self.loop else min(n, start + self.block)
            if self.pacer.due(self._i / self.rate):
                if self.loop:
                    return self._i / self.rate, np.take(self.samples, np.arange(start, self._i), mode="wrap")
                return self._i / self.rate, self.samples[start:self._i]
        return None

    def close(self) -> None:
        return None


@dataclass(frozen=True)
class Fault:
    """Between start_s and end_s of the source's own timeline: lost | frozen | black | wrong_shape |
    wrong_channels (video), lost | silence | clip | nan | inf (audio)."""

    start_s: float
    end_s: float
    kind: str


VIDEO_FAULTS = ("lost", "frozen", "black", "wrong_shape", "wrong_channels")
AUDIO_FAULTS = ("lost", "silence", "clip", "nan", "inf")


class FaultInjector:
    """Wraps a source and injects scripted faults on its timeline (tests, the demo's dropouts, the soak).

    "lost" raises SourceLost for every item in the window while the wrapped source keeps running, so its
    timeline goes on as a live sensor's would and the capture thread's reconnect path is exercised.
    """

    def __init__(self, source: Source, faults: list[Fault], *, audio: bool) -> None:
        allowed = AUDIO_FAULTS if audio else VIDEO_FAULTS
        for f in faults:
            if f.kind not in allowed:
                raise SourceError(f"unknown {'audio' if audio else 'video'} fault {f.kind!r}; use one of {allowed}.")
        self.source, self.faults = source, list(faults)
        self.name, self.is_file, self.bgr = source.name, source.is_file, getattr(source, "bgr", False)
        self.rate = getattr(source, "rate", None)
        self._opened = False
        self._injected = False
        self._last: np.ndarray | None = None

    def open(self) -> None:
        if not self._opened:
            self.source.open()
            self.rate = getattr(self.source, "rate", None)
            self._opened = True

    @property
    def skipped(self) -> int:
        return self.source.skipped

    def _active(self, pts: float) -> str | None:
        return next((f.kind for f in self.faults if f.start_s <= pts < f.end_s), None)

    def read(self) -> tuple[float, np.ndarray] | None:
        item = self.source.read()
        if item is None:
            return None
        pts, data = item
        kind = self._active(pts)
        if kind == "lost":
            self._injected = True
            raise SourceLost(f"{self.name} failed (injected fault).")
        if kind == "frozen" and self._last is not None:
            return pts, self._last
        if kind is not None and not isinstance(data, np.ndarray):  # a PyAV frame: corrupt its pixels
            data = data.to_ndarray(format="rgb24")
        if kind == "black":
            data = np.zeros_like(data)
        elif kind == "wrong_shape":
            data = np.ascontiguousarray(data[::2, ::3, 0])
        elif kind == "wrong_channels":  # two channels: no camera format, so the frame cannot be used
            data = np.ascontiguousarray(data[:, :, :2])
        elif kind == "silence":
            data = np.zeros_like(data)
        elif kind == "clip":  # the gain jumps until the signal saturates, however quiet it was
            rms = float(np.sqrt(np.mean(np.square(data, dtype=np.float64)))) if data.size else 0.0
            data = np.clip(data * (8.0 / max(rms, 1e-4)), -1.0, 1.0).astype(data.dtype)
        elif kind == "nan":
            data = np.full_like(data, np.nan)
        elif kind == "inf":
            data = np.where(np.arange(data.size) % 2 == 0, np.inf, -np.inf).astype(data.dtype)
        self._last = data
        return pts, data

    def close(self) -> None:
        """After an injected loss the reconnect path closes and reopens: keep the wrapped source running."""
        if self._injected:
            self._injected = False
            return
        self.source.close()
        self._opened = False


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
