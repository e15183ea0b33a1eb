"""Where the benchmark's clips come from: the data root (real MNIST + FSDD, or procedural), the splits and
nuisance levels of assets/configs/moving_digits.yaml (levels overridable per trainer config), and the
materialized clip cache."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from edge.errors import ConfigError
from edge.moving_digits.render import NOUNS, VERBS
from edge.moving_digits.config import MovingDigitsConfig, NuisanceLevels, load_config
from edge.assets import default_data_root
from edge.moving_digits.sources import FSDD_DIR, MNIST_IMAGES, MNIST_LABELS
from edge.moving_digits.splits import Split, make_split
from edge.preprocess.config import PreprocessConfig
from trainer.data.clip_set import ClipSet
from trainer.config import DataConfig, cache_root
from trainer.data.moving_digits import MovingDigitsDataset, StreamWindows, materialize


@dataclass(frozen=True)
class DataSource:
    root: Path | None            # None: the procedural source
    config: MovingDigitsConfig

    def describe(self) -> str:
        return "real (MNIST + FSDD)" if self.root else "procedural (not a benchmark result)"

    def identity(self) -> dict | None:
        """Which data, without this machine's path (results and bundles are shipped): the data folder's name and
        a digest of the names and sizes of the MNIST and FSDD files in it."""
        if self.root is None:
            return None
        digest = hashlib.sha256()
        files = [self.root / MNIST_IMAGES, self.root / MNIST_LABELS, *sorted((self.root / FSDD_DIR).glob("*.wav"))]
        for f in files:
            digest.update(f"{f.name}:{f.stat().st_size if f.is_file() else -1};".encode())
        return {"name": self.root.name, "digest": digest.hexdigest()[:12]}

    def split(self, name: str, speakers: list[str] | None = None, images: tuple[int, int] | str | None = None) -> Split:
        return make_split(name, speakers, images, self.config.splits)

    def split_info(self, name: str) -> dict:
        s = self.split(name)
        return {"speakers": list(s.speakers), "images": list(s.images)}

    def levels(self, data: DataConfig) -> NuisanceLevels:
        return NuisanceLevels.from_dict({**self.config.levels.to_dict(), **data.levels})

    def levels_dict(self, data: DataConfig) -> dict:
        return self.levels(data).to_dict()

    @staticmethod
    def stream(split_name: str, data: DataConfig) -> StreamWindows | None:
        """The live-stream imitation of `data.stream` for the train split; other splits are whole-action clips."""
        return StreamWindows.from_dict(data.stream) if split_name == "train" else None


def resolve_source(data_root: str | Path | None) -> DataSource:
    """--data-root when given (it must exist), else $KARMMA_DATA_ROOT or ../shared/data, else procedural."""
    if data_root is not None:
        root = Path(data_root)
        if not root.is_dir():
            raise ConfigError(f"data root {root} does not exist or is not a folder.")
        root = root.resolve()
    else:
        root = default_data_root()
    return DataSource(root, load_config())


def label_names() -> dict[str, list[str]]:
    return {"verb": list(VERBS), "noun": list(NOUNS)}


def load_clips(source: DataSource, split_name: str, n_clips: int, data: DataConfig, pre: PreprocessConfig,
               cache_dir: Path | None = None, *, speakers: list[str] | None = None,
               images: tuple[int, int] | str | None = None) -> ClipSet:
    """`n_clips` clips of a split, rendered once (cached under `cache_dir`/moving_digits, default the one cache
    root) and held in memory."""
    split = source.split(split_name, speakers, images)
    dataset = MovingDigitsDataset(split=split, n_clips=n_clips, seed=data.seed, data_root=source.root, pre=pre,
                                  levels=source.levels(data), stream=source.stream(split_name, data))
    arrays = materialize(dataset, workers=data.workers, cache_dir=Path(cache_dir or cache_root()) / "moving_digits")
    return ClipSet.from_arrays(arrays, label_names(), key=dataset.cache_key(),
                               source={"source": source.describe(), "split": split_name, "n_clips": n_clips,
                                       "speakers": list(split.speakers), "images": list(split.images)})
