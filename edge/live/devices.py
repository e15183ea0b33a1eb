"""Live devices: a camera through OpenCV (index, device path, stream URL), a microphone through sounddevice."""
from __future__ import annotations

import collections
import os
import threading
import time

import cv2
import numpy as np

from edge.live.sources import DEMO_HINT, SourceError, SourceLost, quiet_c_stderr
from edge.preprocess import mixdown


class OpenCVCamera:
    """A camera by index, a device path or a stream URL, through OpenCV."""

    is_file = False
    bgr = True
    skipped = dropped = 0

    def __init__(self, spec: int | str) -> None:
        self.spec = spec
        self.name = f"camera {spec}"
        self.rate: float | None = None
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
        fps = float(cap.get(cv2.CAP_PROP_FPS) or 0)
        self.rate = fps if 1 <= fps <= 240 else None  # drivers report 0, or nonsense, when they do not know

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


class MicSource:
    """A microphone through sounddevice; its callback fills a small bounded block queue that read() drains.

    Opens at the model rate when the device offers it, else at the device's own rate (the streaming student
    resamples each window); a stereo-only device is mixed down in the callback.
    """

    bgr = False

    is_file = False

    def __init__(self, device: str | int, rate: int, block_s: float = 0.02, timeout_s: float = 1.0) -> None:
        self.device = device
        self.wanted_rate = rate
        self.rate = rate
        self.block_s = block_s
        self.timeout_s = timeout_s
        self.name = f"microphone {device}"
        self.dropped = 0  # blocks the callback found no room for
        self._stream = None
        self._blocks: collections.deque = collections.deque(maxlen=max(4, int(1.0 / block_s)))
        self.skipped = 0  # blocks are never late-skipped
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
            with quiet_c_stderr():          # PortAudio's ALSA probe prints "Expression ... failed" lines here
                import sounddevice as sd
        except OSError:
            raise SourceError(f"the PortAudio library is missing (install libportaudio2), so no microphone can be "
                              f"used; {DEMO_HINT}.") from None
        with quiet_c_stderr():
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
            self.dropped += 1
        block = mixdown(indata.copy())
        with self._ready:
            if len(self._blocks) == self._blocks.maxlen:
                self.dropped += 1
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
