"""Modality availability masks (order V, F, A; 1 = present): the 7 subsets and random dropout."""
from __future__ import annotations

import torch

from trainer.models import MODALITIES

SUBSETS = ("VFA", "VF", "VA", "FA", "V", "F", "A")


def subset_mask(subset: str, batch: int) -> torch.Tensor:
    """[batch, 3] mask with the modalities named in `subset` present."""
    row = torch.tensor([float(m in subset) for m in MODALITIES])
    return row.expand(batch, 3).clone()


def random_drop(batch: int, p: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Each modality missing independently with probability `p`; a row where all three would be missing
    is drawn again until one stays (a prediction needs at least one modality, as in training).

    Redrawing means the masks follow the independent-drop distribution conditioned on "not all missing".
    """
    mask = (torch.rand(batch, 3, generator=generator) >= p).float()
    empty = mask.sum(1) == 0
    while empty.any():
        mask[empty] = (torch.rand(int(empty.sum()), 3, generator=generator) >= p).float()
        empty = mask.sum(1) == 0
    return mask


def subset_index(mask: torch.Tensor) -> torch.Tensor:
    """Row-wise index into SUBSETS of a [B, 3] mask with at least one modality present."""
    code = (mask[:, 0] * 4 + mask[:, 1] * 2 + mask[:, 2]).long()
    # code = 4V + 2F + A  ->  position in SUBSETS
    lookup = torch.tensor([-1, 6, 5, 3, 4, 2, 1, 0])
    return lookup[code]
