"""Leakage-free splits of MovingDigits-AV: a split is a set of FSDD speakers plus a range of MNIST images.

No speaker and no image index may appear in two splits, so a model is always scored on voices and
handwriting it never trained on. Image ranges are half-open: (6000, 7000) is images 6000..6999.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Mapping

from edge.errors import ConfigError


@dataclass(frozen=True)
class Split:
    """Who speaks and which images are drawn: `images` is the half-open index range [start, stop)."""

    name: str
    speakers: tuple[str, ...]
    images: tuple[int, int]

    def __post_init__(self) -> None:
        if not self.speakers or not all(isinstance(s, str) and s for s in self.speakers):
            raise ConfigError(f"split {self.name!r} needs at least one speaker name, got {self.speakers!r}.")
        start, stop = self.images
        if not (isinstance(start, int) and isinstance(stop, int)) or start < 0 or stop <= start:
            raise ConfigError(f"split {self.name!r} needs an image range start:stop with 0 <= start < stop, "
                              f"got {self.images!r}.")

    def key(self) -> str:
        """A stable text identity (used to seed renders and to key caches)."""
        return f"{self.name}|{','.join(self.speakers)}|{self.images[0]}:{self.images[1]}"


DEFAULT_SPLITS: dict[str, Split] = {
    "train": Split("train", ("george", "jackson", "lucas"), (0, 6000)),
    "val": Split("val", ("nicolas",), (6000, 7000)),
    "test": Split("test", ("yweweler",), (7000, 8000)),
}


def parse_images(text: str) -> tuple[int, int]:
    """'A:B' (the command-line form of an image range) -> (A, B)."""
    parts = text.split(":")
    try:
        start, stop = (int(p) for p in parts)
    except ValueError:
        raise ConfigError(f"an image range must look like START:STOP (e.g. 7000:8000), got {text!r}.") from None
    return start, stop


def make_split(name: str, speakers: Iterable[str] | None = None, images: tuple[int, int] | str | None = None,
               splits: Mapping[str, Split] = DEFAULT_SPLITS) -> Split:
    """Split `name` from `splits`, with speakers and/or image range overridden (e.g. by --speakers / --images).

    A name that is not a known split needs both overrides.
    """
    base = splits.get(name)
    if base is None and (speakers is None or images is None):
        raise ConfigError(f"unknown split {name!r}; use one of {sorted(splits)} or give both speakers and images.")
    if isinstance(images, str):
        images = parse_images(images)
    return Split(name,
                 tuple(speakers) if speakers is not None else base.speakers,
                 tuple(images) if images is not None else base.images)


def check_disjoint(splits: Iterable[Split]) -> None:
    """Raise ConfigError when two splits share a speaker or an image index."""
    items = list(splits)
    for i, a in enumerate(items):
        for b in items[i + 1:]:
            shared = sorted(set(a.speakers) & set(b.speakers))
            if shared:
                raise ConfigError(f"splits {a.name!r} and {b.name!r} share speaker(s) {shared}.")
            if a.images[0] < b.images[1] and b.images[0] < a.images[1]:
                raise ConfigError(f"splits {a.name!r} {a.images} and {b.name!r} {b.images} share image indices.")
