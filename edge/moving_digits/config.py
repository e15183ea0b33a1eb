"""Difficulty of MovingDigits-AV (`NuisanceLevels`) and the YAML file that sets it and the splits."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from edge.assets import ASSETS
from edge.errors import ConfigError
from edge.moving_digits.splits import DEFAULT_SPLITS, Split, check_disjoint
from edge.preprocess.config import _from_mapping
from edge.yamlfile import read_yaml

DEFAULT_CONFIG = ASSETS / "configs" / "moving_digits.yaml"


@dataclass(frozen=True)
class NuisanceLevels:
    """Every knob of the generator's difficulty. Pixel sizes are at the 128 px render size; (lo, hi)
    pairs are ranges drawn uniformly per clip; probabilities are per clip. 0 turns a nuisance off."""

    card_scale: tuple = (0.30, 0.42)       # card side / view side
    motion_amplitude: tuple = (0.7, 1.0)   # scales travel (push/lift/lower), turn (rotate) and shake size
    tremor_px: float = 1.0                 # hand tremor on every verb (hold is not perfectly still)
    ego_drift_px: float = 10.0             # head-mounted camera: slow wander amplitude
    ego_jitter_px: float = 1.0             # head-mounted camera: fast jitter amplitude
    ego_roll_deg: float = 2.0              # head-mounted camera: roll amplitude
    blur_prob: float = 0.3                 # clips with motion blur ...
    blur_exposure_s: float = 0.06          # ... of an exposure up to this long
    noise_std: float = 8.0                 # sensor noise std, up to this many grey levels
    brightness: tuple = (0.6, 1.3)         # gain range the scene's brightness wanders in
    occluder_prob: float = 0.3             # a hand-like blob over part of the card ...
    occluder_size: tuple = (0.5, 0.9)      # ... this big relative to the card side
    freeze_prob: float = 0.15              # a frozen / dropped-frame run ...
    freeze_max_frames: int = 4             # ... of up to this many frames
    speech_rate: tuple = (0.85, 1.15)      # speech played faster/slower (tempo and pitch): more voices
    snr_db: tuple = (-5.0, 20.0)           # speech over background noise
    noise_rms: tuple = (0.003, 0.02)       # background noise level

    def __post_init__(self) -> None:
        for name in ("card_scale", "motion_amplitude", "brightness", "occluder_size", "speech_rate", "snr_db",
                     "noise_rms"):
            pair = getattr(self, name)
            if len(pair) != 2 or not all(isinstance(v, (int, float)) for v in pair) or pair[0] > pair[1]:
                raise ConfigError(f"moving_digits.levels.{name} must be a [low, high] pair with low <= high, "
                                  f"got {list(pair)}.")
        for name in ("blur_prob", "occluder_prob", "freeze_prob"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ConfigError(f"moving_digits.levels.{name} is a probability in [0, 1], got {getattr(self, name)}.")
        for name in ("tremor_px", "ego_drift_px", "ego_jitter_px", "ego_roll_deg", "blur_exposure_s", "noise_std",
                     "freeze_max_frames"):
            if getattr(self, name) < 0:
                raise ConfigError(f"moving_digits.levels.{name} must be >= 0, got {getattr(self, name)}.")
        if not (0.5 <= self.speech_rate[0] and self.speech_rate[1] <= 2.0):
            raise ConfigError(f"moving_digits.levels.speech_rate must lie in [0.5, 2.0], got {list(self.speech_rate)}.")
        if not (0.05 <= self.card_scale[0] and self.card_scale[1] <= 0.8):
            raise ConfigError(f"moving_digits.levels.card_scale must lie in [0.05, 0.8], got {list(self.card_scale)}.")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "NuisanceLevels":
        return _from_mapping(cls, data, "moving_digits.levels")

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}


@dataclass(frozen=True)
class MovingDigitsConfig:
    levels: NuisanceLevels
    splits: dict[str, Split]


def load_config(path: Path | None = None) -> MovingDigitsConfig:
    """Read levels and splits from YAML (default: assets/configs/moving_digits.yaml); unknown keys are errors."""
    path = Path(path) if path is not None else DEFAULT_CONFIG
    data = read_yaml(path, "the MovingDigits config")
    if not isinstance(data, Mapping):
        raise ConfigError(f"the MovingDigits config {path} must be a mapping with 'levels' and 'splits'.")
    unknown = sorted(set(data) - {"levels", "splits"})
    if unknown:
        raise ConfigError(f"the MovingDigits config {path} has unknown key(s) {unknown}; known: levels, splits.")
    levels = NuisanceLevels.from_dict(data.get("levels") or {})
    splits = dict(DEFAULT_SPLITS)
    for name, spec in (data.get("splits") or {}).items():
        if not isinstance(spec, Mapping) or set(spec) != {"speakers", "images"}:
            raise ConfigError(f"split {name!r} in {path} needs exactly the keys 'speakers' and 'images'.")
        if not isinstance(spec["images"], (list, tuple)) or len(spec["images"]) != 2:
            raise ConfigError(f"split {name!r} in {path}: images must be [start, stop], got {spec['images']!r}.")
        splits[name] = Split(name, tuple(spec["speakers"]), tuple(spec["images"]))
    check_disjoint(splits.values())
    return MovingDigitsConfig(levels, splits)


def session_levels(bundle) -> tuple[NuisanceLevels, str]:
    """The nuisance levels a bundle's (edge.bundle.Bundle: only its manifest is read) clips were rendered with
    (manifest extra.data.levels over the moving_digits.yaml defaults), else moving_digits.yaml's; and where they
    came from, in words."""
    base = load_config().levels
    extra = bundle.manifest.get("extra")
    data = extra.get("data") if isinstance(extra, dict) else None
    recorded = data.get("levels") if isinstance(data, dict) else None
    if not isinstance(recorded, dict):
        return base, "moving_digits.yaml levels (the bundle records none)"
    return NuisanceLevels.from_dict({**base.to_dict(), **recorded}), "the bundle's training levels"
