"""Runtime settings (`assets/configs/runtime.yaml`): every key known, every value of the right type."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Mapping

from edge.errors import ConfigError
from edge.assets import ASSETS
from edge.preprocess.config import _from_mapping
from edge.yamlfile import read_yaml

DEFAULT_PATH = ASSETS / "configs" / "runtime.yaml"


@dataclass(frozen=True)
class CaptureConfig:
    frame_ring: int = 8              # captured frames kept (by reference) for the sampler, which takes the first
                                     # frame at or after each sampling instant
    audio_ring_s: float = 4.0        # seconds of audio kept (the model reads the last audio_window_s)
    mic_block_s: float = 0.02        # sounddevice callback block
    backoff_initial_s: float = 0.1   # first reconnect delay after a sensor fails
    backoff_max_s: float = 0.5       # the delay doubles up to this
    RANGES: ClassVar[dict] = {"frame_ring": (1, 1024), "audio_ring_s": (1.0, 600.0), "mic_block_s": (1e-3, 1.0),
                              "backoff_initial_s": (1e-3, 60.0), "backoff_max_s": (1e-3, 600.0)}


@dataclass(frozen=True)
class HealthConfig:
    stale_s: float = 0.35            # no new data for this long: missing
    frozen_s: float = 0.35           # identical frames for this long: missing
    frozen_diff: float = 0.01        # mean |frame - previous| (levels 0..255) below which frames are identical:
                                     # at 64x64 a still scene from a real sensor still differs by more
    dark_fraction: float = 0.95      # this share of dark pixels: a black frame (covered lens, camera off)
    bright_fraction: float = 0.95    # this share of saturated pixels: a blinded camera
    silent_rms: float = 1.0e-4       # audio below this RMS (about -80 dBFS) ...
    silent_s: float = 0.35           # ... for this long: a dead or muted microphone
    clipped_fraction: float = 0.05   # a block with this share of full-scale samples is clipped
    hold_s: float = 1.0              # clipped or NaN audio keeps A missing while it is inside the model's window
    min_tokens: dict = field(default_factory=lambda: {"V": 4, "F": 4, "A": 3})  # fresh tokens before a modality counts
    RANGES: ClassVar[dict] = {"stale_s": (0.01, 60.0), "frozen_s": (0.01, 60.0), "frozen_diff": (0.0, 255.0),
                              "dark_fraction": (0.0, 1.0), "bright_fraction": (0.0, 1.0), "silent_rms": (0.0, 1.0),
                              "silent_s": (0.01, 60.0), "clipped_fraction": (0.0, 1.0), "hold_s": (0.0, 60.0)}


@dataclass(frozen=True)
class SheddingConfig:
    budget_ms: float = 40.0          # per-prediction processing budget
    flow_scales: tuple = (1.0, 0.5, 0.25)  # flow resolution steps before flow is dropped
    shed_after: int = 3              # consecutive predictions over budget before shedding one more step
    recover_after: int = 24          # consecutive predictions under half the budget before restoring one step
    RANGES: ClassVar[dict] = {"budget_ms": (0.1, 1e5), "shed_after": (1, 10**6), "recover_after": (1, 10**6)}


@dataclass(frozen=True)
class FlowRuntimeConfig:
    size: int = 0                    # side of the square flow is computed on at shedding level 1.0; 0: the model's
                                     # frame size (as trained); larger: flow at camera resolution, area-averaged
                                     # down to the model's size (costs more; shedding's flow_scales scale this size)
    backend: str = ""                # "": the bundle's backend; dis | torch | farneback replace it (with that
                                     # backend's defaults), which the model was not trained with
    RANGES: ClassVar[dict] = {"size": (0, 4096)}


FLOW_BACKENDS = ("", "dis", "torch", "farneback")


@dataclass(frozen=True)
class EventsConfig:
    ema_alpha: float = 0.3           # weight of the newest prediction in the smoothed probabilities
    start_at: float = 0.5            # an action starts when its smoothed confidence reaches this ...
    end_below: float = 0.3           # ... and ends when it falls below this (hysteresis)
    min_duration_s: float = 0.5      # shorter segments are not reported
    RANGES: ClassVar[dict] = {"ema_alpha": (1e-3, 1.0), "start_at": (0.0, 1.0), "end_below": (0.0, 1.0),
                              "min_duration_s": (0.0, 3600.0)}


@dataclass(frozen=True)
class RuntimeConfig:
    capture: CaptureConfig = field(default_factory=CaptureConfig)
    health: HealthConfig = field(default_factory=HealthConfig)
    shedding: SheddingConfig = field(default_factory=SheddingConfig)
    flow: FlowRuntimeConfig = field(default_factory=FlowRuntimeConfig)
    events: EventsConfig = field(default_factory=EventsConfig)
    status_interval_s: float = 0.5
    RANGES: ClassVar[dict] = {"status_interval_s": (0.05, 3600.0)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "runtime config") -> "RuntimeConfig":
        if not isinstance(data, Mapping):
            raise ConfigError(f"{where} must be a mapping, got {type(data).__name__}.")
        sections = {"capture": CaptureConfig, "health": HealthConfig, "shedding": SheddingConfig,
                    "flow": FlowRuntimeConfig, "events": EventsConfig}
        values = dict(data)
        for name, section in sections.items():
            if name in values:
                values[name] = _from_mapping(section, values[name], f"{where}: {name}")
        cfg = _from_mapping(cls, values, where)
        cfg.validate(where)
        return cfg

    def validate(self, where: str) -> None:
        tokens = self.health.min_tokens
        if set(tokens) != {"V", "F", "A"} or any(not isinstance(v, int) or v < 1 for v in tokens.values()):
            raise ConfigError(f"{where}: health.min_tokens must give a positive integer for each of V, F, A.")
        scales = self.shedding.flow_scales
        if not scales or any(not isinstance(s, (int, float)) or not 0 < s <= 1 for s in scales):
            raise ConfigError(f"{where}: shedding.flow_scales must be numbers in (0, 1].")
        if self.flow.size < 0 or self.flow.backend not in FLOW_BACKENDS:
            raise ConfigError(f"{where}: flow.size must be 0 or a positive number of pixels and flow.backend one "
                              f"of {list(FLOW_BACKENDS)}, got {self.flow.size} and {self.flow.backend!r}.")
        if not 0 < self.events.ema_alpha <= 1 or self.events.end_below > self.events.start_at:
            raise ConfigError(f"{where}: events need 0 < ema_alpha <= 1 and end_below <= start_at.")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def load_runtime_config(path: str | Path | None = None) -> RuntimeConfig:
    """The runtime settings from `path` (default: the shipped runtime.yaml); one ConfigError sentence if bad."""
    path = Path(path) if path is not None else DEFAULT_PATH
    return RuntimeConfig.from_dict(read_yaml(path, "runtime config"), str(path))
