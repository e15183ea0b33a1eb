"""Frame sampling, colour conversion, resize and normalisation."""
from __future__ import annotations

import cv2
import numpy as np

from edge.errors import PreprocessError
from edge.preprocess.config import PreprocessConfig


def uniform_indices(n_frames: int, n_samples: int) -> np.ndarray:
    """Indices of `n_samples` frames spread uniformly over a clip of `n_frames` (centre of each segment).

    Training samples a clip this way; with a clip of video_tokens / sample_fps seconds it picks
    the same instants as the live sampler taking the freshest frame every 1 / sample_fps seconds.
    """
    if n_frames <= 0:
        raise PreprocessError(f"cannot sample frames from a clip with {n_frames} frames.")
    if n_samples <= 0:
        raise PreprocessError(f"number of frames to sample must be positive, got {n_samples}.")
    # Segment ends: the sample for segment k is the last frame of that segment, i.e. the freshest
    # frame available at time (k + 1) / sample_fps, which is what the live sampler sees.
    ends = np.floor((np.arange(1, n_samples + 1) * n_frames) / n_samples).astype(np.int64) - 1
    return np.clip(ends, 0, n_frames - 1)


def to_rgb_uint8(frame: np.ndarray, *, bgr: bool = True) -> np.ndarray:
    """Any camera frame (gray, BGR, BGRA, 8- or 16-bit) as an HxWx3 uint8 RGB image."""
    if not isinstance(frame, np.ndarray):
        raise PreprocessError(f"a frame must be a numpy array, got {type(frame).__name__}.")
    if frame.ndim not in (2, 3) or frame.shape[0] == 0 or frame.shape[1] == 0:
        raise PreprocessError(f"a frame must be a non-empty HxW or HxWxC image, got shape {frame.shape}.")
    if frame.dtype == np.uint16:
        frame = (frame >> 8).astype(np.uint8)
    elif frame.dtype in (np.float32, np.float64):
        if not np.isfinite(frame).all():
            raise PreprocessError("a frame contains NaN or Inf values.")
        frame = np.clip(frame * 255.0, 0, 255).astype(np.uint8)
    elif frame.dtype != np.uint8:
        raise PreprocessError(f"unsupported frame dtype {frame.dtype}; expected uint8, uint16 or float.")
    if frame.ndim == 2 or frame.shape[2] == 1:
        return cv2.cvtColor(frame.reshape(frame.shape[:2]), cv2.COLOR_GRAY2RGB)
    channels = frame.shape[2]
    if channels == 3:
        return cv2.cvtColor(frame, cv2.COLOR_BGR2RGB) if bgr else np.ascontiguousarray(frame)
    if channels == 4:
        return cv2.cvtColor(frame, cv2.COLOR_BGRA2RGB if bgr else cv2.COLOR_RGBA2RGB)
    raise PreprocessError(f"a frame must have 1, 3 or 4 channels, got {channels}.")


def prepare_frame(frame_rgb: np.ndarray, cfg: PreprocessConfig) -> np.ndarray:
    """Resize an RGB uint8 frame to the model's square input (HxWx3 uint8)."""
    if frame_rgb.ndim != 3 or frame_rgb.shape[2] != 3 or frame_rgb.shape[0] == 0 or frame_rgb.shape[1] == 0:
        raise PreprocessError(f"prepare_frame needs a non-empty HxWx3 RGB frame, got shape {frame_rgb.shape}.")
    size = cfg.frame_size
    if frame_rgb.shape[:2] == (size, size):
        return frame_rgb
    return cv2.resize(frame_rgb, (size, size), interpolation=cv2.INTER_AREA)


def normalize_frame(frame_rgb: np.ndarray, cfg: PreprocessConfig) -> np.ndarray:
    """Model-size RGB uint8 frame -> float32 CHW tensor, normalised with the config's mean/std."""
    x = frame_rgb.astype(np.float32) * (1.0 / 255.0)
    x = (x - np.asarray(cfg.mean, np.float32)) / np.asarray(cfg.std, np.float32)
    return np.ascontiguousarray(x.transpose(2, 0, 1))


def video_input(frame_rgb: np.ndarray, prev_rgb: np.ndarray | None, cfg: PreprocessConfig) -> np.ndarray:
    """Video encoder input of one sampled model-size RGB frame: float32 [video_channels, S, S].

    "frame": the normalised frame. "frame+diff": the normalised frame and its normalised difference to
    `prev_rgb`, the previous sampled frame (None after a reset: no motion seen yet, the difference is 0).
    """
    x = normalize_frame(frame_rgb, cfg)
    if cfg.video_input == "frame":
        return x
    if prev_rgb is None:
        return np.concatenate([x, np.zeros_like(x)])
    diff = (frame_rgb.astype(np.float32) - prev_rgb.astype(np.float32)) * (1.0 / 255.0)
    diff = diff / np.asarray(cfg.std, np.float32)
    return np.concatenate([x, diff.transpose(2, 0, 1)])


def to_gray(frame_rgb: np.ndarray) -> np.ndarray:
    """RGB uint8 -> single-channel uint8, the input optical flow works on."""
    return cv2.cvtColor(frame_rgb, cv2.COLOR_RGB2GRAY)
