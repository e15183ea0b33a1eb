"""Sessions: clips with idle gaps in one continuous video + audio stream, with ground-truth segments.

One scene (surface, camera path, lighting, noise floor) runs through the whole session, so the stream
is continuous: idle gaps show the surface with no card and carry only background noise; each action
shows its card from its lead-in (a still card) to its end. A segment is the action proper.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path
from typing import Iterator

import numpy as np

from edge.errors import ConfigError, EdgeError
from edge.moving_digits.config import NuisanceLevels
from edge.moving_digits.render import NOUNS, VERBS, make_scene, plan_clip, render_audio, render_frames, render_idle
from edge.moving_digits.sources import DigitSources


@dataclass(frozen=True)
class Segment:
    start_s: float
    end_s: float
    verb: int
    noun: int


@dataclass
class Session:
    frames: np.ndarray          # [N, size, size, 3] uint8 RGB; frame k is at k / fps s
    audio: np.ndarray           # float32 mono; sample j is at j / sample_rate s
    fps: int
    sample_rate: int
    segments: list[Segment]
    source: str = ""
    seed: int = 0

    @property
    def duration_s(self) -> float:
        return len(self.frames) / self.fps

    def iter_frames(self) -> Iterator[tuple[float, np.ndarray]]:
        """(timestamp s, RGB frame) in stream order."""
        for k, frame in enumerate(self.frames):
            yield k / self.fps, frame

    def iter_audio(self, block: int = 1024) -> Iterator[tuple[float, np.ndarray]]:
        """(timestamp s of the block's first sample, float32 block of up to `block` samples) in stream order."""
        if block <= 0:
            raise ConfigError(f"the audio block size must be positive, got {block}.")
        for j in range(0, len(self.audio), block):
            yield j / self.sample_rate, self.audio[j:j + block]


def render_session(sources: DigitSources, seed: int, n_actions: int, levels: NuisanceLevels,
                   gap_s: tuple[float, float] = (0.5, 1.5), duration_s: float = 2.0, lead_in_s: float = 0.25,
                   fps: int = 30, size: int = 128, sample_rate: int = 16000) -> Session:
    """`n_actions` random (verb, noun) clips, each after an idle gap drawn from `gap_s`, then a last gap."""
    if n_actions < 1 or not 0 <= gap_s[0] <= gap_s[1]:
        raise ConfigError(f"a session needs n_actions >= 1 and a gap range 0 <= low <= high, got {n_actions}, {gap_s}.")
    rng = np.random.default_rng(seed)
    scene = make_scene(rng, levels, size)
    pieces: list = []                     # (first_frame, n_idle_frames) or a ClipPlan
    cursor = 0
    for _ in range(n_actions):
        idle = int(round(rng.uniform(*gap_s) * fps))
        pieces.append((cursor, idle))
        cursor += idle
        plan = plan_clip(sources, rng, int(rng.integers(len(VERBS))), int(rng.integers(len(NOUNS))), levels,
                         duration_s, lead_in_s, fps, size, sample_rate, scene=scene, frame_base=cursor)
        pieces.append(plan)
        cursor += plan.n_frames
    idle = int(round(rng.uniform(*gap_s) * fps))
    pieces.append((cursor, idle))
    cursor += idle

    frames = np.empty((cursor, size, size, 3), np.uint8)
    plans = [p for p in pieces if not isinstance(p, tuple)]
    n_samples = max([int(round(cursor / fps * sample_rate))] +     # rounding may put a clip's end 1 sample later
                    [int(round(p.frame_base / fps * sample_rate)) + p.n_samples for p in plans])
    noise = scene.audio_noise(n_samples, sample_rate)
    audio = noise.copy()
    segments = []
    for piece in pieces:
        if isinstance(piece, tuple):
            first, n = piece
            frames[first:first + n] = render_idle(scene, first, n, fps)
            continue
        frames[piece.frame_base:piece.frame_base + piece.n_frames] = render_frames(piece, range(piece.n_frames))
        a0 = int(round(piece.frame_base / fps * sample_rate))
        audio[a0:a0 + piece.n_samples] = render_audio(piece, noise[a0:a0 + piece.n_samples])
        start = (piece.frame_base + piece.lead_in_frames) / fps
        segments.append(Segment(round(start, 6), round(start + duration_s, 6), piece.verb, piece.noun))
    return Session(frames, audio, fps, sample_rate, segments, sources.source, seed)


def write_session(session: Session, path: Path) -> Path:
    """Write `path` (.mkv: H.264 video + 16-bit PCM audio, interleaved in time) and `path`.json (segments).

    Returns the JSON path.
    """
    import av  # PyAV: only needed when writing files

    path = Path(path)
    if path.suffix.lower() != ".mkv":
        raise ConfigError(f"a session is written as .mkv, got {path.name}.")
    path.parent.mkdir(parents=True, exist_ok=True)
    pcm = (np.clip(session.audio, -1, 1) * 32767).astype(np.int16)
    try:
        with av.open(str(path), "w") as out:
            vs = out.add_stream("libx264", rate=session.fps, options={"crf": "16", "preset": "veryfast"})
            vs.width, vs.height = session.frames.shape[2], session.frames.shape[1]
            vs.pix_fmt = "yuv420p"
            aus = out.add_stream("pcm_s16le", rate=session.sample_rate, layout="mono")
            written = 0
            for k, frame in enumerate(session.frames):
                vf = av.VideoFrame.from_ndarray(frame, format="rgb24")
                vf.pts, vf.time_base = k, Fraction(1, session.fps)
                out.mux(vs.encode(vf))
                upto = min(len(pcm), int(round((k + 1) / session.fps * session.sample_rate)))
                if upto > written:
                    af = av.AudioFrame.from_ndarray(pcm[None, written:upto], format="s16", layout="mono")
                    af.sample_rate, af.pts = session.sample_rate, written
                    af.time_base = Fraction(1, session.sample_rate)
                    out.mux(aus.encode(af))
                    written = upto
            out.mux(vs.encode(None))
            out.mux(aus.encode(None))
    except (av.error.FFmpegError, OSError) as exc:
        raise EdgeError(f"cannot write the session video {path}: {exc}.") from None
    meta = {"fps": session.fps, "sample_rate": session.sample_rate, "n_frames": len(session.frames),
            "duration_s": session.duration_s, "source": session.source, "seed": session.seed,
            "verbs": list(VERBS), "nouns": list(NOUNS),
            "segments": [dict(asdict(s), verb_name=VERBS[s.verb], noun_name=NOUNS[s.noun]) for s in session.segments]}
    json_path = path.with_suffix(".json")
    json_path.write_text(json.dumps(meta, indent=1))
    return json_path


def load_segments(json_path: Path) -> list[Segment]:
    """The ground-truth segments from a session's sidecar JSON."""
    try:
        meta = json.loads(Path(json_path).read_text())
        return [Segment(float(s["start_s"]), float(s["end_s"]), int(s["verb"]), int(s["noun"]))
                for s in meta["segments"]]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"{json_path} is not a MovingDigits session sidecar ({exc.__class__.__name__}: {exc}).") \
            from None
