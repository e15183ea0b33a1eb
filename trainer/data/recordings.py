"""Your own recordings: one annotation file per split listing segments of your videos.

Layout (`<root>`: --annotations, else `<data_root>/recordings`, else `<data_root>` itself when it holds the files):
    <root>/train.csv   (or train.jsonl; likewise val, test or any split name you pass)
    <root>/labels.json (optional: {"verb": [names...], "noun": [names...]}, fixing the class ids)
    <root>/<any path>.mp4 ...

Each row / JSON line has these fields:
    media  path of a video file (MP4, MKV, WebM, ...; its audio track is used when it has one),
           relative to <root> or absolute
    start  segment start, seconds from the start of the video (optional with end: without both, the whole file)
    end    segment end, seconds (> start)
    verb   verb class name
    noun   noun class name
    group  optional: rows of one group (a person, a session) stay on one side of a cross-validation split
Other columns are ignored.
CSV example:
    media,start,end,verb,noun
    kitchen/2024-05-01.mp4,12.5,15.0,open,fridge
JSONL example:
    {"media": "kitchen/2024-05-01.mp4", "start": 12.5, "end": 15.0, "verb": "open", "noun": "fridge"}

Without labels.json the classes are the sorted names found in all split files in <root>, so every
split numbers them the same way. `split="*"` pools every split file (cross-validation). Videos that are
missing or unreadable, and segments that start past the end of their video, are skipped and counted; a
segment that runs past the end is clamped.
"""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from edge.errors import ConfigError
from edge.preprocess import PreprocessConfig
from trainer.data.segments import Annotation, SegmentDataset, build_sample, check_range, plan_clip, plan_frames
from trainer.data.media import MediaError, SkipLog, VideoFile

FIELDS = ("media", "verb", "noun")
ALL_SPLITS = "*"


def read_rows(path: Path) -> list[dict]:
    """Rows of a recordings CSV or JSONL file, each with the five FIELDS (start/end as floats)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read {path} ({exc.strerror or exc}).") from None
    if path.suffix == ".jsonl":
        rows = []
        for n, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except ValueError:
                    raise ConfigError(f"{path} line {n} is not valid JSON.") from None
    else:
        rows = list(csv.DictReader(text.splitlines()))
    for n, row in enumerate(rows, 1):
        absent = [f for f in FIELDS if not isinstance(row, dict) or row.get(f) in (None, "")]
        if absent:
            raise ConfigError(f"{path} row {n} lacks {absent}; every row needs {list(FIELDS)} (and start, end "
                              "unless the row is the whole file).")
        given = [row.get(f) not in (None, "") for f in ("start", "end")]
        if not any(given):
            row["start"], row["end"] = 0.0, None
            continue
        try:
            row["start"], row["end"] = float(row["start"]), float(row["end"])
        except (TypeError, ValueError, KeyError):
            raise ConfigError(f"{path} row {n}: start and end must both be numbers of seconds (or both left out "
                              "for the whole file).") from None
        if not 0 <= row["start"] < row["end"]:
            raise ConfigError(f"{path} row {n}: needs 0 <= start < end, got {row['start']}..{row['end']}.")
    return rows


def recordings_root(data_root: str | Path, annotations: str | Path | None = None) -> Path:
    """Where the annotation files are: `annotations`, else `<data_root>/recordings`, else `data_root` itself."""
    if annotations:
        return Path(annotations)
    nested = Path(data_root) / "recordings"
    return nested if nested.is_dir() or not split_files(Path(data_root)) else Path(data_root)


def split_files(root: Path) -> list[Path]:
    return sorted(root.glob("*.csv")) + sorted(root.glob("*.jsonl"))


class MissingSplit(ConfigError):
    """A split that has no annotation file."""


def split_file(root: Path, split: str) -> Path:
    for suffix in (".csv", ".jsonl"):
        if (root / f"{split}{suffix}").is_file():
            return root / f"{split}{suffix}"
    raise MissingSplit(f"no annotation file {root / split}.csv or .jsonl for split {split!r}.")


def recording_labels(root: Path) -> dict[str, list[str]]:
    """labels.json when present, else the sorted names used across every split file in `root`."""
    path = root / "labels.json"
    if path.is_file():
        try:
            labels = json.loads(path.read_text(encoding="utf-8"))
        except ValueError:
            raise ConfigError(f"{path} is not valid JSON.") from None
        if not (isinstance(labels, dict) and all(isinstance(labels.get(h), list) for h in ("verb", "noun"))):
            raise ConfigError(f"{path} must be {{\"verb\": [names], \"noun\": [names]}}.")
        return {"verb": [str(v) for v in labels["verb"]], "noun": [str(v) for v in labels["noun"]]}
    rows = [r for f in split_files(root) for r in read_rows(f)]
    return {h: sorted({str(r[h]) for r in rows}) for h in ("verb", "noun")}


class Recordings(SegmentDataset):
    """Segments of the user's own videos (format in the module doc)."""

    name = "recordings"

    def __init__(self, data_root: str | Path, split: str = "train", cfg: PreprocessConfig | None = None, *,
                 train: bool | None = None, annotations: str | Path | None = None, seed: int = 0,
                 limit: int | None = None) -> None:
        root = recordings_root(data_root, annotations)
        files = split_files(root) if split == ALL_SPLITS else [split_file(root, split)]
        if not files:
            raise ConfigError(f"no annotation file (*.csv, *.jsonl) in {root}.")
        labels = recording_labels(root)
        ids = {h: {name: i for i, name in enumerate(names)} for h, names in labels.items()}
        rows = [(path, n, r) for path in files for n, r in enumerate(read_rows(path)[:limit], 1)]
        skips = SkipLog(f"{self.name} {split}")
        self.videos: dict[str, VideoFile] = {}
        unusable: dict[str, str] = {}
        segments = []
        for path, n, r in rows:
            for h in ("verb", "noun"):
                if str(r[h]) not in ids[h]:
                    raise ConfigError(f"{path} row {n}: {h} {r[h]!r} is not in {root / 'labels.json'}.")
            media = str((root / r["media"]).resolve())
            if media not in self.videos and media not in unusable:
                try:
                    self.videos[media] = VideoFile(media)
                except MediaError as exc:
                    unusable[media] = str(exc)
            if media in unusable:
                skips.skip("missing or unreadable media", unusable[media])
                continue
            video = self.videos[media]
            start = int(np.floor(r["start"] * video.fps))
            stop = -1 if r["end"] is None else max(start, int(np.ceil(r["end"] * video.fps)) - 1)
            seg = Annotation(f"{path.stem}:{n}", media, start, stop, ids["verb"][str(r["verb"])],
                             ids["noun"][str(r["noun"])], str(r.get("group") or ""))
            seg = check_range(seg, video.n_frames, skips)
            if seg is not None:
                segments.append(seg)
        super().__init__(segments, labels, cfg or PreprocessConfig(), split == "train" if train is None else train,
                         seed, skips)

    def load(self, segment: Annotation, rng: np.random.Generator | None) -> dict:
        video, cfg = self.videos[segment.media], self.cfg
        plan = plan_clip(segment.start, segment.stop, video.fps, cfg, rng)
        frames = video.frames(plan_frames(plan))
        audio = video.audio_windows(plan.audio_end_s, cfg.audio_window_s, cfg.audio_sample_rate)
        return build_sample(plan, frames, cfg, self.flow_backend, audio=audio, audio_rate=cfg.audio_sample_rate)
