"""Random modality dropout as torch masks (order V, F, A; 1 = present). The subsets and their masks are
`edge.modalities`' (the one home of the shared names)."""
from __future__ import annotations

import torch

from edge import modalities


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


def drop_mask(index: torch.Tensor, present: torch.Tensor, p_drop: float, seed: int, epoch: int) -> torch.Tensor:
    """The availability mask a training batch sees: `sample_drop` when modalities are dropped, else what is present."""
    return sample_drop(index, present, p_drop, seed, epoch) if p_drop > 0 else present.float()


def subset_mask(subset: str, batch: int) -> torch.Tensor:
    """`edge.modalities.subset_mask` as a torch tensor."""
    return torch.from_numpy(modalities.subset_mask(subset, batch))
