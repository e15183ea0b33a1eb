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


@dataclass
class SessionPlan:
    """Every random choice of a session (one scene; idle gaps and action clips on one timeline), so any of its
    frames or audio samples can be rendered on demand: the trainer cuts windows from sessions it never renders
    whole, and `render_session` renders them all."""

    scene: object
    pieces: list                # (first_frame, n_idle_frames) for an idle gap, else a ClipPlan
    n_frames: int
    fps: int
    sample_rate: int
    noise: np.ndarray           # the scene's noise floor for the whole session
    segments: list[Segment]

    def _piece_at(self, frame: int):
        for piece in self.pieces:
            first, n = piece if isinstance(piece, tuple) else (piece.frame_base, piece.n_frames)
            if first <= frame < first + n:
                return piece, frame - first
        raise ConfigError(f"frame {frame} is outside the session's {self.n_frames} frames.")

    def frames(self, indices) -> np.ndarray:
        """Session frames `indices`: [n, size, size, 3] uint8 RGB."""
        size = self.scene.size
        out = np.empty((len(indices), size, size, 3), np.uint8)
        for k, i in enumerate(indices):
            piece, local = self._piece_at(int(i))
            out[k] = (render_idle(self.scene, int(i), 1, self.fps)[0] if isinstance(piece, tuple)
                      else render_frames(piece, [local])[0])
        return out

    def audio(self) -> np.ndarray:
        """The whole session's audio (float32 mono): each clip's speech over the noise floor."""
        audio = self.noise.copy()
        for piece in self.pieces:
            if not isinstance(piece, tuple):
                a0 = int(round(piece.frame_base / self.fps * self.sample_rate))
                audio[a0:a0 + piece.n_samples] = render_audio(piece, self.noise[a0:a0 + piece.n_samples])
        return audio


def plan_session(sources: DigitSources, rng: np.random.Generator, actions: list[tuple[int, int]],
                 gaps_s: list[float], levels: NuisanceLevels, duration_s: float = 2.0, lead_in_s: float = 0.25,
                 fps: int = 30, size: int = 128, sample_rate: int = 16000) -> SessionPlan:
    """A session of `actions` (verb, noun), gap i (seconds) before action i and the last gap after the last."""
    if len(gaps_s) != len(actions) + 1 or not actions or min(gaps_s) < 0:
        raise ConfigError(f"a session needs at least one action and one gap >= 0 more than actions, got "
                          f"{len(actions)} actions and gaps {gaps_s}.")
    scene = make_scene(rng, levels, size)
    pieces: list = []
    cursor = 0
    for (verb, noun), gap in zip(actions, gaps_s):
        idle = int(round(gap * fps))
        pieces.append((cursor, idle))
        cursor += idle
        plan = plan_clip(sources, rng, verb, noun, levels, duration_s, lead_in_s, fps, size, sample_rate,
                         scene=scene, frame_base=cursor)
        pieces.append(plan)
        cursor += plan.n_frames
    idle = int(round(gaps_s[-1] * fps))
    pieces.append((cursor, idle))
    cursor += idle
    plans = [p for p in pieces if not isinstance(p, tuple)]
    n_samples = max([int(round(cursor / fps * sample_rate))] +     # rounding may put a clip's end 1 sample later
                    [int(round(p.frame_base / fps * sample_rate)) + p.n_samples for p in plans])
    segments = []
    for plan in plans:
        start = (plan.frame_base + plan.lead_in_frames) / fps
        segments.append(Segment(round(start, 6), round(start + duration_s, 6), plan.verb, plan.noun))
    return SessionPlan(scene, pieces, cursor, fps, sample_rate, scene.audio_noise(n_samples, sample_rate), segments)


def render_session(sources: DigitSources, seed: int, n_actions: int, levels: NuisanceLevels,
                   gap_s: tuple[float, float] = (0.5, 1.5), duration_s: float = 2.0, lead_in_s: float = 0.25,
                   fps: int = 30, size: int = 128, sample_rate: int = 16000) -> Session:
    """`n_actions` random (verb, noun) clips, each after an idle gap drawn from `gap_s`, then a last gap."""
    if n_actions < 1 or not 0 <= gap_s[0] <= gap_s[1]:
        raise ConfigError(f"a session needs n_actions >= 1 and a gap range 0 <= low <= high, got {n_actions}, {gap_s}.")
    rng = np.random.default_rng(seed)
    gaps, actions = [], []
    for _ in range(n_actions):     # the draws in the order sessions always made them (same seed, same session)
        gaps.append(float(rng.uniform(*gap_s)))
        actions.append((int(rng.integers(len(VERBS))), int(rng.integers(len(NOUNS)))))
    gaps.append(float(rng.uniform(*gap_s)))
    plan = plan_session(sources, rng, actions, gaps, levels, duration_s, lead_in_s, fps, size, sample_rate)
    frames = np.empty((plan.n_frames, size, size, 3), np.uint8)
    for piece in plan.pieces:
        if isinstance(piece, tuple):
            first, n = piece
            frames[first:first + n] = render_idle(plan.scene, first, n, fps)
        else:
            frames[piece.frame_base:piece.frame_base + piece.n_frames] = render_frames(piece, range(piece.n_frames))
    return Session(frames, plan.audio(), fps, sample_rate, plan.segments, sources.source, seed)


def write_session(session: Session, path: Path, crf: int = 16, audio_codec: str = "pcm_s16le") -> Path:
    """Write `path` (.mkv: H.264 video at `crf` + 16-bit audio, PCM or FLAC, interleaved in time) and `path`.json
    (segments).

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
            vs = out.add_stream("libx264", rate=session.fps, options={"crf": str(crf), "preset": "veryfast"})
            vs.width, vs.height = session.frames.shape[2], session.frames.shape[1]
            vs.pix_fmt = "yuv420p"
            aus = out.add_stream(audio_codec, rate=session.sample_rate, layout="mono")
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


def _sidecar(json_path: Path) -> tuple[dict, list[Segment]]:
    """A session's sidecar JSON, parsed once, and its ground-truth segments (one sentence when it is not one)."""
    try:
        meta = json.loads(Path(json_path).read_text())
        return meta, [Segment(float(s["start_s"]), float(s["end_s"]), int(s["verb"]), int(s["noun"]))
                      for s in meta["segments"]]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"{json_path} is not a MovingDigits session sidecar ({exc.__class__.__name__}: {exc}).") \
            from None


def load_segments(json_path: Path) -> list[Segment]:
    """The ground-truth segments from a session's sidecar JSON."""
    return _sidecar(json_path)[1]


@dataclass(frozen=True)
class SessionMeta:
    """A recorded session's sidecar: its ground truth and what it was rendered from."""

    segments: list[Segment]
    duration_s: float
    source: str
    seed: int


def read_session_meta(path: Path) -> SessionMeta:
    """The sidecar (.json) of the session recording `path`."""
    meta_path = Path(path).with_suffix(".json")
    meta, segments = _sidecar(meta_path)
    try:
        duration_s = float(meta["duration_s"])     # write_session always writes it
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError(f"{meta_path} is not a MovingDigits session sidecar (no duration: {exc}).") from None
    return SessionMeta(segments, duration_s, str(meta.get("source", "")), int(meta.get("seed", 0)))


def read_session(path: Path) -> Session:
    """A session `write_session` wrote (the .mkv and its .json sidecar), decoded back into memory."""
    import av

    path = Path(path)
    meta, segments = _sidecar(path.with_suffix(".json"))
    try:
        with av.open(str(path)) as container:
            frames = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])
        with av.open(str(path)) as container:
            chunks = [f.to_ndarray().reshape(-1) for f in container.decode(audio=0)]
    except (av.error.FFmpegError, OSError, ValueError) as exc:
        raise EdgeError(f"cannot read the session recording {path} ({exc}).") from None
    audio = np.concatenate(chunks) if chunks else np.zeros(0, np.float32)
    if audio.dtype.kind == "i":                 # 16- or 32-bit integer samples, as the codec decodes them
        audio = audio.astype(np.float32) / float(np.iinfo(audio.dtype).max + 1)
    return Session(frames, audio, int(meta["fps"]), int(meta["sample_rate"]), segments, str(meta.get("source", "")),
                   int(meta.get("seed", 0)))
