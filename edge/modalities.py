"""The names every package shares (numpy only): the modalities, their 7 non-empty subsets, availability
masks, the subset key of a mask, verb / noun / action accuracy, and joint decoding over an action list.

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


def action_log_probs(verb_logits: np.ndarray, noun_logits: np.ndarray, actions) -> np.ndarray:
    """[B, len(actions)] log p(verb) + log p(noun) of each listed (verb, noun) pair (verb and noun decoded jointly:
    the argmax is always a listed action, never a pair the heads' separate argmaxes happen to make)."""
    def log_softmax(x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, np.float64)
        x = x - x.max(axis=1, keepdims=True)
        return x - np.log(np.exp(x).sum(axis=1, keepdims=True))

    pairs = np.asarray(actions, int).reshape(-1, 2)
    return log_softmax(verb_logits)[:, pairs[:, 0]] + log_softmax(noun_logits)[:, pairs[:, 1]]


def best_action(verb_probs: np.ndarray, noun_probs: np.ndarray, actions=None) -> tuple[int, int]:
    """The (verb, noun) to report from one prediction's probabilities: each head's argmax when every pair is an
    action (`actions` None), else the listed pair with the largest p(verb) * p(noun)."""
    if actions is None:
        return int(np.argmax(verb_probs)), int(np.argmax(noun_probs))
    pairs = np.asarray(actions, int).reshape(-1, 2)
    best = int(np.argmax(np.asarray(verb_probs)[pairs[:, 0]] * np.asarray(noun_probs)[pairs[:, 1]]))
    return int(pairs[best, 0]), int(pairs[best, 1])
