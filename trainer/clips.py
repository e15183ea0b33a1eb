"""Render a MovingDigits-AV split ONCE into a disk cache of model-input tensors, then train from memory.

Rendering (frames, DIS flow, log-mel) dominates the cost of a clip, and every training of the benchmark
reads the same clips, so each split is materialized in chunks under the cache folder (a killed run
keeps its finished chunks) and loaded as float16 tensors (about 0.4 MB per clip).
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from tqdm import tqdm

from trainer.models import MODALITIES

REPO = Path(__file__).resolve().parent.parent
CHUNK = 128
# Code that decides what a clip contains: a change to it invalidates the cache.
_RENDER_CODE = ("edge/moving_digits", "edge/preprocess", "trainer/data")


@dataclass
class ClipSet:
    """Model inputs of n clips: V [n,T,3,S,S], F [n,T,2,S,S], A [n,T,1,M,W] (float16) and labels."""

    V: torch.Tensor
    F: torch.Tensor
    A: torch.Tensor
    verb: torch.Tensor
    noun: torch.Tensor

    def __len__(self) -> int:
        return int(self.verb.shape[0])

    def inputs(self, idx: torch.Tensor | slice) -> dict[str, torch.Tensor]:
        """float32 model inputs of the clips at `idx`."""
        return {m: getattr(self, m)[idx].float() for m in MODALITIES}


def code_version() -> str:
    digest = hashlib.sha256()
    for rel in _RENDER_CODE:
        for path in sorted((REPO / rel).rglob("*.py")):
            digest.update(str(path.relative_to(REPO)).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def cache_key(spec: dict[str, Any]) -> str:
    blob = json.dumps({**spec, "code": code_version()}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _save_npz_atomic(path: Path, **arrays: np.ndarray) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".npz", dir=path.parent)
    os.close(fd)
    try:
        np.savez(tmp, **arrays)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def materialize(make_dataset: Callable[[], torch.utils.data.Dataset], spec: dict[str, Any], cache_dir: Path,
                *, workers: int = 0, desc: str = "clips") -> ClipSet:
    """Render every clip of `make_dataset()` into `cache_dir` (chunks reused by later runs) and load them.

    `spec` describes the clips completely (split, count, seed, levels, preprocessing, data source); it
    names the cache folder together with a hash of the rendering code.
    """
    folder = Path(cache_dir) / f"{spec.get('name', 'clips')}-{cache_key(spec)}"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "spec.json").write_text(json.dumps(spec, indent=1, sort_keys=True, default=str))
    dataset = make_dataset()
    n = len(dataset)
    chunks = [(s, min(s + CHUNK, n)) for s in range(0, n, CHUNK)]
    todo = [c for c in chunks if not (folder / f"chunk_{c[0]:07d}.npz").is_file()]
    if todo:
        order = [i for s, e in todo for i in range(s, e)]
        loader = torch.utils.data.DataLoader(torch.utils.data.Subset(dataset, order), batch_size=None,
                                             num_workers=workers, prefetch_factor=4 if workers else None)
        items = iter(loader)
        with tqdm(total=len(order), desc=f"render {desc}", unit="clip", mininterval=2) as bar:
            for s, e in todo:
                got = [next(items) for _ in range(s, e)]
                arrays = {m: np.stack([np.asarray(g[m], dtype=np.float16) for g in got]) for m in MODALITIES}
                arrays.update({k: np.asarray([int(g[k]) for g in got], dtype=np.int64) for k in ("verb", "noun")})
                _save_npz_atomic(folder / f"chunk_{s:07d}.npz", **arrays)
                bar.update(e - s)
    parts = [np.load(folder / f"chunk_{s:07d}.npz") for s, _ in chunks]
    cat = {k: torch.from_numpy(np.concatenate([p[k] for p in parts])) for k in (*MODALITIES, "verb", "noun")}
    return ClipSet(**cat)
