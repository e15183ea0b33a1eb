"""Held-out clips as model inputs, and the calibration inputs drawn from them.

A `ClipSet` holds every clip's preprocessed inputs (built by the trainer's MovingDigits-AV dataset,
which uses `edge.preprocess`, so they are exactly what the runtime feeds) and its labels.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

SUBSETS = ("VFA", "VF", "VA", "FA", "V", "F", "A")


def subset_mask(subset: str, n: int) -> np.ndarray:
    """[n, 3] float32 availability mask (order V, F, A) for a subset key like "VA"."""
    return np.tile(np.array([[m in subset for m in "VFA"]], np.float32), (n, 1))


@dataclass
class ClipSet:
    """Per-clip model inputs and labels.

    inputs: {"V": [N, T, C, S, S], "F": [N, T, 2, S, S], "A": [N, T, 1, M, W]} (float16 or float32);
    verb, noun: [N] integer labels; source: where the clips came from (recorded in the int8 manifest).
    """

    inputs: dict[str, np.ndarray]
    verb: np.ndarray
    noun: np.ndarray
    source: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.verb)

    def take(self, index: np.ndarray | slice) -> "ClipSet":
        return ClipSet({m: x[index] for m, x in self.inputs.items()}, self.verb[index], self.noun[index],
                       dict(self.source))


def encoder_feeds(inputs: np.ndarray, input_name: str, n: int, rng: np.random.Generator) -> list[dict[str, np.ndarray]]:
    """`n` single-input feeds for one encoder, drawn without replacement from all clips' tokens [N, T, ...]."""
    flat = inputs.reshape(-1, *inputs.shape[2:])
    pick = rng.choice(len(flat), size=min(n, len(flat)), replace=False)
    return [{input_name: flat[i:i + 1].astype(np.float32)} for i in np.sort(pick)]


def fusion_feeds(tokens: dict[str, np.ndarray], masks_per_clip: int,
                 rng: np.random.Generator) -> list[dict[str, np.ndarray]]:
    """Fusion feeds with random missing-modality masks (uniform over the 7 non-empty subsets).

    Missing modalities' tokens are zeroed, as the runtime does, so the calibrated ranges cover every
    way a sensor can drop out.
    """
    feeds = []
    for i in range(len(tokens["V"])):
        for k in rng.integers(0, len(SUBSETS), size=masks_per_clip):
            mask = subset_mask(SUBSETS[k], 1)[0]
            feeds.append({
                "video_tokens": tokens["V"][i:i + 1] * mask[0], "flow_tokens": tokens["F"][i:i + 1] * mask[1],
                "audio_tokens": tokens["A"][i:i + 1] * mask[2], "mask": mask[None].copy(),
            })
    return feeds


def from_trainer_clips(clips, source: dict) -> ClipSet:
    """A `trainer.clips.ClipSet` (float16 torch tensors) as a numpy `ClipSet`."""
    return ClipSet({m: getattr(clips, m).numpy() for m in ("V", "F", "A")}, clips.verb.numpy(), clips.noun.numpy(),
                   dict(source))
