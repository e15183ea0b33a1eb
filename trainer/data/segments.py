"""From an annotated segment of real media to one model sample, built only with `edge.preprocess`.

A sample has the MovingDigits-AV format: V float32 [Tv,C,S,S] (`video_input`), F float32 [Tf,2,S,S],
A float32 [Ta,1,n_mels,frames], verb, noun, `present` = {"V","F","A": bool} (a modality the media
lack is all zeros and flagged False) and `id` (the annotation's id, a stable key for token caches).

Where the tokens come from in a segment of frames [start, stop] (0-based, inclusive):
- V token k: evaluation takes `uniform_indices` (the last frame of each of Tv equal parts, what the
  live sampler sees); training takes TSN sampling (a random frame within each part). Its motion channels
  (video_input "frame+diff") difference it with the frame 1 / sample_fps seconds earlier.
- F token k: flow from the frame 1 / sample_fps seconds before V token k's frame to that frame, so a
  flow field always spans what it spans at run time, whatever the segment's length (the last Tf
  V tokens get a flow token each).
- A token j: the audio window of `audio_window_s` ending at V token (Tv - Ta + j)'s frame; for a
  2 s segment these are exactly the live instants (DESIGN.md).
"""
from __future__ import annotations

import abc
import dataclasses
import hashlib
import json
from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

import cv2
import numpy as np
import torch

from edge.errors import ConfigError
from edge.preprocess import (
    FlowBackend, PreprocessConfig, compute_flow, flow_to_model_input, make_flow_backend,
    prepare_frame, to_gray, uniform_indices, video_input, window_to_model_input,
)
from trainer.data.media import MediaError, SkipLog


@dataclass(frozen=True)
class Annotation:
    """One annotated action of a media file (a real dataset's row; not edge.moving_digits.Segment, a labelled span of a
    rendered session in seconds): frames [start, stop] (0-based, inclusive; stop = -1: to the end of the media)."""

    id: str
    media: str
    start: int
    stop: int
    verb: int
    noun: int
    group: str = ""         # takes that must stay on one side of a split (the same person or session); "" = its own


@dataclass(frozen=True)
class ClipPlan:
    video: np.ndarray       # frame index of each V token
    video_prev: np.ndarray  # frame index of the previous sampled frame of each V token (video_input's motion)
    flow_from: np.ndarray   # frame index each F token's flow starts from (its end is the matching V frame)
    flow_to: np.ndarray
    audio_end_s: np.ndarray  # end time of each audio window, seconds from the media's start


def tsn_offsets(n_frames: int, n_samples: int, rng: np.random.Generator) -> np.ndarray:
    """TSN sampling: one random frame inside each of `n_samples` equal parts of `n_frames`."""
    edges = (np.arange(n_samples + 1) * n_frames) // n_samples
    lengths = np.maximum(edges[1:] - edges[:-1], 1)
    return np.minimum(edges[:-1] + rng.integers(0, lengths), n_frames - 1)


def plan_clip(start: int, stop: int, fps: float, cfg: PreprocessConfig,
              rng: np.random.Generator | None = None) -> ClipPlan:
    """Which frames and audio windows make the sample of segment [start, stop] (see module doc)."""
    tv, tf, ta = cfg.video_tokens, cfg.flow_tokens, cfg.audio_tokens
    if tf > tv or ta > tv:
        raise ConfigError("real-data clips need flow_tokens and audio_tokens <= video_tokens.")
    n = stop - start + 1
    offsets = uniform_indices(n, tv) if rng is None else tsn_offsets(n, tv, rng)
    video = start + offsets
    gap = max(1, int(round(fps / cfg.sample_fps)))
    flow_to = video[tv - tf:]
    return ClipPlan(video=video, video_prev=np.maximum(video - gap, 0), flow_from=np.maximum(flow_to - gap, 0),
                    flow_to=flow_to,
                    audio_end_s=(video[tv - ta:] + 1) / fps)


def resize_flow(flow_px: np.ndarray, cfg: PreprocessConfig) -> np.ndarray:
    """Precomputed flow (H, W, 2) in its own pixels -> (S, S, 2) in model-input pixels.

    The one documented exception to "only edge.preprocess": EPIC's precomputed flow arrives as a
    field, not as frames, so it is resized the way `prepare_frame` resizes frames (squash to S x S).
    """
    h, w = flow_px.shape[:2]
    s = cfg.frame_size
    out = cv2.resize(flow_px, (s, s), interpolation=cv2.INTER_AREA)
    return out * np.array([s / w, s / h], np.float32)


def build_sample(plan: ClipPlan, frames: Mapping[int, np.ndarray], cfg: PreprocessConfig,
                 flow_backend: FlowBackend | None, *, flow_fields: Mapping[int, np.ndarray] | None = None,
                 audio: Sequence[np.ndarray] | None = None, audio_rate: int = 0) -> dict:
    """Model tensors for `plan` from decoded RGB frames (every index the plan names must be present).

    F is recomputed from the frames with `flow_backend` unless `flow_fields` (precomputed flow in
    pixels, keyed by the V frame index) are given; A is missing when `audio` is None.
    """
    prepared = {i: prepare_frame(f, cfg) for i, f in frames.items()}
    v = np.stack([video_input(prepared[i], prepared[p], cfg) for i, p in zip(plan.video, plan.video_prev)])
    if flow_fields is not None:
        f = np.stack([flow_to_model_input(resize_flow(flow_fields[j], cfg), cfg) for j in plan.flow_to])
    else:
        gray = {i: to_gray(p) for i, p in prepared.items()}
        f = np.stack([flow_to_model_input(compute_flow(flow_backend, gray[a], gray[b], cfg), cfg)
                      for a, b in zip(plan.flow_from, plan.flow_to)])
    if audio is None:
        a = np.zeros((cfg.audio_tokens, 1, cfg.n_mels, cfg.logmel_frames), np.float32)
    else:
        a = np.stack([window_to_model_input(w, audio_rate, cfg) for w in audio])
    return {"V": torch.from_numpy(v), "F": torch.from_numpy(f), "A": torch.from_numpy(a),
            "present": {"V": True, "F": True, "A": audio is not None}}


def plan_frames(plan: ClipPlan) -> list[int]:
    """Every frame index a plan reads."""
    return sorted(set(plan.video.tolist()) | set(plan.video_prev.tolist()) | set(plan.flow_from.tolist()))


class SegmentDataset(torch.utils.data.Dataset, abc.ABC):
    """Base of the real-data datasets: a list of segments, labels, sampling mode and skip bookkeeping.

    Subclasses implement `load(segment, rng)`. A segment whose media fail while loading is counted
    in `skips`, remembered, and replaced by the next readable one, so an epoch never stops on bad media
    (each DataLoader worker process keeps its own count and warns once).
    TSN offsets are drawn from a generator keyed by (seed, epoch, index): the same sample whichever
    process or DataLoader worker loads it (what makes torchrun runs match single-process ones).
    """

    name = "dataset"

    def __init__(self, segments: list[Annotation], labels: dict[str, list[str]], cfg: PreprocessConfig,
                 train: bool, seed: int, skips: SkipLog, options: dict | None = None) -> None:
        if not segments and not skips.total:
            raise MediaError(f"{skips.name} has no segments: its annotation file lists none.")
        if not segments:
            raise MediaError(f"no segment has readable media. {skips.summary(kept=0)}")
        self.segments = segments
        self.labels = labels
        self.cfg = cfg
        self.train = train
        self.seed = seed
        self.epoch = 0
        self.skips = skips
        self.options = dict(options or {})   # media options that change the samples (layout, flow source)
        self._bad: set[int] = set()
        self._backend: FlowBackend | None = None
        skips.report(kept=len(segments))

    @property
    def num_classes(self) -> dict[str, int]:
        return {head: len(names) for head, names in self.labels.items()}

    def cache_key(self) -> str:
        """Hash of everything that decides the samples (segments, labels, preprocessing, sampling, media
        options), to name a frozen-extractor token cache. Training samples change with the epoch (TSN),
        so their key includes it."""
        spec = {"name": self.name, "segments": [dataclasses.astuple(s) for s in self.segments],
                "labels": self.labels, "pre": self.cfg.to_dict(), "train": self.train, "seed": self.seed,
                "epoch": self.epoch if self.train else None, "options": self.options}
        return hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()[:20]

    def set_epoch(self, epoch: int) -> None:
        """Draw new TSN offsets (call before each training epoch, like DistributedSampler.set_epoch)."""
        self.epoch = epoch

    @property
    def flow_backend(self) -> FlowBackend:
        if self._backend is None:   # made lazily: OpenCV flow objects do not pickle into workers
            self._backend = make_flow_backend(self.cfg.flow)
        return self._backend

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_backend"] = None
        return state

    def __len__(self) -> int:
        return len(self.segments)

    @abc.abstractmethod
    def load(self, segment: Annotation, rng: np.random.Generator | None) -> dict:
        """The sample's tensors and `present` flags (labels and id are added by __getitem__)."""

    def __getitem__(self, index: int) -> dict:
        for step in range(len(self.segments)):
            j = (index + step) % len(self.segments)
            if j in self._bad:
                continue
            seg = self.segments[j]
            rng = np.random.default_rng([self.seed, self.epoch, j]) if self.train else None
            try:
                sample = self.load(seg, rng)
            except MediaError as exc:
                self._bad.add(j)
                self.skips.skip_at_read("unreadable while loading", str(exc))
                continue
            sample.update(verb=seg.verb, noun=seg.noun, id=seg.id)
            return sample
        raise MediaError(f"{self.skips.name}: none of the {len(self.segments)} segments can be read.")


def check_range(seg: Annotation, n_frames: int, skips: SkipLog,
                missing: Callable[[int, int], bool] | None = None) -> Annotation | None:
    """Clamp a segment to its media's `n_frames`; None (counted in `skips`) when it cannot be used.

    A segment that starts past the end is skipped; one that only runs past the end is clamped (EPIC's
    stated frame counts and the extracted frames can differ by a few frames). `missing(lo, hi)` tells
    whether any frame file in [lo, hi] is absent.
    """
    if seg.start >= n_frames:
        skips.skip("past the end of its video", f"{seg.id} starts at frame {seg.start + 1} of {n_frames}")
        return None
    stop = n_frames - 1 if seg.stop < 0 else min(seg.stop, n_frames - 1)
    if stop < seg.start:
        skips.skip("empty segment", f"{seg.id} frames {seg.start + 1}..{seg.stop + 1}")
        return None
    if missing is not None and missing(seg.start, stop):
        skips.skip("missing frame files", f"{seg.id} in frames {seg.start + 1}..{stop + 1}")
        return None
    return seg if stop == seg.stop else dataclasses.replace(seg, stop=stop)
