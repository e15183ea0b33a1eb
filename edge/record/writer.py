"""One media file per session: Matroska with MJPEG video and 16-bit PCM audio, stamped with the capture clocks.

Both streams start at file time 0 (the first video frame, or the first audio sample without video), so a reader
that measures each stream from its own start (trainer/data/media.py does) sees them aligned. Video frames keep
their capture times (variable frame rate, millisecond pts). Audio is written gap-free: within a run of blocks
the sample count is the clock, anchored at the earliest start the run's first 0.5 s of blocks allow (a block's
capture stamp can only be late, never early); a discontinuity (a microphone reopened, blocks dropped, a file
reader that skipped) starts a new run, and the gap is filled with silence (or an overlap trimmed), counted.

Crash safety: MJPEG frames are all key frames, clusters close every 0.5 s and every packet is flushed to the
file, so a process killed mid-session leaves a file FFmpeg reads up to its last fraction of a second;
`durable_s` says up to which file time everything is on disk (the recorder commits a take's CSV row only then).
A full disk raises DiskFull (one sentence), nothing already written is touched.
"""
from __future__ import annotations

import errno
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np

from edge.errors import EdgeError

HOLD_S = 0.5          # audio held at the start of a run to anchor it on its earliest block
DRIFT_WINDOW_S = 5.0  # a run's sample clock is compared with the stamps over windows this long ...
DRIFT_S = 0.1         # ... and pulled back when it is further off than this
CLUSTER_MS = 500      # Matroska cluster length: the most a killed process can lose
MS = Fraction(1, 1000)


class DiskFull(EdgeError):
    """The disk holding the session file is full."""


class WriteError(EdgeError):
    """The session file cannot be written (another OS error)."""


def _fail(exc: Exception, path: Path) -> EdgeError:
    code = getattr(exc, "errno", None)
    if code in (errno.ENOSPC, errno.EDQUOT):
        return DiskFull(f"the disk holding {path.parent} is full")
    return WriteError(f"cannot write {path} ({getattr(exc, 'strerror', None) or exc})")


class SessionWriter:
    def __init__(self, path: str | Path, *, video: bool, audio_rate: int | None, fps: float = 30.0,
                 quality: int = 3) -> None:
        if not video and not audio_rate:
            raise ValueError("a session needs video, audio or both")
        self.path = Path(path)
        self.has_video, self.audio_rate, self.fps, self.quality = video, audio_rate, fps, quality
        self.origin: float | None = None     # session time of file time 0
        self.size: tuple[int, int] | None = None
        self._c = self._vs = self._as = None
        self._last_ms = -1
        self.frames = 0                      # video frames written
        self.video_end = 0.0                 # file time up to which video is written
        self.samples = 0                     # audio samples written (silence included)
        self.padded = 0                      # silence samples filled into gaps
        self.lead_in = 0                     # silence before the first sample (audio started after the video)
        self.trimmed = 0                     # samples dropped where a run overlapped the last one
        self.runs = 0                        # audio runs (1 + discontinuities)
        self.resized = 0                     # frames of another size, scaled to the first one's
        self._run: list[tuple[float, np.ndarray]] = []   # held blocks of the current run: (stamp_end, samples)
        self._run_anchor: float | None = None
        self._drift: list[float] = []       # lateness of the current window's blocks against the sample clock
        self._drift_from = 0.0
        self.drift_fixes = 0                 # re-anchorings of a run whose sample clock drifted from the stamps
        self._pending_audio: list[tuple[float, np.ndarray, bool]] = []  # before the origin is known
        self.closed = False

    # ---- opening -------------------------------------------------------------------------------------------
    @property
    def started(self) -> bool:
        return self._c is not None

    def _open(self, origin: float, size: tuple[int, int] | None) -> None:
        import av

        self.origin, self.size = origin, size
        try:
            c = av.open(str(self.path), "w", format="matroska",
                        options={"cluster_time_limit": str(CLUSTER_MS), "flush_packets": "1"})
        except Exception as exc:
            raise _fail(exc, self.path) from None
        if self.has_video:
            w, h = size
            vs = c.add_stream("mjpeg", rate=Fraction(self.fps).limit_denominator(1001),
                              options={"qmin": str(self.quality), "qmax": str(self.quality)})
            vs.width, vs.height, vs.pix_fmt = w, h, "yuvj420p"
            vs.codec_context.time_base = MS
            vs.time_base = MS
            self._vs = vs
        if self.audio_rate:
            a = c.add_stream("pcm_s16le", rate=self.audio_rate)
            a.layout = "mono"
            self._as = a
        self._c = c
        self._av = av

    def _mux(self, packets) -> None:
        try:
            for p in packets:
                self._c.mux(p)
        except Exception as exc:
            raise _fail(exc, self.path) from None

    # ---- video -----------------------------------------------------------------------------------------------
    def add_video(self, t: float, frame: np.ndarray) -> None:
        """A frame (HxWx3 RGB uint8) captured at session time t."""
        if not self.has_video:
            return
        if self._c is None:
            self._open(t, (frame.shape[1], frame.shape[0]))
            self._flush_pending_audio()
        if (frame.shape[1], frame.shape[0]) != self.size:
            frame = cv2.resize(frame, self.size, interpolation=cv2.INTER_AREA)
            self.resized += 1
        ms = max(self._last_ms + 1, int(round((t - self.origin) * 1000)))
        vf = self._av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
        vf.pts, vf.time_base = ms, MS
        try:
            packets = self._vs.encode(vf)
        except Exception as exc:
            raise _fail(exc, self.path) from None
        self._mux(packets)
        self._last_ms = ms
        self.frames += 1
        self.video_end = ms / 1000 + 1 / self.fps

    # ---- audio -----------------------------------------------------------------------------------------------
    def add_audio(self, t_end: float, samples: np.ndarray, discontinuity: bool = False) -> None:
        """A mono block whose last sample was captured at session time t_end; `discontinuity` when samples were
        lost before it (the clock must be re-anchored)."""
        if not self.audio_rate:
            return
        samples = np.asarray(samples, np.float32).reshape(-1)
        if self._c is None:
            if self.has_video:
                self._pending_audio.append((t_end, samples, discontinuity))
                if len(self._pending_audio) > 1 and t_end - self._pending_audio[1][0] > 5.0:
                    self._pending_audio.pop(0)  # a camera slow to start: only the last 5 s can matter
                return
            self._open(t_end - samples.size / self.audio_rate, None)
        self._add_audio(t_end, samples, discontinuity)

    def _flush_pending_audio(self) -> None:
        pending, self._pending_audio = self._pending_audio, []
        for t_end, samples, disc in pending:
            self._add_audio(t_end, samples, disc)

    def _add_audio(self, t_end: float, samples: np.ndarray, discontinuity: bool) -> None:
        rate = self.audio_rate
        if discontinuity and self._run_anchor is not None:
            self._run_anchor = None
        if self._run_anchor is None:
            # new run: hold blocks for HOLD_S, then anchor at the earliest start they allow
            self._run.append((t_end, samples))
            held = sum(s.size for _, s in self._run)
            if held / rate < HOLD_S:
                return
            self._flush_run()
            return
        self._track_drift(t_end, samples)

    def _track_drift(self, t_end: float, samples: np.ndarray) -> None:
        """Within a run the sample count is the clock; a microphone whose clock runs off the monotonic clock
        (tens of ppm: ~30 ms per 5 min at 100 ppm) is pulled back once the earliest block of a DRIFT_WINDOW_S
        window is more than DRIFT_S early or late (stamps are only ever late, so the window's minimum is the
        offset), by filling silence or trimming samples at that block."""
        rate = self.audio_rate
        start = t_end - self.origin - samples.size / rate          # the block's first sample on the stamps
        self._drift.append(start - self.samples / rate)            # ... against where the sample clock puts it
        if t_end - self._drift_from >= DRIFT_WINDOW_S:
            offset = min(self._drift)
            self._drift, self._drift_from = [], t_end
            if abs(offset) > DRIFT_S:
                self.drift_fixes += 1
                n = int(round(abs(offset) * rate))
                if offset > 0:
                    self.padded += n
                    self._write_samples(np.zeros(n, np.float32))
                else:
                    cut = min(n, samples.size)
                    self.trimmed += cut
                    samples = samples[cut:]
        self._write_samples(samples)

    def _flush_run(self) -> None:
        if not self._run:
            return
        rate = self.audio_rate
        cum, starts = 0, []
        for t_end, s in self._run:
            cum += s.size
            starts.append(t_end - cum / rate)
        anchor = min(starts) - self.origin          # file time of the run's first sample
        self.runs += 1
        data = np.concatenate([s for _, s in self._run])
        self._drift, self._drift_from = [], self._run[-1][0]
        self._run = []
        self._run_anchor = anchor
        at = int(round(anchor * rate))
        if at > self.samples:
            gap = at - self.samples
            if self.runs > 1:
                self.padded += gap
            else:
                self.lead_in += gap
            self._write_samples(np.zeros(gap, np.float32))
        elif at < self.samples:
            cut = min(data.size, self.samples - at)
            if self.runs > 1 or self.samples > 0:
                self.trimmed += cut
            data = data[cut:]
        self._write_samples(data)

    def _write_samples(self, x: np.ndarray) -> None:
        if x.size == 0:
            return
        pcm = (np.clip(np.nan_to_num(x), -1.0, 1.0) * 32767).astype(np.int16)[None, :]
        af = self._av.AudioFrame.from_ndarray(pcm, format="s16", layout="mono")
        af.sample_rate = self.audio_rate
        af.pts, af.time_base = self.samples, Fraction(1, self.audio_rate)
        try:
            packets = self._as.encode(af)
        except Exception as exc:
            raise _fail(exc, self.path) from None
        self._mux(packets)
        self.samples += x.size

    # ---- progress and closing --------------------------------------------------------------------------------
    @property
    def written_s(self) -> float:
        """File time up to which every stream has been handed to the muxer."""
        ends = []
        if self.has_video:
            ends.append(self.video_end if self.frames else 0.0)
        if self.audio_rate:
            ends.append(self.samples / self.audio_rate)
        return min(ends) if self._c is not None else 0.0

    @property
    def durable_s(self) -> float:
        """File time up to which everything is in the file (muxed, its cluster closed, flushed)."""
        return max(0.0, self.written_s - 2 * CLUSTER_MS / 1000 - 0.2)

    def close(self) -> None:
        """Write what is held and the file's index. Safe to call twice; after a DiskFull it closes what it can."""
        if self.closed:
            return
        self.closed = True
        if self._c is None:
            return
        try:
            if self._pending_audio:
                self._flush_pending_audio()
            self._flush_run()
            if self._vs is not None:
                self._mux(self._vs.encode(None))
            if self._as is not None:
                try:
                    self._mux(self._as.encode(None))
                except EdgeError:
                    raise
        finally:
            try:
                self._c.close()
            except Exception as exc:
                raise _fail(exc, self.path) from None

    def abort(self) -> None:
        """After an error: release the file without raising (what is on disk stays readable)."""
        self.closed = True
        if self._c is not None:
            try:
                self._c.close()
            except Exception:
                pass


def readable_end(path: str | Path) -> float:
    """File time up to which every stream of a (possibly cut-off) session file can be read back."""
    import av

    ends: dict[int, float] = {}
    try:
        with av.open(str(path)) as c:
            for p in c.demux():
                if p.pts is None or p.stream.type not in ("video", "audio"):
                    continue
                end = float((p.pts + (p.duration or 0)) * p.time_base)
                ends[p.stream.index] = max(ends.get(p.stream.index, 0.0), end)
            n = len([s for s in c.streams if s.type in ("video", "audio")])
    except Exception:  # a file cut off mid-packet: what was read so far counts
        n = len(ends)
    return min(ends.values()) if ends and len(ends) == n else 0.0
