"""Modality availability masks (order V, F, A; 1 = present): the 7 subsets and random dropout."""
from __future__ import annotations

import torch

from trainer.models import MODALITIES

SUBSETS = ("VFA", "VF", "VA", "FA", "V", "F", "A")


def subset_mask(subset: str, batch: int) -> torch.Tensor:
    """[batch, 3] mask with the modalities named in `subset` present."""
    row = torch.tensor([float(m in subset) for m in MODALITIES])
    return row.expand(batch, 3).clone()


def random_drop(batch: int, p: float, generator: torch.Generator | None = None,
                present: torch.Tensor | None = None) -> torch.Tensor:
    """Each modality missing independently with probability `p`; a row where all three would be missing
    is drawn again until one stays (a prediction needs at least one modality, as in training).

    Redrawing means the masks follow the independent-drop distribution conditioned on "not all missing".
    `present` [batch, 3] (1 = the sample has that modality, e.g. SSv2 has no audio) is ANDed in, and the
    redraw then keeps one of the sample's own modalities (a row with none stays all-missing).
    """
    available = torch.ones(batch, 3) if present is None else present.float()
    mask = (torch.rand(batch, 3, generator=generator) >= p).float() * available
    empty = (mask.sum(1) == 0) & (available.sum(1) > 0)
    while empty.any():
        mask[empty] = (torch.rand(int(empty.sum()), 3, generator=generator) >= p).float() * available[empty]
        empty = (mask.sum(1) == 0) & (available.sum(1) > 0)
    return mask


def sample_drop(index: torch.Tensor, present: torch.Tensor, p: float, seed: int, epoch: int) -> torch.Tensor:
    """`random_drop` with one generator per sample, keyed by (seed, epoch, sample index): a sample gets
    the same mask in whichever batch or process it lands (what makes torchrun runs match one process)."""
    rows = []
    for i, avail in zip(index.tolist(), present):
        gen = torch.Generator().manual_seed((seed * 1_000_003 + epoch) * 10_000_019 + i)
        rows.append(random_drop(1, p, gen, avail.reshape(1, 3)))
    return torch.cat(rows) if rows else torch.zeros(0, 3)


def subset_index(mask: torch.Tensor) -> torch.Tensor:
    """Row-wise index into SUBSETS of a [B, 3] mask with at least one modality present."""
    code = (mask[:, 0] * 4 + mask[:, 1] * 2 + mask[:, 2]).long()
    # code = 4V + 2F + A  ->  position in SUBSETS
    lookup = torch.tensor([-1, 6, 5, 3, 4, 2, 1, 0])
    return lookup[code]
