"""New nouns for MovingDigits-AV: geometric symbols on the card, each with its own synthesized non-speech sound.

The shipped label set knows the digits 0-9 only; these five nouns are what `edge.moving_digits.motions` builds
new actions from. A symbol is drawn (white on black, 28x28, like an MNIST digit) under a random affine distortion
and stroke; its sound is a family of synthetic sounds no digit has, so audio alone can tell the noun:

    ring      a tone with a fast tremolo (amplitude-modulated, 6-10 Hz)
    triangle  a rising chirp
    square    a square-wave buzz (odd harmonics)
    star      a bell: inharmonic partials decaying
    cross     two short band-limited noise bursts ("tsk-tsk")

Every draw is seeded by (voice, symbol, take) and (image index), as the procedural digit source is, so splits
built from different voices / image ranges never share a sample; a voice is a number in [0, 1) that shifts the
pitch by 0.85-1.15x and colours the sound (held-out voices lie between the training ones, as a new speaker's
voice lies among those heard before). The result is a `DigitSources` whose keys are
symbol indices (0-4), so the renderer's `plan_clip` draws from it unchanged.
"""
from __future__ import annotations

from functools import lru_cache

import cv2
import numpy as np

from edge.moving_digits.sources import DigitSources

SYMBOLS = ("ring", "triangle", "square", "star", "cross")
TAKES_PER_VOICE = 40
_IMAGE_SEED, _SOUND_SEED = 0x5359, 0x534E


def _polygon(n: int, radius: float, inner: float | None = None, turn: float = -90.0) -> np.ndarray:
    """Vertices of a regular polygon (or a star when `inner` is given) around (32, 32) on a 64 px canvas."""
    k = 2 * n if inner else n
    ang = np.radians(turn + 360.0 * np.arange(k) / k)
    r = np.where(np.arange(k) % 2, inner, radius) if inner else np.full(k, radius)
    return np.stack([32 + r * np.cos(ang), 32 + r * np.sin(ang)], 1)


def symbol_image(rng: np.random.Generator, symbol: int) -> np.ndarray:
    """A 28x28 uint8 symbol (white on black) with random stroke, size, rotation, shear and offset."""
    canvas = np.zeros((64, 64), np.uint8)
    thick = int(rng.integers(3, 7))
    size = rng.uniform(20, 25)
    name = SYMBOLS[symbol]
    if name == "ring":
        cv2.circle(canvas, (32, 32), int(size), 255, thick, cv2.LINE_AA)
    elif name == "cross":
        for a, b in (((-1, -1), (1, 1)), ((-1, 1), (1, -1))):
            p = tuple(int(32 + size * 0.8 * v) for v in a)
            q = tuple(int(32 + size * 0.8 * v) for v in b)
            cv2.line(canvas, p, q, 255, thick + 1, cv2.LINE_AA)
    else:
        pts = {"triangle": _polygon(3, size), "square": _polygon(4, size, turn=-45.0),
               "star": _polygon(5, size, inner=size * 0.45)}[name]
        cv2.polylines(canvas, [np.round(pts).astype(np.int32)], True, 255, thick, cv2.LINE_AA)
    m = cv2.getRotationMatrix2D((32, 32), rng.uniform(-12, 12), rng.uniform(0.85, 1.0))
    m[0, 1] += rng.uniform(-0.2, 0.2)          # shear
    m[:, 2] += rng.uniform(-3, 3, 2)
    warped = cv2.warpAffine(canvas, m, (64, 64), flags=cv2.INTER_LINEAR)
    return cv2.resize(warped, (28, 28), interpolation=cv2.INTER_AREA)


def _envelope(n: int, attack: int, release: int) -> np.ndarray:
    env = np.ones(n, np.float32)
    env[:attack] = np.linspace(0, 1, attack)
    env[n - release:] = np.linspace(1, 0, release)
    return env


def symbol_sound(rng: np.random.Generator, symbol: int, sample_rate: int, voice: float) -> np.ndarray:
    """0.35-0.7 s of the symbol's sound; `voice` in [0, 1) shifts its pitch and colour (a per-split 'speaker')."""
    n = int(rng.uniform(0.35, 0.7) * sample_rate)
    t = np.arange(n, dtype=np.float64) / sample_rate
    pitch = (0.85 + 0.3 * voice) * rng.uniform(0.93, 1.07)
    name = SYMBOLS[symbol]
    if name == "ring":
        x = np.sin(2 * np.pi * 440 * pitch * t) * (0.55 + 0.45 * np.sin(2 * np.pi * rng.uniform(6, 10) * t))
    elif name == "triangle":
        f0, f1 = 300 * pitch, 1500 * pitch
        x = np.sin(2 * np.pi * (f0 * t + (f1 - f0) * t ** 2 / (2 * t[-1])))
    elif name == "square":
        x = 0.6 * np.sign(np.sin(2 * np.pi * 180 * pitch * t))
    elif name == "star":
        x = sum(a * np.exp(-t * d) * np.sin(2 * np.pi * 1300 * pitch * p * t)
                for a, p, d in ((1.0, 1.0, 4.0), (0.6, 2.76, 7.0), (0.4, 4.10, 10.0)))
    else:  # cross: two bursts of noise band-limited to 2-5 kHz
        spec = np.fft.rfft(rng.standard_normal(n))
        f = np.fft.rfftfreq(n, 1.0 / sample_rate)
        x = np.fft.irfft(spec * ((f > 2000 * pitch) & (f < 5000 * pitch)), n=n)
        x *= ((t % 0.22) < 0.09) / max(float(np.abs(x).max()), 1e-9)
    ramp = max(1, int(0.01 * sample_rate))
    x = x * _envelope(n, ramp, ramp) * rng.uniform(0.3, 0.8) + rng.normal(0, 0.01, n)
    return x.astype(np.float32)


@lru_cache(maxsize=8)
def symbol_sources(voices: tuple[float, ...], images: tuple[int, int], sample_rate: int = 16000) -> DigitSources:
    """The symbols as a renderer source: images `images[0]..images[1]-1` (index i draws symbol i mod 5) and
    TAKES_PER_VOICE sounds per symbol and voice. A voice (in [0, 1): pitch and colour) plays the role of an FSDD
    speaker: splits use different ones."""
    start, stop = images
    if stop - start < len(SYMBOLS) or not voices or not all(0 <= v < 1 for v in voices):
        raise ValueError(f"symbol sources need at least {len(SYMBOLS)} images and voices in [0, 1), got {images}, "
                         f"{voices}.")
    by_symbol: dict[int, list[np.ndarray]] = {k: [] for k in range(len(SYMBOLS))}
    for i in range(start, stop):
        by_symbol[i % len(SYMBOLS)].append(symbol_image(np.random.default_rng([_IMAGE_SEED, i]), i % len(SYMBOLS)))
    sounds: dict[int, list[np.ndarray]] = {k: [] for k in range(len(SYMBOLS))}
    for v in voices:
        vid = int(round(v * 1000))
        for k in range(len(SYMBOLS)):
            sounds[k].extend(symbol_sound(np.random.default_rng([_SOUND_SEED, vid, k, take]), k, sample_rate, v)
                             for take in range(TAKES_PER_VOICE))
    names = tuple(f"voice-{v:.2f}" for v in voices)
    return DigitSources("symbols", sample_rate, {k: np.stack(v) for k, v in by_symbol.items()}, sounds, names,
                        images, 0, f"symbols {start}:{stop} + synthetic voices {','.join(names)}")
