"""EPIC-KITCHENS-100: the annotation CSVs and media in the two layouts people use.

Annotations (`<annotations>` defaults to `<data_root>/annotations/epic-kitchens-100`):
`EPIC_100_train.csv`, `EPIC_100_validation.csv`, `EPIC_100_test_timestamps.csv`,
`EPIC_100_verb_classes.csv` (97), `EPIC_100_noun_classes.csv` (300), `EPIC_100_video_info.csv` (fps per video).
`start_frame` / `stop_frame` are 1-based frame-file numbers at the video's own fps.

Media (`<media_root>` defaults to `<data_root>/epic-kitchens-100`), each tar extracted into a folder of its name:
- layout "frames": `<P>/rgb_frames/<video_id>/frame_0000000001.jpg ...`, optionally
  `<P>/flow_frames/<video_id>/{u,v}/frame_0000000001.jpg ...` (used with flow_source="epic");
- layout "video": `<P>/videos/<video_id>.MP4`.
Audio comes from `<P>/videos/<video_id>.MP4` in both layouts; without that file A is marked missing.

Splits (the paper's): "train" and "val" are a 90/10 split of EPIC_100_train.csv by video (seeded, so no
video's segments straddle the two), "test" is the official validation set, "train-full" all of
EPIC_100_train.csv, "challenge" the unlabelled test timestamps (verb = noun = -1).
"""
from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge.errors import ConfigError
from edge.preprocess import PreprocessConfig
from trainer.data.segments import Annotation, SegmentDataset, build_sample, check_range, plan_clip, plan_frames
from trainer.data.media import FlowFolder, FrameFolder, MediaError, SkipLog, VideoFile

ANNOTATIONS = {"train": "EPIC_100_train.csv", "val": "EPIC_100_train.csv", "train-full": "EPIC_100_train.csv",
               "test": "EPIC_100_validation.csv", "challenge": "EPIC_100_test_timestamps.csv"}
LAYOUTS = ("frames", "video")
FLOW_SOURCES = ("recompute", "epic")
_REQUIRED = ("narration_id", "participant_id", "video_id", "start_frame", "stop_frame")


def read_csv(path: Path, required: tuple[str, ...]) -> list[dict[str, str]]:
    """Rows of a CSV file that must exist and have the `required` columns."""
    if not path.is_file():
        raise ConfigError(f"annotation file {path} does not exist.")
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        absent = [c for c in required if c not in (reader.fieldnames or [])]
        if absent:
            raise ConfigError(f"{path} lacks the column(s) {absent}.")
        return list(reader)


def class_names(path: Path) -> list[str]:
    """`id,key,...` class file -> names ordered by id."""
    rows = read_csv(path, ("id", "key"))
    names = {int(r["id"]): r["key"] for r in rows}
    if sorted(names) != list(range(len(names))):
        raise ConfigError(f"{path} does not number its classes 0..{len(names) - 1}.")
    return [names[i] for i in range(len(names))]


def paper_split(videos: list[str], val_fraction: float, seed: int) -> set[str]:
    """The validation videos: a seeded shuffle of `videos` (one entry per segment), taking whole videos
    until about `val_fraction` of the segments."""
    unique, counts = np.unique(np.asarray(videos), return_counts=True)
    order = np.random.default_rng(seed).permutation(unique.size)
    before = np.cumsum(counts[order]) - counts[order]
    return set(unique[order][before < val_fraction * len(videos)].tolist())


@dataclass
class _VideoMedia:
    fps: float
    frames: FrameFolder | None
    video: VideoFile | None
    flow: FlowFolder | None

    @property
    def n_frames(self) -> int:
        return self.frames.n_frames if self.frames is not None else int(self.video.duration * self.fps)


class EpicKitchens(SegmentDataset):
    """EPIC-KITCHENS-100 segments as MovingDigits-AV-format samples (verb 97, noun 300)."""

    name = "epic-kitchens-100"

    def __init__(self, data_root: str | Path, split: str = "train", cfg: PreprocessConfig | None = None, *,
                 train: bool | None = None, annotations: str | Path | None = None,
                 media_root: str | Path | None = None, layout: str = "frames", flow_source: str = "recompute",
                 val_fraction: float = 0.1, seed: int = 0, limit: int | None = None) -> None:
        if split not in ANNOTATIONS:
            raise ConfigError(f"unknown EPIC-KITCHENS split {split!r}; use one of {sorted(ANNOTATIONS)}.")
        if layout not in LAYOUTS:
            raise ConfigError(f"unknown EPIC-KITCHENS layout {layout!r}; use one of {list(LAYOUTS)}.")
        if flow_source not in FLOW_SOURCES:
            raise ConfigError(f"unknown flow source {flow_source!r}; use one of {list(FLOW_SOURCES)}.")
        if flow_source == "epic" and layout != "frames":
            raise ConfigError("flow_source='epic' reads the flow_frames folders, which needs layout='frames'.")
        root = Path(data_root)
        ann = Path(annotations) if annotations else root / "annotations" / "epic-kitchens-100"
        self.media_root = Path(media_root) if media_root else root / "epic-kitchens-100"
        self.layout, self.flow_source = layout, flow_source
        labels = {"verb": class_names(ann / "EPIC_100_verb_classes.csv"),
                  "noun": class_names(ann / "EPIC_100_noun_classes.csv")}
        fps = {r["video_id"]: float(r["fps"])
               for r in read_csv(ann / "EPIC_100_video_info.csv", ("video_id", "fps"))}
        labelled = split != "challenge"
        rows = read_csv(ann / ANNOTATIONS[split], _REQUIRED + (("verb_class", "noun_class") if labelled else ()))
        if split in ("train", "val"):
            val_videos = paper_split([r["video_id"] for r in rows], val_fraction, seed)
            rows = [r for r in rows if (r["video_id"] in val_videos) == (split == "val")]
        if limit is not None:
            rows = rows[:limit]
        cfg = cfg or PreprocessConfig()
        skips = SkipLog(f"{self.name} {split}")
        self.media: dict[str, _VideoMedia] = {}
        unusable: dict[str, str] = {}
        segments = []
        for r in rows:
            vid = r["video_id"]
            if vid not in self.media and vid not in unusable:
                try:
                    self.media[vid] = self._open(r["participant_id"], vid, fps.get(vid))
                except MediaError as exc:
                    unusable[vid] = str(exc)
            if vid in unusable:
                skips.skip("missing or unreadable media", unusable[vid])
                continue
            media = self.media[vid]
            seg = Annotation(r["narration_id"], vid, int(r["start_frame"]) - 1, int(r["stop_frame"]) - 1,
                          int(r["verb_class"]) if labelled else -1, int(r["noun_class"]) if labelled else -1)
            gap = max(1, int(round(media.fps / cfg.sample_fps)))
            missing = None
            if media.frames is not None and media.frames.missing:
                holes = media.frames.missing
                missing = lambda lo, hi: any(i in holes for i in range(max(0, lo - gap), hi + 1))  # noqa: E731
            seg = check_range(seg, media.n_frames, skips, missing)
            if seg is not None:
                segments.append(seg)
        super().__init__(segments, labels, cfg, split in ("train", "train-full") if train is None else train,
                         seed, skips, {"layout": layout, "flow_source": flow_source})

    def _open(self, participant: str, video_id: str, fps: float | None) -> _VideoMedia:
        """Probe one video's media once (MediaError when they cannot be used)."""
        if fps is None:
            raise MediaError(f"video {video_id} has no fps in EPIC_100_video_info.csv.")
        base = self.media_root / participant
        video_path = base / "videos" / f"{video_id}.MP4"
        video = VideoFile(video_path) if self.layout == "video" or video_path.is_file() else None
        frames = FrameFolder(base / "rgb_frames" / video_id) if self.layout == "frames" else None
        flow = FlowFolder(base / "flow_frames" / video_id) if self.flow_source == "epic" else None
        return _VideoMedia(fps, frames, video, flow)

    def load(self, segment: Annotation, rng: np.random.Generator | None) -> dict:
        m = self.media[segment.media]
        cfg = self.cfg
        plan = plan_clip(segment.start, segment.stop, m.fps, cfg, rng)
        flow = None
        if self.flow_source == "epic":
            flow = {j: m.flow.flow(j) for j in plan.flow_to}
            wanted = sorted(set(plan.video.tolist()) | set(plan.video_prev.tolist()))
        else:
            wanted = plan_frames(plan)
        frames = m.frames.frames(wanted) if m.frames is not None else m.video.frames(wanted, fps=m.fps)
        audio = None
        if m.video is not None:
            audio = m.video.audio_windows(plan.audio_end_s, cfg.audio_window_s, cfg.audio_sample_rate)
        return build_sample(plan, frames, cfg, None if flow is not None else self.flow_backend,
                            flow_fields=flow, audio=audio, audio_rate=cfg.audio_sample_rate)
