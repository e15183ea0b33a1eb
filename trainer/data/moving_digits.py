"""MovingDigits-AV clips as model inputs, built only with `edge.preprocess` (docs/DESIGN.md):

- V: the 8 frames `uniform_indices` picks from the 2 s clip, resized (prepare_frame) and normalised;
- F: flow of each sampled frame against the previous sampled one, on the model-size gray frames; for
  token 0 the previous one is the last lead-in frame (the frame the live 4 fps sampler took 1/4 s earlier);
- A: log-mel of the 1 s windows ending at 1.0, 1.25, ..., 2.0 s after the clip start.

Only the 9 frames a sample needs are rendered. `materialize` renders a dataset once (in worker processes)
and keeps it in a cache keyed by everything that decides its content, outside the repository.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
import zlib
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

import edge.moving_digits
import edge.preprocess
from edge.errors import ConfigError
from edge.moving_digits.config import NuisanceLevels, load_config
from edge.moving_digits.render import NOUNS, VERBS, plan_clip, render_audio, render_frames
from edge.moving_digits.sources import load_sources
from edge.moving_digits.splits import Split, make_split
from edge.preprocess import (PreprocessConfig, compute_flow, flow_to_model_input, make_flow_backend,
                             normalize_frame, prepare_frame, to_gray, uniform_indices, window_to_model_input)

RENDER_FPS = 30
RENDER_SIZE = 128
N_ACTIONS = len(VERBS) * len(NOUNS)


def default_cache_dir() -> Path:
    """$KARMMA_CACHE_DIR, else ~/.cache/karmma (never inside the repository)."""
    return Path(os.environ.get("KARMMA_CACHE_DIR", Path.home() / ".cache" / "karmma")) / "moving_digits"


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


@lru_cache(maxsize=1)
def _source_fingerprint() -> str:
    """Hash of the code that decides a clip's content (the renderer, the sources, the preprocessing):
    a cache is stale when it changes; edits elsewhere (command line, sessions) keep caches valid.
    Taken once, at import, so it describes the code this process runs even if the files change later."""
    h = hashlib.sha256()
    renderer = Path(edge.moving_digits.__file__).parent
    for f in [renderer / "render.py", renderer / "sources.py",
              *sorted(Path(edge.preprocess.__file__).parent.glob("*.py"))]:
        h.update(f.read_bytes())
    return h.hexdigest()[:16]


_source_fingerprint()           # fixed now, for the code this process has imported


class MovingDigitsDataset(Dataset):
    """`n_clips` clips of one split; item i is the same for the same (seed, split, i) in any process.

    Labels are balanced: item i has action i mod 80, i.e. verb (i mod 80) // 10 and noun i mod 10.
    """

    def __init__(self, split: str | Split = "train", n_clips: int = 1000, seed: int = 0,
                 data_root: Path | None = None, pre: PreprocessConfig | None = None,
                 levels: NuisanceLevels | None = None) -> None:
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

    def render_item(self, index: int) -> dict:
        """Item `index` in compact numpy form: frames uint8 [T, S, S, 3] (before normalisation), F, A, labels."""
        if not 0 <= index < self.n_clips:
            raise IndexError(f"clip {index} is out of range for a dataset of {self.n_clips} clips.")
        pre = self.pre
        verb, noun = self.labels(index)
        plan = plan_clip(self.sources, self.item_rng(index), verb, noun, self.levels, duration_s=pre.window_s,
                         lead_in_s=1.0 / pre.sample_fps, fps=RENDER_FPS, size=RENDER_SIZE,
                         sample_rate=pre.audio_sample_rate)
        sampled, prev = sample_instants(plan.n_frames - plan.lead_in_frames, plan.lead_in_frames, pre)
        needed = np.unique(np.concatenate([sampled, prev]))
        small = dict(zip(needed.tolist(), (prepare_frame(f, pre) for f in render_frames(plan, needed))))
        gray = {i: to_gray(f) for i, f in small.items()}
        if self._flow is None:
            self._flow = make_flow_backend(pre.flow)
        flow = np.stack([flow_to_model_input(compute_flow(self._flow, gray[p], gray[s], pre), pre)
                         for p, s in zip(prev.tolist(), sampled.tolist())])
        audio = render_audio(plan)
        mel = np.stack([window_to_model_input(audio[a:b], pre.audio_sample_rate, pre)
                        for a, b in audio_windows(plan.lead_in_samples, pre)])
        return {"frames": np.stack([small[i] for i in sampled.tolist()]), "F": flow, "A": mel,
                "verb": verb, "noun": noun}

    def __getitem__(self, index: int) -> dict:
        item = self.render_item(index)
        return {"V": torch.from_numpy(np.stack([normalize_frame(f, self.pre) for f in item["frames"]])),
                "F": torch.from_numpy(item["F"]), "A": torch.from_numpy(item["A"]),
                "verb": item["verb"], "noun": item["noun"]}

    def cache_key(self) -> str:
        """Hash of everything that decides the items: split, size, seed, data, preprocessing, levels, code."""
        spec = {"split": self.split.key(), "n_clips": self.n_clips, "seed": self.seed,
                "source": self.sources.description, "skipped": self.sources.skipped,
                "pre": self.pre.to_dict(), "levels": self.levels.to_dict(), "fps": RENDER_FPS,
                "size": RENDER_SIZE, "code": _source_fingerprint()}
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


_ARRAYS = ("frames", "F", "A", "verb", "noun")


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
    code = _source_fingerprint()
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
    """Every item of `dataset` stacked: V [N,T,3,S,S], F [N,T,2,S,S], A [N,5,1,64,98] float32, verb, noun int64.

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
    v = np.empty((frames.shape[0], frames.shape[1], 3, frames.shape[2], frames.shape[3]), np.float32)
    for i in range(frames.shape[0]):      # numpy, not per-item torch copies (their threads stall a busy CPU)
        for t in range(frames.shape[1]):
            v[i, t] = normalize_frame(frames[i, t], dataset.pre)
    return {"V": torch.from_numpy(v), "F": torch.from_numpy(np.array(arrays["F"])),
            "A": torch.from_numpy(np.array(arrays["A"])), "verb": torch.from_numpy(np.array(arrays["verb"], np.int64)),
            "noun": torch.from_numpy(np.array(arrays["noun"], np.int64))}
