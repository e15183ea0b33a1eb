"""Clips held in memory (numpy, inputs as float16, about 0.4 MB per clip): what the benchmark's MovingDigits
splits are once rendered (trainer.data.moving_digits.materialize caches them on disk), and what calibration
reads. A `ClipSet` is also a dataset in the trainer's sample format (trainer.data.registry), so the one training
loop reads it like any other dataset, without rendering anything again."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

import numpy as np

from edge.modalities import MODALITIES


@dataclass
class ClipSet:
    """Model inputs of n clips, {"V": [n,T,C,S,S], "F": [n,T,2,S,S], "A": [n,T,1,M,W]} (float16 or float32),
    labels verb / noun [n], and where the clips give them, soft training targets {"verb": [n, verbs], "noun":
    [n, nouns]} (one-hot for whole-action clips; by overlap for stream windows)."""

    inputs: dict[str, np.ndarray]
    verb: np.ndarray
    noun: np.ndarray
    soft: dict[str, np.ndarray] = field(default_factory=dict)
    labels: dict[str, list[str]] = field(default_factory=dict)   # class names per head
    key: str = ""            # identity of the clips (the renderer's cache key): what a run's checkpoints belong to
    source: dict = field(default_factory=dict)                  # where the clips came from (recorded in manifests)
    skips = None             # nothing is ever skipped: the clips are rendered

    @classmethod
    def from_arrays(cls, arrays: Mapping, labels: dict[str, list[str]], key: str = "",
                    source: dict | None = None) -> "ClipSet":
        """From materialize()'s tensors (or arrays): inputs held as float16."""
        def numpy(x) -> np.ndarray:
            return x.numpy() if hasattr(x, "numpy") else np.asarray(x)
        soft = {h: numpy(arrays[f"{h}_t"]).astype(np.float32) for h in ("verb", "noun") if f"{h}_t" in arrays}
        return cls({m: numpy(arrays[m]).astype(np.float16) for m in MODALITIES},
                   numpy(arrays["verb"]).astype(np.int64), numpy(arrays["noun"]).astype(np.int64), soft,
                   dict(labels), key, dict(source or {}))

    def __len__(self) -> int:
        return len(self.verb)

    def take(self, index: np.ndarray | slice) -> "ClipSet":
        return ClipSet({m: x[index] for m, x in self.inputs.items()}, self.verb[index], self.noun[index],
                       {h: t[index] for h, t in self.soft.items()}, self.labels, "", dict(self.source))

    # the trainer's dataset interface (trainer.data.registry)

    @property
    def num_classes(self) -> dict[str, int]:
        return {h: len(v) for h, v in self.labels.items()}

    def cache_key(self) -> str:
        return self.key

    def set_epoch(self, epoch: int) -> None:
        """Clips are fixed renders: nothing changes per epoch."""

    def __getitem__(self, index: int) -> dict:
        import torch

        item = {m: torch.from_numpy(self.inputs[m][index].astype(np.float32)) for m in MODALITIES}
        item.update(present={m: True for m in MODALITIES}, verb=int(self.verb[index]), noun=int(self.noun[index]),
                    id=str(index))
        item.update({f"{h}_t": torch.from_numpy(t[index]) for h, t in self.soft.items()})
        return item

    def batch(self, indices: list[int]) -> dict:
        """The samples at `indices` already collated (what a DataLoader makes of them one by one, in one
        indexing per array: reading from memory then costs what the old in-memory loops paid)."""
        import torch

        idx = np.asarray(indices, np.int64)
        out = {m: torch.from_numpy(self.inputs[m])[torch.from_numpy(idx)].float() for m in MODALITIES}
        out.update(present={m: torch.ones(len(idx), dtype=torch.bool) for m in MODALITIES},
                   verb=torch.from_numpy(self.verb[idx]), noun=torch.from_numpy(self.noun[idx]),
                   id=[str(i) for i in idx])
        out.update({f"{h}_t": torch.from_numpy(t[idx]) for h, t in self.soft.items()})
        return out
