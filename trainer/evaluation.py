"""Scoring: verb / noun / action accuracy on the 7 modality subsets and the random-drop curve.

Encoders do not depend on the availability mask, so every clip is encoded once and only the fusion
runs per subset / per drop draw. The same functions score torch models and ONNX bundles: they take
callables `encode(modality, x[B,C,H,W]) -> [B,D]` and `fuse(v, f, a, mask) -> (verb_logits, noun_logits)`.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from edge import modalities
from edge.bundle import ENCODER_INPUT, FUSION_INPUT
from edge.modalities import MODALITIES, SUBSETS
from trainer.masks import random_drop, subset_mask

Fuse = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def accuracy(verb_logits: torch.Tensor, noun_logits: torch.Tensor, verb: torch.Tensor,
             noun: torch.Tensor) -> dict[str, float]:
    """`edge.modalities.accuracy` of torch logits and labels (%; an action is right only when verb AND noun are)."""
    return modalities.accuracy(*(t.detach().cpu().numpy() for t in (verb_logits, noun_logits, verb, noun)))


@torch.no_grad()
def fuse_batched(fuse: Fuse, tokens: dict[str, torch.Tensor], mask: torch.Tensor,
                 batch_size: int = 512) -> tuple[torch.Tensor, torch.Tensor]:
    n = mask.shape[0]
    verbs, nouns = [], []
    for s in range(0, n, batch_size):
        v, o = fuse(*(tokens[m][s:s + batch_size] for m in MODALITIES), mask[s:s + batch_size])
        verbs.append(v)
        nouns.append(o)
    return torch.cat(verbs), torch.cat(nouns)


def subset_table(fuse: Fuse, tokens: dict[str, torch.Tensor], verb: torch.Tensor, noun: torch.Tensor,
                 present: torch.Tensor | None = None) -> dict[str, dict[str, float]]:
    """{subset: {verb, noun, action}} for the 7 subsets.

    With `present` [n, 3] (what each sample has), a subset's mask is ANDed with it and the subset is scored
    on the samples left with at least one modality; a subset no sample has (A on SSv2) is left out.
    """
    n = verb.shape[0]
    table = {}
    for s in SUBSETS:
        mask = subset_mask(s, n) if present is None else subset_mask(s, n) * present
        rows = mask.sum(1) > 0
        if bool(rows.any()):
            picked = {m: t[rows] for m, t in tokens.items()}
            table[s] = accuracy(*fuse_batched(fuse, picked, mask[rows]), verb[rows], noun[rows])
    return table


def drop_curve(fuse: Fuse, tokens: dict[str, torch.Tensor], verb: torch.Tensor, noun: torch.Tensor,
               ps: tuple[float, ...], repeats: int, seed: int = 1234,
               present: torch.Tensor | None = None) -> dict[float, float]:
    """Action accuracy when each modality is missing independently with probability p (trainer.masks.random_drop,
    ANDed with `present` when given).

    Every model scored with the same seed sees the same masks; `repeats` draws per clip average out the noise.
    """
    out = {}
    for p in ps:
        gen = torch.Generator().manual_seed(seed + int(round(p * 1000)))
        accs = [accuracy(*fuse_batched(fuse, tokens, random_drop(verb.shape[0], p, gen, present)), verb, noun)["action"]
                for _ in range(repeats)]
        out[float(p)] = float(np.mean(accs))
    return out


def bundle_callables(bundle) -> tuple[Callable[[str, torch.Tensor], torch.Tensor], Fuse]:
    """`encode` and `fuse` running an edge.bundle.Bundle through ONNX Runtime."""
    def encode(modality: str, x: torch.Tensor) -> torch.Tensor:
        role, name = ENCODER_INPUT[modality]
        return torch.from_numpy(bundle.run(role, **{name: x.numpy().astype(np.float32)})[0])

    def fuse(v: torch.Tensor, f: torch.Tensor, a: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        tokens = {FUSION_INPUT[m]: x.numpy() for m, x in zip(MODALITIES, (v, f, a))}
        verb, noun = bundle.run("fusion", **tokens, mask=mask.numpy().astype(np.float32))
        return torch.from_numpy(verb), torch.from_numpy(noun)

    return encode, fuse
