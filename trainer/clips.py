"""The clips every training of the benchmark reads: rendered once (trainer.data.moving_digits.materialize
caches them on disk), then held in memory as float16 tensors (about 0.4 MB per clip)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import torch

from trainer.models import MODALITIES


@dataclass
class ClipSet:
    """Model inputs of n clips: V [n,T,C,S,S], F [n,T,2,S,S], A [n,T,1,M,W] (float16), labels and the
    soft targets training reads (one-hot for whole-action clips; by overlap for stream windows)."""

    V: torch.Tensor
    F: torch.Tensor
    A: torch.Tensor
    verb: torch.Tensor
    noun: torch.Tensor
    verb_t: torch.Tensor
    noun_t: torch.Tensor
    key: str = ""            # identity of the clips (the renderer's cache key): what a run's checkpoints belong to

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, torch.Tensor], key: str = "") -> "ClipSet":
        return cls(**{m: arrays[m].half() for m in MODALITIES}, verb=arrays["verb"].long(), noun=arrays["noun"].long(),
                   verb_t=arrays["verb_t"].float(), noun_t=arrays["noun_t"].float(), key=key)

    def targets(self, idx: torch.Tensor | slice) -> dict[str, torch.Tensor]:
        """Soft training targets {"verb", "noun"} of the clips at `idx`."""
        return {"verb": self.verb_t[idx], "noun": self.noun_t[idx]}

    def __len__(self) -> int:
        return int(self.verb.shape[0])

    def inputs(self, idx: torch.Tensor | slice) -> dict[str, torch.Tensor]:
        """float32 model inputs of the clips at `idx`."""
        return {m: getattr(self, m)[idx].float() for m in MODALITIES}
