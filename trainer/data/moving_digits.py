"""MovingDigits-AV clips as model inputs, built only with `edge.preprocess` (docs/DESIGN.md):

- V: the 8 frames `uniform_indices` picks from the 2 s clip, resized (prepare_frame) and normalised;
- F: flow of each sampled frame against the previous sampled one, on the model-size gray frames; for
  token 0 the previous one is the last lead-in frame (the frame the live 4 fps sampler took 1/4 s earlier);
- A: log-mel of the 1 s windows ending at 1.0, 1.25, ..., 2.0 s after the clip start.
V is `video_input` of each sampled frame and the previous sampled one (the frame flow pairs it with).

Training splits may also imitate the live stream (`StreamWindows`, the trainer's `data.stream`): a share of the
items are 2 s windows cut at a random offset from a three-action session (across action boundaries and idle
gaps), with soft targets by overlap (the share of the window each action covers; the idle share spread
uniformly over the classes, so idle windows teach low confidence rather than a made-up class); flow at the
resolutions the live shedder uses; and the inputs the health monitor marks only after a moment (a frozen or
black last frame, audio that has just gone silent) or a token ring refilling after a reset.

Only the 9 frames a sample needs are rendered. `materialize` renders a dataset once (in worker processes)
and keeps it in a cache keyed by everything that decides its content (the code by explicit versions,
`items_version`), outside the repository.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from edge.errors import ConfigError
from edge.live.config import HealthConfig
from edge.moving_digits.config import NuisanceLevels, load_config
from edge.moving_digits.render import NOUNS, RENDER_VERSION, VERBS, plan_clip, render_audio, render_frames
from edge.moving_digits.session import SessionPlan, plan_session
from edge.moving_digits.sources import load_sources
from edge.moving_digits.splits import Split, make_split
from edge.preprocess import (PREPROCESS_VERSION, PreprocessConfig, compute_flow, flow_to_model_input, make_flow_backend,
                             prepare_frame, to_gray, uniform_indices, video_input, window_to_model_input)
from edge.preprocess.config import _from_mapping

RENDER_FPS = 30
RENDER_SIZE = 128
N_ACTIONS = len(VERBS) * len(NOUNS)


def default_cache_dir() -> Path:
    """The rendered clips' folder under the one cache root (trainer.config.cache_root: $KARMMA_CACHE, else
    ~/.cache/karmma; never inside the repository)."""
    from trainer.config import cache_root

    return cache_root() / "moving_digits"


def sample_instants(clip_frames: int, lead_in_frames: int, pre: PreprocessConfig) -> tuple[np.ndarray, np.ndarray]:
    """Frame numbers (lead-in included) of the sampled frames and of each one's flow partner."""
    sampled = lead_in_frames + uniform_indices(clip_frames, pre.video_tokens)
    return sampled, np.concatenate([[lead_in_frames - 1], sampled[:-1]])


def audio_windows(lead_in_samples: int, pre: PreprocessConfig) -> list[tuple[int, int]]:
    """(start, stop) samples of each audio token: 1 s windows ending at window_s - (T-1-j) * hop s."""
    rate, n = pre.audio_sample_rate, pre.audio_window_samples
    ends = [lead_in_samples + int(round((pre.window_s - (pre.audio_tokens - 1 - j) * pre.audio_hop_s) * rate))
            for j in range(pre.audio_tokens)]
    return [(e - n, e) for e in ends]


@dataclass(frozen=True)
class StreamWindows:
    """How training items imitate what the live loop feeds the model (all off by default)."""

    fraction: float = 0.0                     # share of items cut from a session at a random offset
    gap_s: tuple = (0.2, 2.5)                 # idle gaps between the session's actions
    flow_scales: tuple = (1.0,)               # flow resolutions (the shedder's ladder) ...
    flow_scale_probs: tuple = (1.0,)          # ... and how often each is drawn
    warmup_prob: float = 0.0                  # per modality: the window starts as a ring refilling after a reset
    fault_prob: float = 0.0                   # a frozen / black last frame or audio just gone silent

    def __post_init__(self) -> None:
        if not 0 <= self.fraction <= 1 or not 0 <= self.warmup_prob <= 1 or not 0 <= self.fault_prob <= 1:
            raise ConfigError("data.stream fraction, warmup_prob and fault_prob must be in [0, 1].")
        if len(self.flow_scales) != len(self.flow_scale_probs) or not self.flow_scales \
                or abs(sum(self.flow_scale_probs) - 1) > 1e-6 or not all(0 < x <= 1 for x in self.flow_scales):
            raise ConfigError("data.stream flow_scales (each in (0, 1]) and flow_scale_probs (summing to 1) must "
                              "have the same length.")
        if len(self.gap_s) != 2 or not 0 <= self.gap_s[0] <= self.gap_s[1]:
            raise ConfigError(f"data.stream gap_s must be [low, high] with 0 <= low <= high, got {self.gap_s}.")

    @classmethod
    def from_dict(cls, data) -> "StreamWindows":
        return _from_mapping(cls, data, "data.stream")

    @property
    def active(self) -> bool:
        return self != StreamWindows()


_HEALTH = HealthConfig()        # the live health monitor's defaults: when a fault is marked, when a modality is back


def overlap_targets(segments, start_s: float, end_s: float, n_verb: int, n_noun: int) -> tuple[np.ndarray, np.ndarray]:
    """Soft verb / noun targets of the window [start_s, end_s): each segment's share of it, the idle share
    spread uniformly."""
    verb, noun = np.zeros(n_verb, np.float32), np.zeros(n_noun, np.float32)
    covered = 0.0
    for seg in segments:
        share = max(0.0, min(end_s, seg.end_s) - max(start_s, seg.start_s)) / (end_s - start_s)
        verb[seg.verb] += share
        noun[seg.noun] += share
        covered += share
    idle = max(0.0, 1.0 - covered)
    return verb + idle / n_verb, noun + idle / n_noun


# Bump when a change here alters an item (which frames are sampled, how flow and log-mel windows are taken).
ITEM_VERSION = 1


def items_version() -> str:
    """What decides a cached item's content besides its spec: the renderer's, the preprocessing's and this module's
    explicit versions (not their source bytes, so a comment or a refactor keeps caches valid)."""
    return f"render{RENDER_VERSION}-pre{PREPROCESS_VERSION}-items{ITEM_VERSION}"


class MovingDigitsDataset(Dataset):
    """`n_clips` clips of one split; item i is the same for the same (seed, split, i) in any process.

    Labels are balanced: item i has action i mod 80, i.e. verb (i mod 80) // 10 and noun i mod 10.
    """

    def __init__(self, split: str | Split = "train", n_clips: int = 1000, seed: int = 0,
                 data_root: Path | None = None, pre: PreprocessConfig | None = None,
                 levels: NuisanceLevels | None = None, stream: StreamWindows | None = None) -> None:
        config = load_config() if isinstance(split, str) or levels is None else None
        self.split = make_split(split, splits=config.splits) if isinstance(split, str) else split
        if n_clips <= 0:
            raise ConfigError(f"n_clips must be positive, got {n_clips}.")
        self.n_clips, self.seed = int(n_clips), int(seed)
        self.pre = pre or PreprocessConfig()
        if self.pre.flow_tokens != self.pre.video_tokens:
            raise ConfigError("MovingDigits gives one flow token per video token; flow_tokens must equal video_tokens.")
        self.levels = levels if levels is not None else config.levels
        self.sources = load_sources(data_root, list(self.split.speakers), self.split.images,
                                    self.pre.audio_sample_rate)
        self._split_id = zlib.crc32(self.split.key().encode())
        self._flow = None
        self.stream = stream or StreamWindows()

    def __len__(self) -> int:
        return self.n_clips

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_flow"] = None          # OpenCV flow objects do not pickle: each worker makes its own
        return state

    def labels(self, index: int) -> tuple[int, int]:
        verb, noun = divmod(index % N_ACTIONS, len(NOUNS))
        return verb, noun

    def item_rng(self, index: int) -> np.random.Generator:
        """The generator that draws every random choice of item `index`."""
        return np.random.default_rng([self.seed, self._split_id, index])

    def is_stream_window(self, index: int) -> bool:
        """Whether item `index` is cut from a session (drawn per item, independent of its label)."""
        f = self.stream.fraction
        return f > 0 and np.random.default_rng([self.seed, self._split_id, index, 1]).random() < f

    def render_item(self, index: int) -> dict:
        """Item `index` in compact numpy form: frames uint8 [T + 1, S, S, 3] (the frame before the first
        sampled one, then the sampled ones; before normalisation), F, A, labels and soft targets."""
        if not 0 <= index < self.n_clips:
            raise IndexError(f"clip {index} is out of range for a dataset of {self.n_clips} clips.")
        pre, rng = self.pre, self.item_rng(index)
        verb, noun = self.labels(index)
        if self.is_stream_window(index):
            session, first, window_start_s = self._session_window(rng, verb, noun)
            targets = overlap_targets(session.segments, window_start_s, window_start_s + pre.window_s,
                                      len(VERBS), len(NOUNS))
            audio_from = int(round(first / session.fps * pre.audio_sample_rate))
            render, audio, lead = session.frames, session.audio(), first
        else:
            plan = plan_clip(self.sources, rng, verb, noun, self.levels, duration_s=pre.window_s,
                             lead_in_s=1.0 / pre.sample_fps, fps=RENDER_FPS, size=RENDER_SIZE,
                             sample_rate=pre.audio_sample_rate)
            targets = (np.eye(len(VERBS), dtype=np.float32)[verb], np.eye(len(NOUNS), dtype=np.float32)[noun])
            render, audio, lead = (lambda idx: render_frames(plan, idx)), render_audio(plan), plan.lead_in_frames
            audio_from = plan.lead_in_samples
        sampled, prev = sample_instants(int(round(pre.window_s * RENDER_FPS)), lead, pre)
        frames = [prepare_frame(f, pre) for f in render(np.concatenate([prev[:1], sampled]))]
        self._fault(rng, frames, audio, audio_from)
        if self._flow is None:
            self._flow = make_flow_backend(pre.flow)
        scale = float(rng.choice(self.stream.flow_scales, p=self.stream.flow_scale_probs))
        gray = [to_gray(f) for f in frames]
        flow = np.stack([flow_to_model_input(compute_flow(self._flow, a, b, pre, scale=scale), pre)
                         for a, b in zip(gray[:-1], gray[1:])])
        mel = np.stack([window_to_model_input(audio[a:b], pre.audio_sample_rate, pre)
                        for a, b in audio_windows(audio_from, pre)])
        item = {"frames": np.stack(frames), "F": flow, "A": mel, "verb": verb, "noun": noun,
                "verb_t": targets[0], "noun_t": targets[1]}
        self._warm_up(rng, item)
        return item

    def _session_window(self, rng: np.random.Generator, verb: int, noun: int) -> tuple[SessionPlan, int, float]:
        """A session (random action, gap, this item's action, gap, random action) and a window over it that
        overlaps this item's action anywhere from barely to wholly: (session, first window frame, start s)."""
        pre, gaps = self.pre, self.stream.gap_s
        other = [(int(rng.integers(len(VERBS))), int(rng.integers(len(NOUNS)))) for _ in range(2)]
        session = plan_session(self.sources, rng, [other[0], (verb, noun), other[1]],
                               [0.3, float(rng.uniform(*gaps)), float(rng.uniform(*gaps)), 0.3], self.levels,
                               duration_s=pre.window_s, lead_in_s=1.0 / pre.sample_fps, fps=RENDER_FPS,
                               size=RENDER_SIZE, sample_rate=pre.audio_sample_rate)
        mine = session.segments[1]
        window = int(round(pre.window_s * RENDER_FPS))
        lo = int(round((mine.start_s + 0.25) * RENDER_FPS))
        hi = min(session.n_frames, int(round((mine.end_s + pre.window_s - 0.25) * RENDER_FPS)))
        end = int(rng.integers(lo, hi + 1))
        return session, end - window, (end - window) / RENDER_FPS

    def _fault(self, rng: np.random.Generator, frames: list[np.ndarray], audio: np.ndarray, audio_from: int) -> None:
        """In place, with probability fault_prob: what reaches the model before the health monitor marks a
        fault: the last sampled frame frozen (a copy of the one before) or black, or the last 0.35 s silent."""
        if rng.random() >= self.stream.fault_prob:
            return
        kind = int(rng.integers(3))
        if kind == 0:
            frames[-1] = frames[-2].copy()
        elif kind == 1:
            frames[-1] = np.zeros_like(frames[-1])
        else:
            end = audio_from + int(round(self.pre.window_s * self.pre.audio_sample_rate))
            audio[max(0, end - int(round(_HEALTH.silent_s * self.pre.audio_sample_rate))):end] = 0.0

    def _warm_up(self, rng: np.random.Generator, item: dict) -> None:
        """In place, per modality with probability warmup_prob: the window a token ring gives while it refills
        after a reset (the live ring repeats its oldest token in the slots not yet filled)."""
        p = self.stream.warmup_prob
        for m, key in (("V", "frames"), ("F", "F"), ("A", "A")):
            if p <= 0 or rng.random() >= p:
                continue
            x = item[key]
            offset = 1 if m == "V" else 0               # frames[0] is the frame before the first sampled one
            tokens = len(x) - offset
            k = int(rng.integers(1, tokens - _HEALTH.min_tokens[m] + 1))      # tokens not yet refilled
            if m == "V":                # the oldest token after a reset had no previous frame: its diff is 0
                x[:offset + k + 1] = x[offset + k]
            else:
                x[offset:offset + k] = x[offset + k]

    def __getitem__(self, index: int) -> dict:
        item = self.render_item(index)
        return {"V": torch.from_numpy(video_inputs(item["frames"], self.pre)),
                "F": torch.from_numpy(item["F"]), "A": torch.from_numpy(item["A"]),
                "verb": item["verb"], "noun": item["noun"],
                "verb_t": torch.from_numpy(item["verb_t"]), "noun_t": torch.from_numpy(item["noun_t"])}

    def cache_key(self) -> str:
        """Hash of everything that decides the items: split, size, seed, data, preprocessing, levels, code."""
        spec = {"split": self.split.key(), "n_clips": self.n_clips, "seed": self.seed,
                "source": self.sources.description, "skipped": self.sources.skipped,
                "pre": self.pre.to_dict(), "levels": self.levels.to_dict(), "fps": RENDER_FPS,
                "size": RENDER_SIZE, "code": items_version(),
                **({"stream": asdict(self.stream)} if self.stream.active else {})}
        return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:20]


class _Compact(Dataset):
    def __init__(self, dataset: MovingDigitsDataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict:
        return self.dataset.render_item(index)


def _stack(items: list[dict]) -> dict:
    return {k: np.stack([it[k] for it in items]) for k in items[0]}


_ARRAYS = ("frames", "F", "A", "verb", "noun", "verb_t", "noun_t")


def video_inputs(frames: np.ndarray, pre: PreprocessConfig) -> np.ndarray:
    """[T + 1, S, S, 3] uint8 (the frame before the first sampled one first) -> V [T, C, S, S] float32."""
    return np.stack([video_input(frames[t + 1], frames[t], pre) for t in range(len(frames) - 1)])


def _render_all(dataset: MovingDigitsDataset, workers: int, progress: bool) -> dict[str, np.ndarray]:
    loader = DataLoader(_Compact(dataset), batch_size=16, num_workers=workers, collate_fn=_stack)
    parts: dict[str, list] = {k: [] for k in _ARRAYS}
    t0 = time.perf_counter()
    with tqdm(total=len(dataset), desc=f"render {dataset.split.name} ({dataset.sources.source})", unit="clip",
              disable=not progress) as bar:
        for batch in loader:
            for k in _ARRAYS:
                parts[k].append(batch[k])
            bar.update(len(batch["verb"]))
    out = {k: np.concatenate(v) for k, v in parts.items()}
    out["clips_per_s"] = np.array(len(dataset) / (time.perf_counter() - t0))
    return out


def _write_cache(folder: Path, dataset: MovingDigitsDataset, arrays: dict[str, np.ndarray]) -> None:
    """Write atomically (a temporary folder renamed into place), then drop caches of older renderer code."""
    tmp = folder.with_name(folder.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for k in _ARRAYS:
        np.save(tmp / f"{k}.npy", arrays[k])
    code = items_version()
    (tmp / "meta.json").write_text(json.dumps({"split": dataset.split.key(), "n_clips": len(dataset),
                                               "seed": dataset.seed, "source": dataset.sources.description,
                                               "code": code, "clips_per_s": float(arrays["clips_per_s"])}))
    try:
        tmp.rename(folder)
    except OSError:             # another process finished the same cache first
        shutil.rmtree(tmp, ignore_errors=True)
    for other in folder.parent.glob("*/meta.json"):       # rendered by code that no longer exists: never hit again
        try:
            stale = json.loads(other.read_text()).get("code") != code
        except (OSError, ValueError):
            continue
        if stale:
            shutil.rmtree(other.parent, ignore_errors=True)


def materialize(dataset: MovingDigitsDataset, workers: int = 0, cache_dir: Path | None = None,
                use_cache: bool = True, progress: bool = True) -> dict[str, torch.Tensor]:
    """Every item of `dataset` stacked: V [N,T,C,S,S], F [N,T,2,S,S], A [N,5,1,64,98] float32, verb, noun int64.

    Rendered once in `workers` processes, then kept under `cache_dir` (default: default_cache_dir()) in a
    folder named by `dataset.cache_key()` (~0.5 MB per clip; writing one removes the caches of older renderer
    code there); values equal `dataset[i]` exactly. About 0.8 MB per clip in memory.
    """
    folder = Path(cache_dir or default_cache_dir()) / dataset.cache_key()
    if use_cache and (folder / "meta.json").is_file():
        arrays = {k: np.load(folder / f"{k}.npy", mmap_mode="r") for k in _ARRAYS}
    else:
        arrays = _render_all(dataset, workers, progress)
        if use_cache:
            _write_cache(folder, dataset, arrays)
    frames = arrays["frames"]
    pre = dataset.pre
    v = np.empty((frames.shape[0], frames.shape[1] - 1, pre.video_channels, frames.shape[2], frames.shape[3]),
                 np.float32)
    for i in range(frames.shape[0]):      # numpy, not per-item torch copies (their threads stall a busy CPU)
        v[i] = video_inputs(frames[i], pre)
    return {"V": torch.from_numpy(v), "F": torch.from_numpy(np.array(arrays["F"])),
            "A": torch.from_numpy(np.array(arrays["A"])), "verb": torch.from_numpy(np.array(arrays["verb"], np.int64)),
            "noun": torch.from_numpy(np.array(arrays["noun"], np.int64)),
            "verb_t": torch.from_numpy(np.array(arrays["verb_t"])), "noun_t": torch.from_numpy(np.array(arrays["noun_t"]))}
