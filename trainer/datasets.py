"""Every dataset the teacher / student / evaluate commands read, by `--dataset NAME`, in one sample format.

A sample is a dict: V [Tv,C,S,S], F [Tf,2,S,S], A [Ta,1,M,W] (float32), present {"V","F","A": bool},
verb, noun, id, and `index` (its position in the dataset, which names its row in a token cache); MovingDigits
samples also carry soft targets verb_t / noun_t (every loss trains on them where they exist).
A dataset has `labels` ({"verb": names, "noun": names}), `num_classes`, `cache_key()`, `set_epoch(epoch)`
(new TSN offsets) and `skips` (segments skipped for bad media).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from edge.errors import ConfigError
from edge.modalities import MODALITIES
from edge.preprocess import PreprocessConfig
from trainer.config import DataConfig
from trainer.data.registry import REAL_DATASETS, build_real_dataset

MOVING_DIGITS = "moving-digits"
DATASET_NAMES = (MOVING_DIGITS, *REAL_DATASETS)


@dataclass(frozen=True)
class DatasetSpec:
    """What `--dataset NAME --data-root ROOT` and the media options name."""

    name: str = MOVING_DIGITS
    data_root: str | None = None
    options: dict[str, Any] = field(default_factory=dict)  # annotations, media_root, layout, flow_source, limit


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


def build_dataset(spec: DatasetSpec, split: str, *, train: bool, data: DataConfig,
                  pre: PreprocessConfig, cache: Path | None = None) -> Dataset:
    """`spec`'s dataset on `split`, sampled TSN-style when `train`, uniformly otherwise. MovingDigits-AV:
    `data`'s clips of the split, rendered once (cached under `cache`, default trainer.config.cache_root) and
    held in memory (a trainer.clips.ClipSet)."""
    if spec.name == MOVING_DIGITS:
        from trainer.data_access import load_clips, resolve_source

        counts = {"train": data.n_train, "val": data.n_val, "test": data.n_test}
        if spec.options:
            raise ConfigError(f"--dataset {MOVING_DIGITS} takes no media options ({', '.join(spec.options)}).")
        return load_clips(resolve_source(spec.data_root), split, counts.get(split, data.n_test), data, pre, cache)
    if spec.name not in REAL_DATASETS:
        raise ConfigError(f"unknown dataset {spec.name!r}; use one of {list(DATASET_NAMES)}.")
    if spec.data_root is None:
        raise ConfigError(f"--dataset {spec.name} needs --data-root.")
    if not Path(spec.data_root).is_dir():
        raise ConfigError(f"data root {spec.data_root} does not exist or is not a folder.")
    dataset = build_real_dataset(spec.name, spec.data_root, split, pre, train=train, seed=data.seed, **spec.options)
    if any(seg.verb < 0 or seg.noun < 0 for seg in dataset.segments):
        raise ConfigError(f"split {split!r} of {spec.name} has no labels (e.g. EPIC's challenge split); it can be "
                          "neither trained on nor scored here.")
    return dataset


def check_bundle_labels(bundle, dataset, name: str) -> None:
    """A bundle scored or calibrated on `dataset` must predict exactly its classes, in its order."""
    if dict(bundle.labels) != dataset.labels:
        raise ConfigError(f"{bundle.path} predicts other classes than {name} has "
                          f"({', '.join(f'{len(v)} {h}s' for h, v in dataset.labels.items())}).")


def presence(batch: dict) -> torch.Tensor:
    """[B, 3] float mask (V, F, A) of the modalities a collated batch's samples have."""
    return torch.stack([batch["present"][m].float() for m in MODALITIES], 1)
