"""Frame sampling, colour conversion, resize and normalisation."""
from __future__ import annotations

import threading
from typing import TYPE_CHECKING

import cv2
import numpy as np

from edge.errors import PreprocessError
from edge.preprocess.config import PreprocessConfig

if TYPE_CHECKING:
    import av


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


def check_frame(frame: np.ndarray) -> None:
    """Refuse, in O(1), a frame no conversion can use (not an array, wrong rank, empty, channel count, dtype);
    a capture thread checks every frame this way and leaves the conversion to the frames that are sampled."""
    if not isinstance(frame, np.ndarray):
        raise PreprocessError(f"a frame must be a numpy array, got {type(frame).__name__}.")
    if frame.ndim not in (2, 3) or frame.shape[0] == 0 or frame.shape[1] == 0:
        raise PreprocessError(f"a frame must be a non-empty HxW or HxWxC image, got shape {frame.shape}.")
    if frame.ndim == 3 and frame.shape[2] not in (1, 3, 4):
        raise PreprocessError(f"a frame must have 1, 3 or 4 channels, got {frame.shape[2]}.")
    if frame.dtype not in (np.uint8, np.uint16, np.float32, np.float64):
        raise PreprocessError(f"unsupported frame dtype {frame.dtype}; expected uint8, uint16 or float.")


def _to_uint8(frame: np.ndarray) -> np.ndarray:
    if frame.dtype == np.uint16:
        return (frame >> 8).astype(np.uint8)
    if frame.dtype in (np.float32, np.float64):
        if not np.isfinite(frame).all():
            raise PreprocessError("a frame contains NaN or Inf values.")
        return np.clip(frame * 255.0, 0, 255).astype(np.uint8)
    return frame


def to_rgb_uint8(frame: np.ndarray, *, bgr: bool = True) -> np.ndarray:
    """Any camera frame (gray, BGR, BGRA, 8- or 16-bit) as an HxWx3 uint8 RGB image."""
    check_frame(frame)
    frame = _to_uint8(frame)
    if frame.ndim == 2 or frame.shape[2] == 1:
        return cv2.cvtColor(frame.reshape(frame.shape[:2]), cv2.COLOR_GRAY2RGB)
    if frame.shape[2] == 3:
        return cv2.cvtColor(frame, cv2.COLOR_BGR2RGB) if bgr else np.ascontiguousarray(frame)
    return cv2.cvtColor(frame, cv2.COLOR_BGRA2RGB if bgr else cv2.COLOR_RGBA2RGB)


def _resize(frame: np.ndarray, size: int) -> np.ndarray:
    """Area resize to size x size. A frame at least 8x that size (both sides) is first point-sampled (nearest
    neighbour) down by an integer factor k to 4-8x it, so the cost stays near that of a frame of a few hundred
    pixels whatever the camera's resolution (about 1 ms from 4K); smaller frames are area-resized as they are."""
    h, w = frame.shape[:2]
    if (h, w) == (size, size):
        return frame
    k = min(h, w) // (4 * size)
    if k >= 2:
        frame = cv2.resize(frame, (w // k, h // k), interpolation=cv2.INTER_NEAREST)
    return cv2.resize(frame, (size, size), interpolation=cv2.INTER_AREA)


def prepare_frame(frame_rgb: np.ndarray, cfg: PreprocessConfig) -> np.ndarray:
    """Resize an RGB uint8 frame to the model's square input (HxWx3 uint8)."""
    if frame_rgb.ndim != 3 or frame_rgb.shape[2] != 3 or frame_rgb.shape[0] == 0 or frame_rgb.shape[1] == 0:
        raise PreprocessError(f"prepare_frame needs a non-empty HxWx3 RGB frame, got shape {frame_rgb.shape}.")
    return _resize(frame_rgb, cfg.frame_size)


_converters = threading.local()


def _pyav_rgb(frame: av.VideoFrame) -> np.ndarray:
    """frame.to_ndarray(format="rgb24"), through a converter reused by this thread (a new one per frame costs 3x;
    one shared by threads is not safe: PyAV scales with the GIL released, and the web view converts too)."""
    reformatter = getattr(_converters, "reformatter", None)
    if reformatter is None:
        from av.video.reformatter import VideoReformatter

        reformatter = _converters.reformatter = VideoReformatter()
    return reformatter.reformat(frame, format="rgb24").to_ndarray()


class CameraFrame:
    """One captured picture as its source handed it over, given one type where it enters the recognizer: an
    array (gray, RGB or, with `bgr`, OpenCV's BGR order; BGRA; 8- or 16-bit; float) or a PyAV frame not yet
    converted to RGB. Nothing is converted until it is asked for, so only the frames the recognizer looks at pay
    (the sampled ones, and the newest at each tick for the health monitor), not every frame the camera sends.

    `prepared(*sizes)` gives the picture at each size x size, each prepared once per frame and kept (a few small
    arrays): sizes asked for together share one conversion of the full picture (a decoder's YUV to RGB), and
    each is resized first and colour-converted at the small size (channel order and gray replication commute
    with an area resize), so a sampled 4K frame costs about what a small one does. A frame no conversion can use
    is refused at construction, in O(1), with one PreprocessError sentence.
    """

    __slots__ = ("raw", "bgr", "_prepared")

    def __init__(self, raw: np.ndarray | av.VideoFrame, bgr: bool = False) -> None:
        if not hasattr(raw, "to_ndarray"):
            check_frame(raw)
        self.raw, self.bgr = raw, bgr
        self._prepared: dict[int, np.ndarray] = {}

    def _array(self) -> tuple[np.ndarray, bool]:
        """The full picture as an array, and whether it is in BGR order."""
        if isinstance(self.raw, np.ndarray):
            return self.raw, self.bgr
        return _pyav_rgb(self.raw), False

    def rgb(self) -> np.ndarray:
        """The full picture as HxWx3 uint8 RGB (the recorder, the overlay and the web view show whole frames)."""
        frame, bgr = self._array()
        return to_rgb_uint8(frame, bgr=bgr)

    def prepared(self, *sizes: int) -> list[np.ndarray]:
        """The picture as a size x size RGB uint8 image for each size, equal to resizing rgb() (area)."""
        todo = [s for s in dict.fromkeys(sizes) if s not in self._prepared]
        if todo:
            frame, bgr = self._array()
            frame = _to_uint8(frame)
            for size in todo:
                self._prepared[size] = to_rgb_uint8(_resize(frame, size), bgr=bgr)
        return [self._prepared[s] for s in sizes]


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


def check_gray_pair(prev_gray: np.ndarray, next_gray: np.ndarray) -> None:
    """Two frames optical flow can use: grayscale, non-empty, one size (else one PreprocessError sentence)."""
    if prev_gray.shape != next_gray.shape or prev_gray.ndim != 2 or prev_gray.size == 0:
        raise PreprocessError(
            f"optical flow needs two non-empty grayscale frames of one size, got {prev_gray.shape} and {next_gray.shape}."
        )
