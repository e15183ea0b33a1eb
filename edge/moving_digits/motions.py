"""New verbs for MovingDigits-AV: card motions the shipped label set lacks.

    circle          the card orbits once, clockwise on screen
    approach        the card comes towards the camera (grows to about twice its size)
    recede          the card moves away (shrinks to about half its size)
    flip            the card turns over about its vertical axis (its width goes to 0 and back, mirrored)
    swipe-diagonal  the card travels up and to the right

They leave the shipped verbs' clips as they were (`RENDER_VERSION` and its golden statistics pin them): a clip is
planned by `plan_clip` as a `hold` (no motion of its own), then `with_motion` swaps in a
`MovingCard` that keeps the hold card's texture, size, timing and tremor and adds the new motion, drawn from the
caller's rng. Like the shipped verbs, each motion is visible at 4 fps (tests/test_own_actions.py checks every draw).
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np

from edge.moving_digits.config import NuisanceLevels
from edge.moving_digits.render import CARD_PX, Card, ClipPlan, affine, rotation

MOTIONS = ("circle", "approach", "recede", "flip", "swipe-diagonal")
_DIAGONAL = np.array([1.0, -1.0]) / math.sqrt(2.0)
_ZOOM = ((0.6, 0.7), (1.35, 1.5))          # approach: from the low scale range to the high one (recede: reversed)
_MAX_SIDE = 0.9                            # a zooming card's largest side, as a share of the view


@dataclass
class MovingCard(Card):
    """A card with one of MOTIONS on top of the hold card's pose (tremor); `scale(t)` is (x, y) size factors."""

    orbit_radius: float = 0.0
    orbit_phase: float = 0.0
    scale0: float = 1.0
    scale1: float = 1.0
    flip: bool = False

    def _progress(self, t: float) -> float:
        u = min(max((t - self.t0) / (self.t1 - self.t0), 0.0), 1.0)
        return u * u * (3 - 2 * u)

    def pose(self, t: float) -> tuple[np.ndarray, float]:
        centre, angle = super().pose(t)
        if self.orbit_radius:
            a = self.orbit_phase + 2 * math.pi * self._progress(t)
            centre = centre + self.orbit_radius * np.array([math.cos(a) - math.cos(self.orbit_phase),
                                                            math.sin(a) - math.sin(self.orbit_phase)])
        return centre, angle

    def scale(self, t: float) -> tuple[float, float]:
        e = self._progress(t)
        s = self.scale0 + (self.scale1 - self.scale0) * e
        return s * (math.cos(math.pi * e) if self.flip else 1.0), s

    def to_world(self, t: float) -> np.ndarray:
        centre, angle = self.pose(t)
        sx, sy = self.scale(t)
        c = (self.rgba.shape[0] - 1) / 2.0
        lin = rotation(angle) @ np.diag([sx, sy]) * (self.side / CARD_PX)
        return affine(lin, centre - lin @ np.array([c, c]))


def _place(rng: np.random.Generator, side: float, size: int, extent: np.ndarray) -> np.ndarray:
    """A start centre such that the card (side px) moved by up to `extent` (x, y px; signed) stays in view."""
    lo, hi = 0.5 * side + 0.05 * size, size - 0.5 * side - 0.05 * size
    out = np.empty(2)
    for axis in range(2):
        a, b = lo - min(extent[axis], 0.0), hi - max(extent[axis], 0.0)
        out[axis] = rng.uniform(a, b) if a < b else (a + b) / 2.0
    return out


def moving_card(card: Card, motion: str, rng: np.random.Generator, levels: NuisanceLevels, size: int) -> MovingCard:
    """`card` (a hold card) with `motion` added; its start is placed again so the whole motion stays in view."""
    if motion not in MOTIONS:
        raise ValueError(f"unknown motion {motion!r}; known: {list(MOTIONS)}.")
    amp = rng.uniform(*levels.motion_amplitude)
    base = {f.name: getattr(card, f.name) for f in dataclasses.fields(Card)}
    extra: dict = {}
    side = card.side
    if motion == "circle":
        r = min(amp * rng.uniform(0.12, 0.17) * size, max(size - side - 0.1 * size, 0.0) / 2)
        phase = rng.uniform(0, 2 * math.pi)
        centre = _place(rng, side + 2 * r, size, np.zeros(2))
        extra = dict(orbit_radius=r, orbit_phase=phase)
        base["start"] = centre + r * np.array([math.cos(phase), math.sin(phase)])
    elif motion in ("approach", "recede"):
        small, big = rng.uniform(*_ZOOM[0]), min(rng.uniform(*_ZOOM[1]), _MAX_SIDE * size / side)
        extra = dict(scale0=small, scale1=big) if motion == "approach" else dict(scale0=big, scale1=small)
        base["start"] = _place(rng, side * big, size, np.zeros(2))
    elif motion == "flip":
        extra = dict(flip=True)
    else:  # swipe-diagonal
        room = size - side - 0.1 * size
        dist = min(amp * rng.uniform(0.40, 0.55) * size, math.sqrt(2.0) * max(room, 0.0))
        base["travel"] = _DIAGONAL * dist
        base["start"] = _place(rng, side, size, base["travel"])
    return MovingCard(**base, **extra)


def with_motion(plan: ClipPlan, motion: str, verb: int, rng: np.random.Generator, levels: NuisanceLevels) -> ClipPlan:
    """A copy of `plan` (planned as a hold) whose card performs `motion`, labelled `verb`."""
    card = moving_card(plan.card, motion, rng, levels, plan.scene.size)
    return dataclasses.replace(plan, card=card, verb=verb)
