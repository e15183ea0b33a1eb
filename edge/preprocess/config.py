"""Preprocessing parameters: stored in every bundle manifest, read back by the runtime."""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, ClassVar, Mapping

from edge.errors import ConfigError


def _check_number(value: Any, lo: float, hi: float, where: str) -> None:
    """A finite number in [lo, hi], or one ConfigError sentence (NaN, inf and out-of-range values can hang or blow
    up the live loop: a sample rate of inf ticks forever)."""
    if not (isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
            and lo <= value <= hi):
        raise ConfigError(f"{where} must be a finite number from {lo:g} to {hi:g}, got {value!r}.")


def _from_mapping(cls, data: Mapping[str, Any], where: str):
    """Build dataclass `cls` from `data`, rejecting unknown keys, wrong types, and numbers outside the class's
    `RANGES` ({field: (lo, hi)}; every float must be finite)."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where} must be a mapping, got {type(data).__name__}.")
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise ConfigError(f"{where} has unknown key(s) {unknown}; known keys are {sorted(known)}.")
    values = {}
    for name, value in data.items():
        default = getattr(cls(), name)
        if isinstance(default, bool):
            ok = isinstance(value, bool)
        elif isinstance(default, float):
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
            value = float(value) if ok else value
        elif isinstance(default, int):
            ok = isinstance(value, int) and not isinstance(value, bool)
        elif isinstance(default, str):
            ok = isinstance(value, str)
        elif isinstance(default, (tuple, list)):
            ok = isinstance(value, (tuple, list))
            value = tuple(value) if ok else value
        elif isinstance(default, dict):
            ok = isinstance(value, Mapping)
            value = dict(value) if ok else value
        else:
            ok = True
        if not ok:
            raise ConfigError(
                f"{where}.{name} must be {type(default).__name__}, got {type(value).__name__} ({value!r})."
            )
        if name in getattr(cls, "RANGES", {}):
            _check_number(value, *cls.RANGES[name], f"{where}.{name}")
        elif isinstance(default, float) and not isinstance(default, bool) and not math.isfinite(value):
            raise ConfigError(f"{where}.{name} must be a finite number, got {value!r}.")
        values[name] = value
    return cls(**values)


# What the video encoder sees per sampled frame, and its channel count. "frame+diff" adds the difference
# to the previous sampled frame (the frame flow pairs it with), so V alone sees how things move at the
# cost of 3 more input channels: a per-frame encoder that stays streamable (state = one small frame).
VIDEO_INPUTS = {"frame": 3, "frame+diff": 6}


@dataclass(frozen=True)
class FlowConfig:
    """Which optical-flow backend a model was trained with, and its parameters."""

    backend: str = "dis"          # "dis" (OpenCV DIS, CPU default), "torch" (CUDA when present), "farneback"
    preset: str = "ultrafast"     # DIS preset: ultrafast | fast | medium
    scale: float = 1.0            # flow is computed at scale * frame_size (load shedding lowers it at run time)
    clip_px: float = 8.0          # model input = clip(flow, -clip_px, clip_px) / clip_px, in model-input pixels
    params: dict = field(default_factory=dict)  # backend-specific extras
    RANGES: ClassVar[dict] = {"scale": (1e-3, 1.0), "clip_px": (1e-3, 1e3)}

    def __post_init__(self) -> None:
        if self.clip_px <= 0 or not 0 < self.scale <= 1:
            raise ConfigError(f"preprocess.flow needs clip_px > 0 and 0 < scale <= 1, "
                              f"got clip_px={self.clip_px}, scale={self.scale}.")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "FlowConfig":
        return _from_mapping(cls, data, "preprocess.flow")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class PreprocessConfig:
    """Every parameter that decides what a model sees (ARCHITECTURE.md: the bundle records all of them)."""

    frame_size: int = 64                 # square model input, pixels
    sample_fps: float = 4.0              # sampled frames per second (live: freshest frame at this rate)
    video_tokens: int = 8                # sampled frames per prediction window (one token each)
    flow_tokens: int = 8                 # flow fields per window: each sampled frame vs the previous sampled one
    mean: tuple = (0.485, 0.456, 0.406)  # RGB normalisation
    std: tuple = (0.229, 0.224, 0.225)
    audio_sample_rate: int = 16000       # model rate; any input rate is resampled to it
    audio_window_s: float = 1.0          # one audio token = one log-mel of this window
    audio_hop_s: float = 0.25            # a new audio token every hop
    audio_tokens: int = 5                # audio windows per prediction window
    n_fft: int = 400
    hop_length: int = 160
    n_mels: int = 64
    fmin: float = 20.0
    fmax: float = 8000.0
    flow: FlowConfig = field(default_factory=FlowConfig)
    video_input: str = "frame+diff"      # "frame+diff": RGB and its difference to the previous sampled frame
    RANGES: ClassVar[dict] = {"frame_size": (8, 1024), "sample_fps": (0.1, 60), "video_tokens": (1, 256),
                              "flow_tokens": (1, 256), "audio_sample_rate": (1000, 192000), "audio_window_s": (0.01, 10),
                              "audio_hop_s": (0.01, 10), "audio_tokens": (1, 256), "n_fft": (16, 1 << 16),
                              "hop_length": (1, 1 << 16), "n_mels": (1, 512), "fmin": (0, 1e5), "fmax": (1, 1e5)}

    def __post_init__(self) -> None:
        for name, values in (("mean", self.mean), ("std", self.std)):
            if len(values) != 3:
                raise ConfigError(f"preprocess.{name} must hold 3 numbers (R, G, B), got {list(values)!r}.")
            for v in values:
                _check_number(v, 1e-6 if name == "std" else -10.0, 10.0, f"preprocess.{name}")
        if self.video_input not in VIDEO_INPUTS:
            raise ConfigError(f"preprocess.video_input must be one of {list(VIDEO_INPUTS)}, got {self.video_input!r}.")
        if self.frame_size <= 0 or self.sample_fps <= 0 or self.audio_sample_rate <= 0:
            raise ConfigError("preprocess frame_size, sample_fps and audio_sample_rate must be positive.")
        if min(self.video_tokens, self.flow_tokens, self.audio_tokens) <= 0:
            raise ConfigError("preprocess token counts must be positive.")
        if self.audio_hop_s <= 0 or self.audio_window_s <= 0:
            raise ConfigError("preprocess audio_window_s and audio_hop_s must be positive.")
        if min(self.n_fft, self.hop_length, self.n_mels) <= 0 or self.n_fft > self.audio_window_samples:
            raise ConfigError("preprocess n_fft, hop_length and n_mels must be positive, "
                              "with n_fft no longer than the audio window.")

    @property
    def video_channels(self) -> int:
        """Channels of one video encoder input (3 RGB, plus 3 of motion with frame+diff)."""
        return VIDEO_INPUTS[self.video_input]

    @property
    def window_s(self) -> float:
        """Seconds of stream one prediction looks at (the video token span)."""
        return self.video_tokens / self.sample_fps

    @property
    def audio_window_samples(self) -> int:
        return int(round(self.audio_window_s * self.audio_sample_rate))

    @property
    def audio_hop_samples(self) -> int:
        return int(round(self.audio_hop_s * self.audio_sample_rate))

    @property
    def logmel_frames(self) -> int:
        """Time frames of one log-mel window (centre-free STFT: 1 + (N - n_fft) // hop)."""
        return 1 + (self.audio_window_samples - self.n_fft) // self.hop_length

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "PreprocessConfig":
        data = dict(data) if isinstance(data, Mapping) else data
        if isinstance(data, dict) and "flow" in data:
            data["flow"] = FlowConfig.from_dict(data["flow"])
        if isinstance(data, dict):      # manifests written before the field existed fed RGB alone
            data.setdefault("video_input", "frame")
        cfg = _from_mapping(cls, data, "preprocess")
        return cfg

    def to_dict(self) -> dict:
        out = dataclasses.asdict(self)
        out["mean"] = list(self.mean)
        out["std"] = list(self.std)
        return out
