"""The real datasets by the name `--dataset NAME` uses (MovingDigits-AV is registered by the trainer)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from edge.errors import ConfigError
from edge.preprocess import PreprocessConfig
from trainer.data.clips import SegmentDataset
from trainer.data.epic_kitchens import EpicKitchens
from trainer.data.recordings import Recordings
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
