"""Cheap dense optical flow in PyTorch: coarse-to-fine Lucas-Kanade with warping, in a few dozen tensor ops.

Runs on CUDA when a GPU is present and on CPU otherwise. Per pyramid level (coarsest first) it warps the
second frame by the current flow and takes a few Gauss-Newton steps of windowed Lucas-Kanade (structure tensor
from a running-sum box filter, Tikhonov-damped so flat areas keep the flow propagated from coarser levels),
then smooths the flow. torch is imported here only: `edge` needs it only when this backend is chosen.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from edge.errors import ConfigError
from edge.preprocess.frames import check_gray_pair


class TorchFlow:
    """Pyramidal Lucas-Kanade flow (H, W, 2) float32 in pixels, same interface as DISFlow.

    levels: pyramid levels (0 = as many as keep the coarsest side >= min_size); iterations: LK steps per level;
    window: side of the LK box window; damping: Tikhonov weight (on gradients of [0, 1] images);
    device: "auto" (CUDA when available), "cpu" or "cuda"; cpu_threads: torch threads on CPU during a call
    (restored after it; 0 = leave torch's setting). One thread is the default because on a busy 2-core CPU two
    OpenMP threads made a 64x64 pair take up to ~260 ms instead of ~1.3 ms.
    """

    name = "torch"

    def __init__(self, levels: int = 0, iterations: int = 3, window: int = 11, damping: float = 3e-5,
                 min_size: int = 16, device: str = "auto", cpu_threads: int = 1, **unknown) -> None:
        if unknown:
            raise ConfigError(f"unknown torch flow parameter(s) {sorted(unknown)}.")
        if device not in ("auto", "cpu", "cuda"):
            raise ConfigError(f"unknown torch flow device {device!r}; use 'auto', 'cpu' or 'cuda'.")
        if device == "cuda" and not torch.cuda.is_available():
            raise ConfigError("torch flow was asked to run on CUDA, but no CUDA device is available.")
        if (levels < 0 or iterations < 1 or window < 1 or window % 2 == 0 or damping < 0 or min_size < 4
                or cpu_threads < 0):
            raise ConfigError("torch flow needs levels >= 0, iterations >= 1, an odd window >= 1, "
                              "damping >= 0, min_size >= 4 and cpu_threads >= 0.")
        self.device = torch.device("cuda" if device == "cuda" or (device == "auto" and torch.cuda.is_available())
                                   else "cpu")
        self.levels, self.iterations, self.window = levels, iterations, window
        self.damping, self.min_size = damping, min_size
        self.cpu_threads = cpu_threads if self.device.type == "cpu" else 0

    def _pyramid(self, img: torch.Tensor) -> list[torch.Tensor]:
        pyr = [img]
        while (self.levels == 0 or len(pyr) < self.levels) and min(pyr[-1].shape[-2:]) >= 2 * self.min_size:
            h, w = pyr[-1].shape[-2:]
            pyr.append(F.interpolate(pyr[-1], size=((h + 1) // 2, (w + 1) // 2), mode="bilinear",
                                     antialias=True, align_corners=False))
        return pyr[::-1]

    def _warp(self, img: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
        h, w = img.shape[-2:]
        ys, xs = torch.meshgrid(torch.arange(h, device=img.device, dtype=img.dtype),
                                torch.arange(w, device=img.device, dtype=img.dtype), indexing="ij")
        gx = (xs + flow[0, 0]) * (2.0 / max(w - 1, 1)) - 1.0
        gy = (ys + flow[0, 1]) * (2.0 / max(h - 1, 1)) - 1.0
        return F.grid_sample(img, torch.stack([gx, gy], dim=-1)[None], mode="bilinear",
                             padding_mode="border", align_corners=True)

    def _box(self, x: torch.Tensor) -> torch.Tensor:
        """Mean over a window x window box (replicated borders) from running sums: O(1) per pixel."""
        r, k = self.window // 2, self.window
        for dim in (-1, -2):
            pad = (r + 1, r, 0, 0) if dim == -1 else (0, 0, r + 1, r)
            c = torch.cumsum(F.pad(x, pad, mode="replicate"), dim)
            n = c.shape[dim]
            x = (c.narrow(dim, k, n - k) - c.narrow(dim, 0, n - k)) * (1.0 / k)
        return x

    def _level(self, i0: torch.Tensor, i1: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
        for _ in range(self.iterations):
            i1w = self._warp(i1, flow)
            p = F.pad(0.5 * (i0 + i1w), (1, 1, 1, 1), mode="replicate")
            dx = p[..., 2:] - p[..., :-2]                          # Sobel / 8, from slices (cheaper than conv2d)
            dy = p[..., 2:, :] - p[..., :-2, :]
            ix = 0.125 * (dx[..., :-2, :] + 2.0 * dx[..., 1:-1, :] + dx[..., 2:, :])
            iy = 0.125 * (dy[..., :-2] + 2.0 * dy[..., 1:-1] + dy[..., 2:])
            it = i1w - i0
            a, b, c, bx, by = self._box(torch.cat([ix * ix, ix * iy, iy * iy, ix * it, iy * it], 1)).unbind(1)
            a, c = a + self.damping, c + self.damping
            det = a * c - b * b
            du = (b * by - c * bx) / det
            dv = (b * bx - a * by) / det
            flow = flow + torch.stack([du, dv], 1)
        return self._box(flow)

    def __call__(self, prev_gray: np.ndarray, next_gray: np.ndarray) -> np.ndarray:
        check_gray_pair(prev_gray, next_gray)
        if not self.cpu_threads:
            return self._flow(prev_gray, next_gray)
        threads = torch.get_num_threads()
        torch.set_num_threads(self.cpu_threads)
        try:
            return self._flow(prev_gray, next_gray)
        finally:
            torch.set_num_threads(threads)

    @torch.inference_mode()
    def _flow(self, prev_gray: np.ndarray, next_gray: np.ndarray) -> np.ndarray:
        pair = torch.from_numpy(np.stack([prev_gray, next_gray]))[:, None].to(self.device, torch.float32) / 255.0
        pyr = self._pyramid(pair)
        flow = torch.zeros(1, 2, *pyr[0].shape[-2:], device=self.device)
        for level in pyr:
            h, w = level.shape[-2:]
            if flow.shape[-2:] != (h, w):
                sy, sx = h / flow.shape[-2], w / flow.shape[-1]
                flow = F.interpolate(flow, size=(h, w), mode="bilinear", align_corners=False)
                flow = flow * torch.tensor([sx, sy], device=self.device)[None, :, None, None]
            flow = self._level(level[:1], level[1:], flow)
        return flow[0].permute(1, 2, 0).contiguous().cpu().numpy()
