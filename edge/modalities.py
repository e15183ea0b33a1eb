"""The names every package shares (numpy only): the modalities, their 7 non-empty subsets, availability
masks, the subset key of a mask, and verb / noun / action accuracy.

`edge` defines them once; `trainer` and `calibration` import them from here (ARCHITECTURE.md: edge never
imports the others, so the shared names live at the bottom of the arrows).
"""
from __future__ import annotations

from typing import Mapping

import numpy as np

MODALITIES = ("V", "F", "A")                               # video, optical flow, audio; the order of every mask
SUBSETS = ("VFA", "VF", "VA", "FA", "V", "F", "A")         # the order of every table


def subset_mask(subset: str, n: int) -> np.ndarray:
    """[n, 3] float32 availability mask (order V, F, A; 1 = present) with the modalities named in `subset`."""
    return np.tile(np.array([[m in subset for m in MODALITIES]], np.float32), (n, 1))


def subset_key(mask: Mapping[str, bool] | tuple | np.ndarray) -> str:
    """Availability (a {modality: bool} mapping or one V, F, A row) -> canonical subset key ("VFA", "VA", ...;
    "" when nothing is present)."""
    if isinstance(mask, Mapping):
        return "".join(m for m in MODALITIES if mask.get(m))
    return "".join(m for m, present in zip(MODALITIES, mask) if present)


def accuracy(verb_logits: np.ndarray, noun_logits: np.ndarray, verb: np.ndarray, noun: np.ndarray) -> dict[str, float]:
    """Verb, noun and action accuracy in % (an action is right only when verb AND noun are)."""
    verb_ok = np.asarray(verb_logits).argmax(1) == np.asarray(verb)
    noun_ok = np.asarray(noun_logits).argmax(1) == np.asarray(noun)
    return {"verb": 100.0 * float(verb_ok.mean()), "noun": 100.0 * float(noun_ok.mean()),
            "action": 100.0 * float((verb_ok & noun_ok).mean())}
