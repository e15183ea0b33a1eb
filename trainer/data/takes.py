"""Whole takes of a recordings dataset held in memory at model size, and the 2 s windows cut from them.

The fine-tuner learns from a handful of takes per action, so it decodes each take once (frames resized to the
model's side, the audio track at the model rate) and cuts many windows from it: in training, every epoch draws
`windows_per_class` windows per action (class-balanced, whatever the number of takes), each at a random offset in
a random take of its action, optionally played a little faster or slower and augmented (`Augment`); in scoring,
`views` evenly spaced windows per take whose predictions are averaged.

A window has the live runtime's timing (docs/DESIGN.md): V token k is the frame at instant t_k, the 8 instants
1 / sample_fps apart ending at the window's end; its motion channels and its flow token span the previous instant;
audio token j is the 1 s window ending at the instant of V token (Tv - Ta + j). Every tensor is built with
`edge.preprocess`, as the runtime builds it.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from edge.errors import ConfigError
from edge.preprocess import (PreprocessConfig, compute_flow, flow_to_model_input, make_flow_backend, prepare_frame,
                             to_gray, video_input, window_to_model_input)
from trainer.data.segments import SegmentDataset


@dataclass(frozen=True)
class Augment:
    """Training-time changes a handful of takes needs (`finetune` settings; all off = the take as recorded)."""

    hflip: bool = False                 # mirror the frames half the time (flow's x follows): only for actions that
    #                                     are not mirror images of one another (push-left / push-right)
    brightness: float = 0.0             # added grey levels drawn from [-b, b] (of 255), one per window
    contrast: float = 0.0               # gain drawn from [1 - c, 1 + c], one per window
    speed: float = 0.0                  # playback rate drawn from [1 - s, 1 + s]: the instants' spacing scaled


@dataclass
class Take:
    """One annotated take: its frames at model size, [N, S, S, 3] uint8 (frame i shows i / fps seconds after the
    take's start), and its mono audio at the model rate with `lead_s` seconds before the start (None: no track)."""

    id: str
    verb: int
    noun: int
    group: str
    frames: np.ndarray
    fps: float
    audio: np.ndarray | None
    lead_s: float

    @property
    def duration_s(self) -> float:
        return len(self.frames) / self.fps

    @property
    def action(self) -> tuple[int, int]:
        return self.verb, self.noun


def load_takes(dataset: SegmentDataset) -> list[Take]:
    """Decode every segment of a recordings dataset once (frames resized to the model's side)."""
    cfg = dataset.cfg
    takes = []
    for seg in dataset.segments:
        video = dataset.videos[seg.media]
        decoded = video.frames(range(seg.start, seg.stop + 1))
        frames = np.stack([prepare_frame(decoded[i], cfg) for i in range(seg.start, seg.stop + 1)])
        start_s, n = seg.start / video.fps, seg.stop - seg.start + 1
        lead = cfg.audio_window_s
        audio = video.audio_windows([start_s + n / video.fps], n / video.fps + lead, cfg.audio_sample_rate)
        takes.append(Take(seg.id, seg.verb, seg.noun, seg.group or seg.id, frames, video.fps,
                          None if audio is None else audio[0], lead))
    return takes


def window_instants(end_s: float, n: int, dt: float) -> np.ndarray:
    """The n sampled instants 1 / sample_fps (`dt`) apart ending at `end_s`, and the one before them: [n + 1]."""
    return end_s - dt * np.arange(n, -1, -1)


def window_ends(take: Take, count: int, dt: float, n: int) -> np.ndarray:
    """`count` evenly spaced window ends over a take: from the first end whose window fits to the take's end."""
    first = min(n * dt, take.duration_s)
    return np.linspace(first, take.duration_s, count) if count > 1 else np.array([take.duration_s])


def jitter(frames: np.ndarray, rng: np.random.Generator, aug: Augment) -> np.ndarray:
    """One window's frames with one brightness / contrast draw and a mirror, as `aug` asks."""
    out = frames
    if aug.brightness or aug.contrast:
        gain = rng.uniform(1 - aug.contrast, 1 + aug.contrast)
        shift = rng.uniform(-aug.brightness, aug.brightness)
        mean = out.mean()
        out = np.clip((out.astype(np.float32) - mean) * gain + mean + shift, 0, 255).astype(np.uint8)
    if aug.hflip and rng.random() < 0.5:
        out = np.ascontiguousarray(out[:, :, ::-1])
    return out


class TakeWindows(Dataset):
    """Windows of `takes` as model samples (V, F, A, present, verb, noun, id): `windows_per_class` per action and
    epoch at random offsets when training (a generator per (seed, epoch, index): any worker draws the same), or
    `views` evenly spaced windows per take when scoring (item i is window i % views of take i // views)."""

    def __init__(self, takes: list[Take], cfg: PreprocessConfig, *, train: bool,
                 seed: int = 0, windows_per_class: int = 16, views: int = 5, augment: Augment = Augment()) -> None:
        if not takes:
            raise ConfigError("there are no takes to cut windows from.")
        self.takes, self.cfg, self.train, self.seed = takes, cfg, train, seed
        self.windows_per_class, self.views, self.augment = windows_per_class, views, augment
        self.actions = sorted({t.action for t in takes})
        self.by_action = {a: [i for i, t in enumerate(takes) if t.action == a] for a in self.actions}
        self.epoch = 0
        self._backend = None

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.actions) * self.windows_per_class if self.train else len(self.takes) * self.views

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_backend": None}      # OpenCV flow objects do not pickle into workers

    def __getitem__(self, index: int) -> dict:
        cfg = self.cfg
        n, dt = cfg.video_tokens, 1.0 / cfg.sample_fps
        if self.train:
            rng = np.random.default_rng([self.seed, self.epoch, index])
            action = self.actions[index % len(self.actions)]
            take = self.takes[self.by_action[action][rng.integers(len(self.by_action[action]))]]
            dt *= rng.uniform(1 - self.augment.speed, 1 + self.augment.speed)
            end = rng.uniform(min(n * dt, take.duration_s), take.duration_s)
        else:
            rng = None
            take = self.takes[index // self.views]
            end = window_ends(take, self.views, dt, n)[index % self.views]
        sample = self.window(take, end, dt, rng)
        sample.update(verb=take.verb, noun=take.noun, id=take.id)
        return sample

    def window(self, take: Take, end_s: float, dt: float, rng: np.random.Generator | None) -> dict:
        """The sample of the window of `take` ending at `end_s` (instants `dt` apart), augmented when `rng`."""
        cfg = self.cfg
        t = window_instants(end_s, cfg.video_tokens, dt)
        idx = np.clip(np.floor(t * take.fps + 1e-6).astype(int), 0, len(take.frames) - 1)   # the frame shown at t
        frames = take.frames[idx]
        if rng is not None:
            frames = jitter(frames, rng, self.augment)
        v = np.stack([video_input(frames[k + 1], frames[k], cfg) for k in range(cfg.video_tokens)])
        if self._backend is None:
            self._backend = make_flow_backend(cfg.flow)
        gray = [to_gray(f) for f in frames]
        first = cfg.video_tokens - cfg.flow_tokens
        f = np.stack([flow_to_model_input(compute_flow(self._backend, gray[k], gray[k + 1], cfg), cfg)
                      for k in range(first, cfg.video_tokens)])
        if take.audio is None:
            a = np.zeros((cfg.audio_tokens, 1, cfg.n_mels, cfg.logmel_frames), np.float32)
        else:
            rate, width = cfg.audio_sample_rate, int(round(cfg.audio_window_s * cfg.audio_sample_rate))
            a = np.stack([window_to_model_input(_audio_window(take, end, width, rate), rate, cfg)
                          for end in t[1:][cfg.video_tokens - cfg.audio_tokens:]])
        return {"V": torch.from_numpy(v), "F": torch.from_numpy(f), "A": torch.from_numpy(a),
                "present": {"V": True, "F": True, "A": take.audio is not None}}


def _audio_window(take: Take, end_s: float, width: int, rate: int) -> np.ndarray:
    """`width` samples of the take's track ending at `end_s` (silence outside the track)."""
    stop = int(round((end_s + take.lead_s) * rate))
    out = np.zeros(width, np.float32)
    lo, hi = max(0, stop - width), min(take.audio.size, stop)
    if hi > lo:
        out[width - (stop - lo):width - (stop - hi)] = take.audio[lo:hi]
    return out


def take_features(take: Take, cfg: PreprocessConfig, side: int = 16) -> dict[str, np.ndarray]:
    """The baselines' features of a take, a few lines each: V the time-mean of its frames at side x side (RGB),
    F the mean absolute difference of grey frames 1 / sample_fps apart at side x side, A the mean log-mel over the
    take's 1 s windows (absent without a track)."""
    small = np.stack([cv2.resize(f, (side, side), interpolation=cv2.INTER_AREA) for f in take.frames]).astype(np.float32)
    gap = max(1, int(round(take.fps / cfg.sample_fps)))
    grey = small.mean(axis=3)
    diff = np.abs(grey[gap:] - grey[:-gap]).mean(axis=0) if len(grey) > gap else np.zeros((side, side), np.float32)
    out = {"V": small.mean(axis=0).ravel(), "F": diff.ravel()}
    if take.audio is not None:
        rate, width = cfg.audio_sample_rate, int(round(cfg.audio_window_s * cfg.audio_sample_rate))
        ends = np.arange(cfg.audio_window_s, take.duration_s + 1e-9, 0.25) if take.duration_s >= 1 else [take.duration_s]
        mels = [window_to_model_input(_audio_window(take, e, width, rate), rate, cfg)[0] for e in ends]
        out["A"] = np.mean([m.mean(axis=1) for m in mels], axis=0)
    return out
