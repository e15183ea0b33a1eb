"""Datasets read in batches by a DataLoader under torchrun or alone: each sample with its `index` (the row its
tokens take in a cache), batch sizes GLOBAL (each of N ranks loads batch_size / N samples of every batch, a
DistributedSampler sharing out one seeded shuffle, so N processes see the same batches as one process does)."""
from __future__ import annotations

import torch
from torch.utils.data import DataLoader, Dataset

from edge.errors import ConfigError
from edge.modalities import MODALITIES
from trainer import distributed as ddp


class Indexed(Dataset):
    """Adds `index` to each sample of `dataset` (the row its tokens take in a cache)."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict:
        return {**self.dataset[index], "index": index}


class IndexedBatches(Indexed):
    """`Indexed` over a dataset that reads whole batches at once (`batch(indices)`, e.g. clips in memory): the
    DataLoader hands `__getitems__` the batch's indices and passes the one collated batch through
    (`collate_fn=first`)."""

    def __getitems__(self, indices: list[int]) -> list[dict]:
        return [{**self.dataset.batch(indices), "index": torch.as_tensor(indices, dtype=torch.long)}]


def first(items: list[dict]) -> dict:
    return items[0]


def presence(batch: dict) -> torch.Tensor:
    """[B, 3] float mask (V, F, A) of the modalities a collated batch's samples have."""
    return torch.stack([batch["present"][m].float() for m in MODALITIES], 1)


def targets(batch: dict, head: str) -> torch.Tensor:
    """Training targets for `head` of a batch (or of cached-token rows): soft targets where the dataset gives
    them (MovingDigits), else class indices."""
    return batch.get(f"{head}_t", batch[head])


def per_rank_batch(batch_size: int, info: ddp.DistInfo) -> int:
    if batch_size < 1:
        raise ConfigError(f"batch size must be at least 1, got {batch_size}.")
    if batch_size % info.world_size:
        raise ConfigError(f"batch size {batch_size} must be a multiple of the {info.world_size} processes.")
    return batch_size // info.world_size


def make_loader(dataset: Dataset, info: ddp.DistInfo, batch_size: int, *, shuffle: bool, seed: int,
                workers: int) -> tuple[DataLoader, torch.utils.data.DistributedSampler]:
    """Batches of `dataset`'s samples (each with its `index`), this rank's share; call
    `sampler.set_epoch(epoch)` before each epoch. Training (`shuffle`) drops the samples that do not fill
    a whole global batch, so N ranks take exactly one process's batches (and as many steps); evaluation
    pads the ranks' shares instead (the cache writes a padded row twice)."""
    indexed, collate = Indexed(dataset), None
    if hasattr(dataset, "batch"):   # clips held in memory: read a batch at once, no worker processes
        indexed, collate, workers = IndexedBatches(dataset), first, 0
    sampler = ddp.sampler(indexed, info, shuffle=shuffle, seed=seed, drop_last=shuffle)
    loader = DataLoader(indexed, batch_size=per_rank_batch(batch_size, info), sampler=sampler, num_workers=workers,
                        drop_last=shuffle, collate_fn=collate)
    return loader, sampler
