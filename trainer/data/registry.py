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

from torch.utils.data import Dataset

from edge.errors import ConfigError
from edge.preprocess import PreprocessConfig
from trainer.config import DataConfig
from trainer.data.epic_kitchens import EpicKitchens
from trainer.data.recordings import Recordings
from trainer.data.segments import SegmentDataset
from trainer.data.something_something import SomethingSomethingV2

REAL_DATASETS: dict[str, type[SegmentDataset]] = {
    "epic-kitchens-100": EpicKitchens,
    "something-something-v2": SomethingSomethingV2,
    "recordings": Recordings,
}


def build_real_dataset(name: str, data_root: str | Path, split: str, cfg: PreprocessConfig | None = None,
                       **options: Any) -> SegmentDataset:
    """Dataset `name` on `split`; `options` are the dataset class's keyword arguments
    (train, annotations, media_root, layout, flow_source, val_fraction, seed, limit)."""
    if name not in REAL_DATASETS:
        raise ConfigError(f"unknown dataset {name!r}; real datasets are {sorted(REAL_DATASETS)}.")
    try:
        return REAL_DATASETS[name](data_root, split, cfg, **options)
    except TypeError as exc:
        raise ConfigError(f"dataset {name!r} does not take these options: {exc}.") from None

MOVING_DIGITS = "moving-digits"
DATASET_NAMES = (MOVING_DIGITS, *REAL_DATASETS)


@dataclass(frozen=True)
class DatasetSpec:
    """What `--dataset NAME --data-root ROOT` and the media options name."""

    name: str = MOVING_DIGITS
    data_root: str | None = None
    options: dict[str, Any] = field(default_factory=dict)  # annotations, media_root, layout, flow_source, limit


def build_dataset(spec: DatasetSpec, split: str, *, train: bool, data: DataConfig,
                  pre: PreprocessConfig, cache: Path | None = None) -> Dataset:
    """`spec`'s dataset on `split`, sampled TSN-style when `train`, uniformly otherwise. MovingDigits-AV:
    `data`'s clips of the split, rendered once (cached under `cache`, default trainer.config.cache_root) and
    held in memory (a trainer.data.clip_set.ClipSet)."""
    if spec.name == MOVING_DIGITS:
        from trainer.data.sources import load_clips, resolve_source

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
