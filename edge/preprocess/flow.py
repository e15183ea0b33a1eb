"""Optical flow behind one interface, and its conversion to model input.

Backends: "dis" (OpenCV DIS, the CPU default), "farneback" (OpenCV, the quality/cost reference)
and "torch" (edge.preprocess.flow_torch, runs on CUDA when present; torch is imported lazily).
A bundle's manifest names the backend and parameters it was trained with; the runtime uses the same.
"""
from __future__ import annotations

from typing import Protocol

import cv2
import numpy as np

from edge.errors import ConfigError, PreprocessError
from edge.preprocess.config import FlowConfig, PreprocessConfig
from edge.preprocess.frames import check_gray_pair


class FlowBackend(Protocol):
    name: str

    def __call__(self, prev_gray: np.ndarray, next_gray: np.ndarray) -> np.ndarray:
        """Dense flow (H, W, 2) float32 in pixels from prev to next (both HxW uint8)."""


class DISFlow:
    """OpenCV Dense Inverse Search flow: ~0.4 ms per 224x224 pair with the ultrafast preset."""

    name = "dis"
    _PRESETS = {"ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST,
                "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
                "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM}

    def __init__(self, preset: str = "ultrafast", **params) -> None:
        if preset not in self._PRESETS:
            raise ConfigError(f"unknown DIS preset {preset!r}; use one of {sorted(self._PRESETS)}.")
        self._dis = cv2.DISOpticalFlow_create(self._PRESETS[preset])
        for key, value in params.items():
            setter = getattr(self._dis, f"set{key}", None)
            if setter is None:
                raise ConfigError(f"unknown DIS parameter {key!r}.")
            setter(value)
        self._finest_scale = self._dis.getFinestScale()

    def __call__(self, prev_gray: np.ndarray, next_gray: np.ndarray) -> np.ndarray:
        check_gray_pair(prev_gray, next_gray)
        # OpenCV lowers FinestScale for good when a frame is small (64x64 -> 0); restore it so the
        # flow of a pair never depends on the sizes this object saw before.
        self._dis.setFinestScale(self._finest_scale)
        return self._dis.calc(prev_gray, next_gray, None)


class FarnebackFlow:
    """OpenCV Farneback flow with its common defaults: the accuracy/cost reference."""

    name = "farneback"

    def __init__(self, preset: str = "", **params) -> None:
        self._params = dict(pyr_scale=0.5, levels=3, winsize=15, iterations=3, poly_n=5,
                            poly_sigma=1.2, flags=0)
        unknown = set(params) - set(self._params)
        if unknown:
            raise ConfigError(f"unknown Farneback parameter(s) {sorted(unknown)}.")
        self._params.update(params)

    def __call__(self, prev_gray: np.ndarray, next_gray: np.ndarray) -> np.ndarray:
        check_gray_pair(prev_gray, next_gray)
        return cv2.calcOpticalFlowFarneback(prev_gray, next_gray, None, **self._params)


def make_flow_backend(cfg: FlowConfig) -> FlowBackend:
    """The backend a FlowConfig names; "torch" imports torch only now."""
    if cfg.backend == "dis":
        return DISFlow(cfg.preset, **cfg.params)
    if cfg.backend == "farneback":
        return FarnebackFlow(**cfg.params)
    if cfg.backend == "torch":
        from edge.preprocess.flow_torch import TorchFlow  # lazy: torch is optional for edge

        return TorchFlow(**cfg.params)
    raise ConfigError(f"unknown flow backend {cfg.backend!r}; use 'dis', 'torch' or 'farneback'.")


def compute_flow(backend: FlowBackend, prev_gray: np.ndarray, next_gray: np.ndarray,
                 cfg: PreprocessConfig, scale: float | None = None) -> np.ndarray:
    """Flow between two model-size gray frames, optionally computed at a lower resolution.

    `scale` < 1 (load shedding) computes flow on downscaled frames and upsamples the result back,
    in model-input pixels, so the model input keeps its shape and units.
    """
    scale = cfg.flow.scale if scale is None else scale
    if scale >= 1.0:
        return backend(prev_gray, next_gray)
    size = cfg.frame_size
    small = max(8, int(round(size * scale)))
    a = cv2.resize(prev_gray, (small, small), interpolation=cv2.INTER_AREA)
    b = cv2.resize(next_gray, (small, small), interpolation=cv2.INTER_AREA)
    flow = backend(a, b)
    return cv2.resize(flow, (size, size), interpolation=cv2.INTER_LINEAR) * (size / small)


def flow_to_model_input(flow: np.ndarray, cfg: PreprocessConfig) -> np.ndarray:
    """(H, W, 2) flow in pixels -> (2, H, W) float32 clipped to +-clip_px and scaled to [-1, 1]."""
    if flow.ndim != 3 or flow.shape[2] != 2:
        raise PreprocessError(f"flow must have shape (H, W, 2), got {flow.shape}.")
    c = cfg.flow.clip_px
    out = np.clip(flow, -c, c) * (1.0 / c)
    return np.ascontiguousarray(out.transpose(2, 0, 1), dtype=np.float32)
