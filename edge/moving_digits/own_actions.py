"""Five actions the shipped model has never seen: a new motion (`motions.MOTIONS`) of a card with a new symbol
(`symbols.SYMBOLS`, with its own sound), for showing that `trainer finetune` learns your own actions.

Each action pairs one new verb with one new noun, so every modality subset that still has V, or A, or F can
tell the action. Splits never share a voice or an image, as the digit benchmark's splits share no speaker or
MNIST image (held-out voices lie between the training ones): takes recorded for training come from `train`, the
held-out ones from `val` / `test`.

    plan_own_clip(split, action, rng, levels)     one take (a ClipPlan: render with render_frames / render_audio)
    render_own_session(split, seed, n, levels)    a Session of n of these actions with idle gaps
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from edge.errors import ConfigError
from edge.moving_digits.config import NuisanceLevels
from edge.moving_digits.motions import MOTIONS, with_motion
from edge.moving_digits.render import ClipPlan, Scene, plan_clip, render_frames, render_idle
from edge.moving_digits.session import Segment, Session, SessionPlan, plan_session, write_session
from edge.moving_digits.sources import DigitSources
from edge.moving_digits.symbols import SYMBOLS, symbol_sources

OWN_ACTIONS = tuple(zip(MOTIONS, SYMBOLS))   # (verb name, noun name): circle ring, approach triangle, ...
OWN_SPLITS = {"train": ((0.1, 0.5, 0.9), (0, 600)), "val": ((0.3,), (600, 700)),   # (voices, images): see symbols
              "test": ((0.7,), (700, 800))}
CLIP_S, LEAD_IN_S = 2.0, 0.25                  # a take: lead-in, then the action (plan_own_clip's defaults)
TAKE_S = CLIP_S + LEAD_IN_S
_HOLD = 0                                      # render.VERBS index of "hold": the base every new motion starts from


def own_sources(split: str, sample_rate: int = 16000) -> DigitSources:
    """The symbol images and sounds of one split (train / val / test)."""
    if split not in OWN_SPLITS:
        raise ConfigError(f"unknown split {split!r} for the own actions; use one of {list(OWN_SPLITS)}.")
    voices, images = OWN_SPLITS[split]
    return symbol_sources(voices, images, sample_rate)


def _motion_rng(rng: np.random.Generator) -> np.random.Generator:
    return np.random.default_rng(int(rng.integers(2 ** 63)))


def plan_own_clip(split: str, action: int, rng: np.random.Generator, levels: NuisanceLevels, *,
                  scene: Scene | None = None, frame_base: int = 0, duration_s: float = CLIP_S, lead_in_s: float = LEAD_IN_S,
                  fps: int = 30, size: int = 128, sample_rate: int = 16000) -> ClipPlan:
    """One take of OWN_ACTIONS[action] (verb and noun labels are that index) from `split`'s sources."""
    plan = plan_clip(own_sources(split, sample_rate), rng, _HOLD, action, levels, duration_s, lead_in_s, fps, size,
                     sample_rate, scene=scene, frame_base=frame_base)
    return with_motion(plan, MOTIONS[action], action, _motion_rng(rng), levels)


def plan_own_session(split: str, seed: int, actions: list[int], gaps_s: list[float], levels: NuisanceLevels,
                     **clip_args) -> SessionPlan:
    """A session of OWN_ACTIONS indices `actions` (gap i before action i, the last one after them)."""
    rng = np.random.default_rng(seed)
    plan = plan_session(own_sources(split, clip_args.get("sample_rate", 16000)), rng, [(_HOLD, a) for a in actions],
                        gaps_s, levels, **clip_args)
    motion_rng = _motion_rng(rng)
    clips = iter(actions)
    plan.pieces = [p if isinstance(p, tuple) else with_motion(p, MOTIONS[a := next(clips)], a, motion_rng, levels)
                   for p in plan.pieces]
    plan.segments = [Segment(s.start_s, s.end_s, a, a) for s, a in zip(plan.segments, actions)]
    return plan


def render_own_session(split: str, seed: int, n_actions: int, levels: NuisanceLevels,
                       gap_s: tuple[float, float] = (1.0, 2.0)) -> Session:
    """`n_actions` own actions (each once, in a random order, then again) with idle gaps drawn from `gap_s`."""
    if n_actions < 1 or not 0 <= gap_s[0] <= gap_s[1]:
        raise ConfigError(f"a session needs n_actions >= 1 and a gap range 0 <= low <= high, got {n_actions}, {gap_s}.")
    rng = np.random.default_rng([seed, 0x0A])
    order = [int(a) for _ in range(-(-n_actions // len(OWN_ACTIONS))) for a in rng.permutation(len(OWN_ACTIONS))]
    gaps = [float(g) for g in rng.uniform(*gap_s, n_actions + 1)]
    plan = plan_own_session(split, seed, order[:n_actions], gaps, levels)
    frames = np.concatenate([render_idle(plan.scene, p[0], p[1], plan.fps) if isinstance(p, tuple)
                             else render_frames(p, range(p.n_frames)) for p in plan.pieces])
    return Session(frames, plan.audio(), plan.fps, plan.sample_rate, plan.segments, f"own actions ({split})", seed)


def write_own_session(session: Session, path: Path) -> Path:
    """`write_session`, with the sidecar naming the own actions' verbs and nouns instead of the digits'."""
    json_path = write_session(session, path)
    meta = json.loads(json_path.read_text())
    meta.update(verbs=list(MOTIONS), nouns=list(SYMBOLS))
    for seg in meta["segments"]:
        seg["verb_name"], seg["noun_name"] = MOTIONS[seg["verb"]], SYMBOLS[seg["noun"]]
    json_path.write_text(json.dumps(meta, indent=1))
    return json_path
