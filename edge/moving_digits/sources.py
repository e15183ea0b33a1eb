"""Digit images and spoken-digit sounds: real (MNIST + FSDD from a data root) or procedural.

Real: `<root>/mnist/t10k-images-idx3-ubyte.gz` (+ labels), gzip IDX; `<root>/fsdd/recordings/
{digit}_{speaker}_{take}.wav`, 8 kHz mono, resampled here to the render rate.
Procedural (no data root): digits drawn with OpenCV Hershey fonts under random affine distortion and
stroke width, and per-digit telephone-keypad (DTMF) dual tones with random timing, level and noise.
Both honour the split: image i and speaker s always give the same sample, different ones never do.
"""
from __future__ import annotations

import gzip
import logging
import wave
import zlib
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

from edge.errors import EdgeError
from edge.preprocess import mixdown, resample

log = logging.getLogger(__name__)

MNIST_IMAGES = "mnist/t10k-images-idx3-ubyte.gz"
MNIST_LABELS = "mnist/t10k-labels-idx1-ubyte.gz"
FSDD_DIR = "fsdd/recordings"
DEFAULT_SPEAKERS = ("george", "jackson", "lucas", "nicolas", "yweweler")
DEFAULT_IMAGES = (0, 8000)
PROCEDURAL_TAKES = 50          # sounds per (speaker, digit), as in FSDD


class DataError(EdgeError):
    """A data root whose files cannot be used (missing folder, bad IDX header, no recordings)."""


@dataclass
class DigitSources:
    """What the renderer draws from: per digit, 28x28 uint8 images (white ink on black, as MNIST)
    and mono float32 sounds at `sample_rate`."""

    source: str                                   # "real" or "procedural"
    sample_rate: int
    images: dict[int, np.ndarray]                 # digit -> (n, 28, 28) uint8
    sounds: dict[int, list[np.ndarray]]           # digit -> list of (samples,) float32
    speakers: tuple[str, ...]
    image_range: tuple[int, int]
    skipped: int = 0                              # corrupt / unreadable files left out
    description: str = field(default="")

    def pick(self, rng: np.random.Generator, digit: int) -> tuple[np.ndarray, np.ndarray]:
        """One image and one (different, independent) sound of `digit`."""
        imgs, snds = self.images[digit], self.sounds[digit]
        return imgs[rng.integers(len(imgs))], snds[rng.integers(len(snds))]


def load_sources(data_root: Path | None, speakers: list[str] | None = None,
                 images: tuple[int, int] | None = None, sample_rate: int = 16000) -> DigitSources:
    """Real sources from `data_root` when it exists, else the procedural source (logged once)."""
    spk = tuple(speakers) if speakers else DEFAULT_SPEAKERS
    rng_ = tuple(images) if images else DEFAULT_IMAGES
    if data_root is not None and not Path(data_root).is_dir():
        log.warning("data root %s does not exist; using the procedural MovingDigits source.", data_root)
        data_root = None
    if data_root is None:
        return _procedural(spk, rng_, sample_rate)
    return _real(Path(data_root).resolve(), spk, rng_, sample_rate)


# ---------------------------------------------------------------- real


def _read_idx(path: Path, magic: int, dims: int) -> np.ndarray:
    if not path.is_file():
        raise DataError(f"MNIST file {path} is missing (expected gzip IDX from the MNIST t10k set).")
    try:
        with gzip.open(path, "rb") as fh:
            raw = fh.read()
    except (OSError, EOFError) as exc:
        raise DataError(f"MNIST file {path} is not a readable gzip file ({exc}).") from None
    header = np.frombuffer(raw[: 4 * (dims + 1)], dtype=">u4")
    if header.size != dims + 1 or header[0] != magic:
        raise DataError(f"MNIST file {path} does not start with the IDX magic number {magic}.")
    shape = tuple(int(d) for d in header[1:])
    body = np.frombuffer(raw, dtype=np.uint8, offset=4 * (dims + 1))
    if body.size != int(np.prod(shape)):
        raise DataError(f"MNIST file {path} holds {body.size} bytes of data, its header says {shape}.")
    return body.reshape(shape)


def _read_wav(path: Path, sample_rate: int) -> np.ndarray | None:
    """One FSDD recording as float32 at `sample_rate`; None when the file is unusable."""
    try:
        with wave.open(str(path), "rb") as wf:
            width, channels, rate = wf.getsampwidth(), wf.getnchannels(), wf.getframerate()
            raw = wf.readframes(wf.getnframes())
    except (wave.Error, EOFError, OSError):
        return None
    if width != 2 or rate <= 0 or len(raw) < 2 * channels * 16:
        return None
    pcm = np.frombuffer(raw[: len(raw) // (2 * channels) * 2 * channels], dtype="<i2").reshape(-1, channels)
    x = resample(mixdown(pcm), rate, sample_rate)
    return x if np.isfinite(x).all() and np.abs(x).max() > 0 else None


@lru_cache(maxsize=8)
def _real(root: Path, speakers: tuple[str, ...], images: tuple[int, int], sample_rate: int) -> DigitSources:
    pixels = _read_idx(root / MNIST_IMAGES, 2051, 3)
    labels = _read_idx(root / MNIST_LABELS, 2049, 1)
    start, stop = images
    if stop > min(len(pixels), len(labels)):
        raise DataError(f"image range {start}:{stop} exceeds the {min(len(pixels), len(labels))} MNIST images "
                        f"under {root}.")
    pix, lab = pixels[start:stop], labels[start:stop]
    by_digit = {d: np.ascontiguousarray(pix[lab == d]) for d in range(10)}

    rec_dir = root / FSDD_DIR
    if not rec_dir.is_dir():
        raise DataError(f"FSDD folder {rec_dir} is missing (expected {{digit}}_{{speaker}}_{{take}}.wav files).")
    sounds: dict[int, list[np.ndarray]] = {d: [] for d in range(10)}
    skipped = 0
    for spk in speakers:
        files = sorted(rec_dir.glob(f"[0-9]_{spk}_*.wav"))
        if not files:
            raise DataError(f"no FSDD recordings for speaker {spk!r} in {rec_dir}.")
        for f in files:
            x = _read_wav(f, sample_rate)
            if x is None:
                skipped += 1
            else:
                sounds[int(f.name[0])].append(x)
    empty = [d for d in range(10) if not len(by_digit[d]) or not sounds[d]]
    if empty:
        raise DataError(f"digit(s) {empty} have no usable image or recording for speakers {list(speakers)} and "
                        f"images {start}:{stop} under {root}.")
    if skipped:
        log.warning("skipped %d unreadable or empty FSDD recording(s) under %s.", skipped, rec_dir)
    return DigitSources("real", sample_rate, by_digit, sounds, speakers, images, skipped,
                        f"MNIST t10k images {start}:{stop} + FSDD speakers {','.join(speakers)} from {root}")


# ---------------------------------------------------------------- procedural

_FONTS = (cv2.FONT_HERSHEY_SIMPLEX, cv2.FONT_HERSHEY_DUPLEX, cv2.FONT_HERSHEY_COMPLEX, cv2.FONT_HERSHEY_TRIPLEX,
          cv2.FONT_HERSHEY_SCRIPT_SIMPLEX, cv2.FONT_HERSHEY_SCRIPT_COMPLEX, cv2.FONT_HERSHEY_PLAIN)
# Telephone keypad DTMF (row Hz, column Hz) per digit.
_DTMF = {1: (697, 1209), 2: (697, 1336), 3: (697, 1477), 4: (770, 1209), 5: (770, 1336), 6: (770, 1477),
         7: (852, 1209), 8: (852, 1336), 9: (852, 1477), 0: (941, 1336)}
_IMAGE_SEED, _SOUND_SEED = 0x4D4E, 0x4653


def procedural_digit(rng: np.random.Generator, digit: int) -> np.ndarray:
    """A 28x28 uint8 digit (white on black) in a random Hershey font, stroke and affine distortion."""
    canvas = np.zeros((64, 64), np.uint8)
    font = _FONTS[rng.integers(len(_FONTS))]
    thick = int(rng.integers(2, 6))
    scale = 52.0 / cv2.getTextSize(str(digit), font, 1.0, thick)[0][1]     # glyph ~70 % of the height, as MNIST
    (w, h), _ = cv2.getTextSize(str(digit), font, scale, thick)
    cv2.putText(canvas, str(digit), ((64 - w) // 2, (64 + h) // 2), font, scale, 255, thick, cv2.LINE_AA)
    angle = rng.uniform(-15, 15)
    m = cv2.getRotationMatrix2D((32, 32), angle, rng.uniform(0.8, 1.0))
    m[0, 1] += rng.uniform(-0.3, 0.3)          # shear
    m[:, 2] += rng.uniform(-3, 3, 2)
    warped = cv2.warpAffine(canvas, m, (64, 64), flags=cv2.INTER_LINEAR)
    return cv2.resize(warped, (28, 28), interpolation=cv2.INTER_AREA)


def procedural_sound(rng: np.random.Generator, digit: int, sample_rate: int, voice: float) -> np.ndarray:
    """A DTMF dual tone of `digit`: random length, envelope, level, detune and noise; `voice` in [0, 1)
    changes the tone balance and harmonic colour per speaker."""
    low, high = _DTMF[digit]
    n = int(rng.uniform(0.2, 0.6) * sample_rate)
    t = np.arange(n, dtype=np.float32) / sample_rate
    detune = 1.0 + rng.uniform(-0.015, 0.015)
    tone = (np.sin(2 * np.pi * low * detune * t) * (0.6 + 0.4 * voice)
            + np.sin(2 * np.pi * high * detune * t) * (1.0 - 0.4 * voice)
            + 0.25 * voice * np.sin(4 * np.pi * low * detune * t))
    ramp = max(1, int(rng.uniform(0.01, 0.06) * sample_rate))
    env = np.ones(n, np.float32)
    env[:ramp] = np.linspace(0, 1, ramp)
    env[-ramp:] = np.linspace(1, 0, ramp)
    x = tone * env * rng.uniform(0.2, 0.8) + rng.normal(0, 0.02, n)
    return x.astype(np.float32)


@lru_cache(maxsize=8)
def _procedural(speakers: tuple[str, ...], images: tuple[int, int], sample_rate: int) -> DigitSources:
    start, stop = images
    by_digit: dict[int, list[np.ndarray]] = {d: [] for d in range(10)}
    for i in range(start, stop):
        rng = np.random.default_rng([_IMAGE_SEED, i])
        d = i % 10
        by_digit[d].append(procedural_digit(rng, d))
    sounds: dict[int, list[np.ndarray]] = {d: [] for d in range(10)}
    for spk in speakers:
        spk_id = zlib.crc32(spk.encode())
        voice = (spk_id % 1000) / 1000.0
        for d in range(10):
            for take in range(PROCEDURAL_TAKES):
                sounds[d].append(procedural_sound(np.random.default_rng([_SOUND_SEED, spk_id, d, take]), d,
                                                  sample_rate, voice))
    if any(not v for v in by_digit.values()):
        raise DataError(f"image range {start}:{stop} is too short: the procedural source needs at least 10 images.")
    images_np = {d: np.stack(v) for d, v in by_digit.items()}
    return DigitSources("procedural", sample_rate, images_np, sounds, speakers, images, 0,
                        f"procedural digits {start}:{stop} + DTMF voices {','.join(speakers)}")
