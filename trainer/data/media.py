"""Readers for the media layouts real datasets ship in, and the bookkeeping of media that cannot be read.

- `FrameFolder`: one JPEG per frame, 1-based file names (EPIC-KITCHENS `frame_0000000001.jpg`).
- `FlowFolder`: EPIC-KITCHENS precomputed optical flow, `u/` and `v/` JPEG folders quantised to +-20 px.
- `VideoFile`: any container PyAV opens (MP4, WebM, MKV, ...): frames by index, and the audio track
  resampled by PyAV to the model rate, channels averaged (mono float32, as the runtime mixes them).

Every failure to read raises `MediaError` (one sentence); datasets catch it, skip the segment, count it
in a `SkipLog` and report once.
"""
from __future__ import annotations

import logging
import os
from collections import Counter
from pathlib import Path
from typing import Sequence

import av
import cv2
import numpy as np

from edge.errors import EdgeError

log = logging.getLogger(__name__)

EPIC_FLOW_BOUND_PX = 20.0   # EPIC's flow JPEGs store clip(flow, -20, 20) mapped linearly to 0..255


class MediaError(EdgeError):
    """A media file or folder that is missing, unreadable, or too short for the segment asked of it."""


class SkipLog:
    """Counts segments skipped (by reason) and reports them once per process, never fatally."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.counts: Counter[str] = Counter()
        self.examples: dict[str, str] = {}
        self._warned_at_read = False

    def skip(self, reason: str, example: str) -> None:
        self.counts[reason] += 1
        self.examples.setdefault(reason, example)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def summary(self, kept: int) -> str:
        if not self.total:
            return f"{self.name}: kept {kept} segments, skipped none."
        parts = [f"{n} {reason} (e.g. {self.examples[reason].rstrip('.')})"
                 for reason, n in sorted(self.counts.items())]
        return f"{self.name}: kept {kept} segments, skipped {self.total}: " + "; ".join(parts) + "."

    def report(self, kept: int) -> None:
        """Log the construction-time summary (once, when anything was skipped)."""
        if self.total:
            log.warning(self.summary(kept))

    def skip_at_read(self, reason: str, example: str) -> None:
        """A segment that failed while loading: counted; the first one per process is logged."""
        self.skip(reason, example)
        if not self._warned_at_read:
            self._warned_at_read = True
            log.warning("%s: skipping a segment whose media cannot be read (%s); further ones are counted "
                        "silently in dataset.skips.", self.name, example)


def read_rgb(path: Path) -> np.ndarray:
    """An image file as HxWx3 RGB uint8."""
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise MediaError(f"cannot read image {path} (missing or corrupt).")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


class FrameFolder:
    """A folder of per-frame JPEGs named `frame_%010d.jpg`, numbered from 1 (EPIC-KITCHENS layout).

    `n_frames` is the highest frame number present; `missing` lists 0-based indices below it whose
    file is absent, so segments needing them can be skipped up front.
    """

    PREFIX, SUFFIX = "frame_", ".jpg"

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            names = os.listdir(self.path)
        except OSError as exc:
            raise MediaError(f"frame folder {self.path} cannot be listed ({exc.strerror or exc}).") from None
        numbers = np.array(sorted(int(n[len(self.PREFIX):-len(self.SUFFIX)]) for n in names
                                  if n.startswith(self.PREFIX) and n.endswith(self.SUFFIX)
                                  and n[len(self.PREFIX):-len(self.SUFFIX)].isdigit()), dtype=np.int64)
        if numbers.size == 0:
            raise MediaError(f"frame folder {self.path} holds no {self.PREFIX}NNNNNNNNNN{self.SUFFIX} files.")
        self.n_frames = int(numbers[-1])
        self.missing = set((np.setdiff1d(np.arange(1, self.n_frames + 1), numbers) - 1).tolist())

    def file(self, index: int) -> Path:
        return self.path / f"{self.PREFIX}{index + 1:010d}{self.SUFFIX}"

    def frames(self, indices: Sequence[int]) -> dict[int, np.ndarray]:
        """0-based frame indices -> RGB uint8 frames."""
        return {i: read_rgb(self.file(i)) for i in sorted(set(int(i) for i in indices))}


class FlowFolder:
    """EPIC-KITCHENS precomputed TV-L1 flow: `<dir>/u/frame_%010d.jpg` and `<dir>/v/...`.

    EPIC computes one flow field per two RGB frames, so RGB frame i (0-based) maps to flow file
    (i + 1) // 2 (at least 1); each field spans two RGB frames. Pixels decode to
    p / 255 * 2 * bound - bound with bound = 20 px, in the flow image's own resolution.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not (self.path / "u").is_dir() or not (self.path / "v").is_dir():
            raise MediaError(f"flow folder {self.path} lacks its u/ and v/ subfolders.")

    def flow(self, rgb_index: int) -> np.ndarray:
        """(H, W, 2) float32 flow in pixels of the flow image for the 0-based RGB frame `rgb_index`."""
        name = f"frame_{max(1, (rgb_index + 1) // 2):010d}.jpg"
        planes = []
        for axis in ("u", "v"):
            img = cv2.imread(str(self.path / axis / name), cv2.IMREAD_GRAYSCALE)
            if img is None:
                raise MediaError(f"cannot read flow image {self.path / axis / name} (missing or corrupt).")
            planes.append(img.astype(np.float32) * (2.0 * EPIC_FLOW_BOUND_PX / 255.0) - EPIC_FLOW_BOUND_PX)
        if planes[0].shape != planes[1].shape:
            raise MediaError(f"flow images {name} in {self.path} have different sizes for u and v.")
        return np.stack(planes, axis=-1)


_AV_ERRORS = (av.FFmpegError, OSError, ValueError, IndexError)


class VideoFile:
    """A video (optionally with audio) read through PyAV. Probing opens the container once."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise MediaError(f"video {self.path} does not exist.")
        try:
            with av.open(str(self.path)) as container:
                if not container.streams.video:
                    raise MediaError(f"{self.path} has no video stream.")
                stream = container.streams.video[0]
                rate = stream.average_rate or stream.guessed_rate
                if not rate:
                    raise MediaError(f"{self.path} does not state its frame rate.")
                self.fps = float(rate)
                if stream.duration is not None and stream.time_base is not None:
                    duration = float(stream.duration * stream.time_base)
                elif container.duration is not None:
                    duration = container.duration / av.time_base
                else:
                    duration = 0.0
                self.duration = duration
                self.n_frames = int(stream.frames) if stream.frames else int(round(duration * self.fps))
                self.has_audio = bool(container.streams.audio)
        except _AV_ERRORS as exc:
            raise MediaError(f"cannot open video {self.path} ({exc}).") from None

    def _fail(self, exc: Exception) -> MediaError:
        return MediaError(f"cannot decode video {self.path} ({exc}).")

    def frames(self, indices: Sequence[int], fps: float | None = None) -> dict[int, np.ndarray]:
        """0-based frame indices -> RGB uint8 frames: each is the frame shown at time index / fps.

        `fps` overrides the container's rate (EPIC states it per video). An index past the last
        decodable frame gets the last frame; a video with no decodable frame raises MediaError.
        """
        fps = fps or self.fps
        want = sorted(set(int(i) for i in indices))
        out: dict[int, np.ndarray] = {}
        try:
            with av.open(str(self.path)) as container:
                stream = container.streams.video[0]
                stream.thread_type = "AUTO"
                base = float(stream.start_time * stream.time_base) if stream.start_time is not None else 0.0
                first_t = want[0] / fps
                if first_t > 0.5:
                    container.seek(int((base + first_t - 0.5) / stream.time_base), stream=stream, backward=True)
                tol = 0.5 / fps
                prev, k = None, 0
                for frame in container.decode(stream):
                    t = float(frame.pts * stream.time_base) - base if frame.pts is not None else None
                    if t is None:
                        continue
                    while k < len(want) and t > want[k] / fps + tol:
                        out[want[k]] = (prev if prev is not None else frame).to_ndarray(format="rgb24")
                        k += 1
                    if k == len(want):
                        break
                    prev = frame
                if k < len(want):
                    if prev is None:
                        raise MediaError(f"video {self.path} has no decodable frame at or after "
                                         f"{want[k] / fps:.2f} s.")
                    last = prev.to_ndarray(format="rgb24")
                    for i in want[k:]:
                        out[i] = last
        except _AV_ERRORS as exc:
            raise self._fail(exc) from None
        return out

    def all_frames(self) -> list[np.ndarray]:
        """Every frame, decoded in order (short clips such as Something-Something videos)."""
        try:
            with av.open(str(self.path)) as container:
                stream = container.streams.video[0]
                stream.thread_type = "AUTO"
                frames = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
        except _AV_ERRORS as exc:
            raise self._fail(exc) from None
        if not frames:
            raise MediaError(f"video {self.path} holds no decodable frame.")
        return frames

    def audio_windows(self, ends_s: Sequence[float], window_s: float, rate: int) -> list[np.ndarray] | None:
        """Mono float32 windows of `window_s` seconds ending at each time in `ends_s`, at `rate` Hz.

        PyAV resamples the track to `rate`; the parts of a window before the start or after the end of
        the track are silence. Returns None when the file has no audio stream.
        """
        if not self.has_audio:
            return None
        n = int(round(window_s * rate))
        lo, hi = max(0.0, min(ends_s) - window_s), max(ends_s)
        chunks: list[np.ndarray] = []
        t_first = None
        try:
            with av.open(str(self.path)) as container:
                stream = container.streams.audio[0]
                base = float(stream.start_time * stream.time_base) if stream.start_time is not None else 0.0
                if lo > 0.5:
                    container.seek(int((base + lo - 0.5) / stream.time_base), stream=stream, backward=True)
                # channels averaged as the runtime's media source does (FFmpeg's mono downmix sums them)
                resampler = av.AudioResampler(format="fltp", layout=None, rate=rate)
                for frame in container.decode(stream):
                    if t_first is None:
                        t_first = float(frame.pts * stream.time_base) - base if frame.pts is not None else 0.0
                    chunks += [o.to_ndarray().mean(axis=0, dtype=np.float32) for o in resampler.resample(frame)]
                    if frame.pts is not None and float(frame.pts * stream.time_base) - base > hi:
                        break
                chunks += [o.to_ndarray().mean(axis=0, dtype=np.float32) for o in resampler.resample(None)]
        except _AV_ERRORS as exc:
            raise self._fail(exc) from None
        track = np.concatenate(chunks).astype(np.float32) if chunks else np.zeros(0, np.float32)
        t_first = t_first or 0.0
        windows = []
        for end in ends_s:
            stop = int(round((end - t_first) * rate))
            window = np.zeros(n, np.float32)
            lo_i, hi_i = max(0, stop - n), min(track.size, stop)
            if hi_i > lo_i:
                window[n - (stop - lo_i):n - (stop - hi_i)] = track[lo_i:hi_i]
            windows.append(window)
        return windows
