"""SpecAugment-style masking of log-mel windows while training (Park et al., 2019): bands of mel bins and spans
of frames hidden, so a model cannot lean on one speaker's formants or one stretch of a word. With three training
speakers the teacher's audio noun fits them far better than an unseen voice (docs/RESULTS.md)."""
from __future__ import annotations

import numpy as np
import torch

MASKS = 2       # frequency bands per sample, time spans per window


def mask_spectrograms(x: torch.Tensor, index: torch.Tensor, seed: int, epoch: int, freq_width: int,
                      time_width: int) -> torch.Tensor:
    """A copy of log-mel windows `x` [B, T, 1, mels, frames] with, per sample, MASKS bands of up to `freq_width`
    mel bins (the same in all its windows: one voice) and, per window, MASKS spans of up to `time_width` frames
    set to the window's mean. Drawn per sample from (seed, epoch, index), as the modality masks are, so a sample is
    masked alike in whichever batch or process it lands."""
    out = x.clone()
    windows, mels, frames = x.shape[1], x.shape[-2], x.shape[-1]
    for row, i in enumerate(index.tolist()):
        rng = np.random.default_rng([seed, epoch, i, 0x5BEC])
        bands = [_span(rng, freq_width, mels) for _ in range(MASKS)]
        for t in range(windows):
            window = out[row, t, 0]
            fill = window.mean()
            for start, width in bands:
                window[start:start + width, :] = fill
            for start, width in (_span(rng, time_width, frames) for _ in range(MASKS)):
                window[:, start:start + width] = fill
    return out


def _span(rng: np.random.Generator, max_width: int, size: int) -> tuple[int, int]:
    """(start, width): a width of 0..max_width, placed wholly inside 0..size."""
    width = int(rng.integers(min(max_width, size) + 1))
    return int(rng.integers(size - width + 1)), width
