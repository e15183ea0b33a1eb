"""Middlebury optical-flow pairs with ground truth: the .flo reader and resizing ground truth with its mask."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from edge.errors import EdgeError

FLO_MAGIC = 202021.25
UNKNOWN_ABOVE = 1e9  # Middlebury marks pixels without ground truth with values > 1e9


class FlowDataError(EdgeError):
    """A Middlebury folder or .flo file that cannot be read."""


def read_flo(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Read a Middlebury .flo file -> (flow (H, W, 2) float32 with unknowns set to 0, valid mask (H, W) bool)."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise FlowDataError(f"cannot read flow file {path}: {exc.strerror}.") from None
    if len(raw) < 12 or np.frombuffer(raw, "<f4", 1)[0] != FLO_MAGIC:
        raise FlowDataError(f"{path} is not a Middlebury .flo file (bad magic number).")
    w, h = (int(v) for v in np.frombuffer(raw, "<i4", 2, offset=4))
    if w <= 0 or h <= 0 or len(raw) != 12 + 8 * w * h:
        raise FlowDataError(f"{path} is truncated or has a bad header ({w}x{h}, {len(raw)} bytes).")
    flow = np.frombuffer(raw, "<f4", 2 * w * h, offset=12).reshape(h, w, 2).astype(np.float32)
    valid = (np.abs(flow) <= UNKNOWN_ABOVE).all(axis=2) & np.isfinite(flow).all(axis=2)
    flow[~valid] = 0.0
    return flow, valid


def resize_flow(flow: np.ndarray, valid: np.ndarray, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """Ground truth at another resolution: area-averaged over known pixels, vectors scaled per axis.

    A target pixel is valid only when every source pixel under it has ground truth.
    """
    h, w = valid.shape
    mask = valid.astype(np.float32)
    area = cv2.resize(mask, (width, height), interpolation=cv2.INTER_AREA)
    summed = cv2.resize(flow * mask[..., None], (width, height), interpolation=cv2.INTER_AREA)
    out = summed / np.maximum(area, 1e-6)[..., None]
    out *= np.array([width / w, height / h], np.float32)
    return out.astype(np.float32), area > 0.999


def epe(flow: np.ndarray, gt: np.ndarray, valid: np.ndarray) -> float:
    """Average end-point error (px) over the valid ground-truth pixels."""
    return float(np.linalg.norm(flow - gt, axis=2)[valid].mean())


@dataclass
class FlowPair:
    name: str
    frame0_bgr: np.ndarray
    frame1_bgr: np.ndarray
    flow: np.ndarray
    valid: np.ndarray


def load_pairs(data_root: str | Path) -> list[FlowPair]:
    """Every <data_root>/flow/<name>/ holding frame10.png, frame11.png and flow10.flo, sorted by name."""
    folder = Path(data_root) / "flow"
    if not folder.is_dir():
        raise FlowDataError(f"no Middlebury flow folder at {folder}; pass --data-root pointing at the shared data.")
    pairs = []
    for sub in sorted(p for p in folder.iterdir() if p.is_dir()):
        paths = [sub / "frame10.png", sub / "frame11.png", sub / "flow10.flo"]
        if not all(p.is_file() for p in paths):
            continue
        f0, f1 = (cv2.imread(str(p), cv2.IMREAD_COLOR) for p in paths[:2])
        if f0 is None or f1 is None:
            raise FlowDataError(f"cannot decode the frames in {sub}.")
        flow, valid = read_flo(paths[2])
        if f0.shape[:2] != flow.shape[:2] or f1.shape != f0.shape:
            raise FlowDataError(f"frames and ground truth in {sub} have different sizes.")
        pairs.append(FlowPair(sub.name, f0, f1, flow, valid))
    if not pairs:
        raise FlowDataError(f"{folder} holds no folder with frame10.png, frame11.png and flow10.flo.")
    return pairs
