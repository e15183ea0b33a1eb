"""Something-Something v2: `labels.json`, the train / validation JSON lists and one `.webm` per video.

Annotations (`<annotations>` defaults to `<data_root>/annotations/something-something-v2`):
`labels.json` (template with brackets removed -> class id string, 174 classes) and
`train.json` / `validation.json` (lists of {id, label, template, placeholders}); the names the
dataset ships with (`something-something-v2-labels.json`, `-train.json`, `-validation.json`) work too.
Videos (`<media_root>` defaults to `<data_root>/something-something-v2/videos`, i.e. the extracted
`20bn-something-something-v2` folder): `<media_root>/<id>.webm`.

The 174 classes are the verb head. The noun head has ONE class, "something": SSv2 labels are
templates over arbitrary objects, so there is no noun to predict; with a single noun class the
action accuracy equals the verb accuracy and the noun loss is zero. A is always missing (no audio).
A segment is the whole video. Splits, as for EPIC: "train"/"val" are a seeded 90/10 split of the
train list, "test" the official validation list, "train-full" the whole train list.

Videos are only checked for existence up front (probing 220k files would take long); a corrupt
video is found, skipped and counted when it is first loaded.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from edge.errors import ConfigError
from edge.preprocess import PreprocessConfig
from trainer.data.segments import Annotation, SegmentDataset, build_sample, plan_clip, plan_frames
from trainer.data.media import SkipLog, VideoFile

LIST_FILES = {"train": "train", "val": "train", "train-full": "train", "test": "validation"}
NOUNS = ["something"]


def _annotation_file(folder: Path, stem: str, explicit: str | Path | None) -> Path:
    """`explicit`, else `<folder>/<stem>.json`, else `<folder>/something-something-v2-<stem>.json`."""
    candidates = [Path(explicit)] if explicit else [folder / f"{stem}.json",
                                                    folder / f"something-something-v2-{stem}.json"]
    for path in candidates:
        if path.is_file():
            return path
    raise ConfigError(f"Something-Something v2 annotation file {' or '.join(map(str, candidates))} does not exist.")


def _load_json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read {path} as JSON ({exc}).") from None


def template_class(template: str, classes: dict[str, str], where: str) -> int:
    """A video's class id: its template with the placeholder brackets removed, looked up in labels.json."""
    key = template.replace("[", "").replace("]", "")
    if key not in classes:
        raise ConfigError(f"{where}: template {template!r} is not in labels.json.")
    return int(classes[key])


class SomethingSomethingV2(SegmentDataset):
    """SSv2 videos as MovingDigits-AV-format samples: 174 verbs, one noun, A always missing."""

    name = "something-something-v2"

    def __init__(self, data_root: str | Path, split: str = "train", cfg: PreprocessConfig | None = None, *,
                 train: bool | None = None, annotations: str | Path | None = None,
                 media_root: str | Path | None = None, list_file: str | Path | None = None,
                 val_fraction: float = 0.1, seed: int = 0, limit: int | None = None) -> None:
        if split not in LIST_FILES:
            raise ConfigError(f"unknown Something-Something split {split!r}; use one of {sorted(LIST_FILES)}.")
        root = Path(data_root)
        ann = Path(annotations) if annotations else root / "annotations" / "something-something-v2"
        self.media_root = Path(media_root) if media_root else root / "something-something-v2" / "videos"
        classes = _load_json(_annotation_file(ann, "labels", None))
        verbs = {int(i): name for name, i in classes.items()}
        if sorted(verbs) != list(range(len(verbs))):
            raise ConfigError(f"labels.json in {ann} does not number its classes 0..{len(verbs) - 1}.")
        list_path = _annotation_file(ann, LIST_FILES[split], list_file)
        entries = _load_json(list_path)
        if not isinstance(entries, list) or not all(isinstance(e, dict) and "id" in e and "template" in e
                                                    for e in entries):
            raise ConfigError(f"{list_path} must be a list of {{id, template, ...}} objects.")
        if split in ("train", "val"):
            order = np.random.default_rng(seed).permutation(len(entries))
            n_val = int(round(val_fraction * len(entries)))
            keep = order[:n_val] if split == "val" else order[n_val:]
            entries = [entries[i] for i in sorted(keep)]
        if limit is not None:
            entries = entries[:limit]
        skips = SkipLog(f"{self.name} {split}")
        segments = []
        for e in entries:
            path = self.media_root / f"{e['id']}.webm"
            if not path.is_file():
                skips.skip("missing video", str(path))
                continue
            segments.append(Annotation(str(e["id"]), str(path), 0, -1,
                                    template_class(e["template"], classes, str(list_path)), 0))
        super().__init__(segments, {"verb": [verbs[i] for i in range(len(verbs))], "noun": list(NOUNS)},
                         cfg or PreprocessConfig(), split in ("train", "train-full") if train is None else train,
                         seed, skips)

    def load(self, segment: Annotation, rng: np.random.Generator | None) -> dict:
        video = VideoFile(segment.media)
        frames = video.all_frames()
        plan = plan_clip(0, len(frames) - 1, video.fps, self.cfg, rng)
        return build_sample(plan, {i: frames[i] for i in plan_frames(plan)}, self.cfg, self.flow_backend)
