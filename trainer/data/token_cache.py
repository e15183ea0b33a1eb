"""The frozen-extractor token cache: every sample of a dataset encoded once by the frozen extractors (in
batches, shared out over torchrun ranks) and kept on disk under the dataset's cache key."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from trainer import ckpt
from trainer import distributed as ddp
from trainer.data.loaders import make_loader, presence
from trainer.models import MODALITIES

Encode = Callable[[str, torch.Tensor], torch.Tensor]   # (modality, x [B, C, H, W]) -> tokens [B, D]


@torch.no_grad()
def encode_batches(encode: Encode, loader: DataLoader, dims: dict[str, int], desc: str,
                   show: bool) -> dict[str, torch.Tensor]:
    """Tokens of every sample `loader` yields: {V, F, A: [n, T, D] float16, present [n, 3], verb, noun, index},
    and the soft targets verb_t / noun_t [n, classes] where the samples have them (MovingDigits stream windows).

    A modality a sample lacks is not encoded; its tokens are zeros (the fusion never reads them).
    """
    parts: dict[str, list[torch.Tensor]] = {k: [] for k in (*MODALITIES, "present", "verb", "noun", "index")}
    for batch in tqdm(loader, desc=desc, mininterval=2, leave=False, disable=not show):
        for k in ("verb_t", "noun_t"):
            if k in batch:
                parts.setdefault(k, []).append(batch[k].float())
        present = presence(batch)
        for i, m in enumerate(MODALITIES):
            x = batch[m]
            tokens = torch.zeros(x.shape[0], x.shape[1], dims[m])
            rows = present[:, i] > 0
            if bool(rows.any()):
                sel = x[rows]
                tokens[rows] = encode(m, sel.flatten(0, 1)).float().cpu().reshape(sel.shape[0], sel.shape[1], -1)
            parts[m].append(tokens.half())
        parts["present"].append(present)
        for k in ("verb", "noun", "index"):
            parts[k].append(torch.as_tensor(batch[k]).long())
    return {k: torch.cat(v) for k, v in parts.items()}


def _merge(shards: list[dict[str, torch.Tensor]], n: int) -> dict[str, torch.Tensor]:
    """Rows of every rank's shard placed at their dataset index (a padded duplicate lands on itself)."""
    first = shards[0]
    out = {k: torch.zeros((n, *v.shape[1:]), dtype=v.dtype) for k, v in first.items() if k != "index"}
    for shard in shards:
        for k in out:
            out[k][shard["index"]] = shard[k]
    return out


def dataset_tokens(encode: Encode, dataset: Dataset, *, dims: dict[str, int], batch_size: int, workers: int,
                   desc: str, show: bool = True) -> dict[str, torch.Tensor]:
    """Tokens of every sample of `dataset` in dataset order, in this process alone (nothing cached)."""
    loader, _ = make_loader(dataset, ddp.DistInfo(), batch_size, shuffle=False, seed=0, workers=workers)
    return _merge([encode_batches(encode, loader, dims, desc, show=show)], len(dataset))


def cached_tokens(encode: Encode, dataset: Dataset, path: Path, info: ddp.DistInfo, *, dims: dict[str, int],
                  batch_size: int, workers: int, desc: str, show: bool = True) -> dict[str, torch.Tensor]:
    """Tokens of every sample of `dataset` in dataset order, computed once (each rank encodes its share)
    and kept at `path` (name it by `dataset.cache_key()`, which covers the samples' content); `show`: a
    progress bar (rank 0)."""
    done = ckpt.load(path)
    if done is not None:
        return done
    if not info.distributed:
        ckpt.save_atomic(dataset_tokens(encode, dataset, dims=dims, batch_size=batch_size, workers=workers,
                                        desc=desc, show=show), path)
        return ckpt.load(path)
    loader, _ = make_loader(dataset, info, batch_size, shuffle=False, seed=0, workers=workers)
    shard = encode_batches(encode, loader, dims, desc, show=show and info.is_main)
    part = path.with_name(f"{path.stem}.rank{info.rank}.pt")
    ckpt.save_atomic(shard, part)
    torch.distributed.barrier()
    if info.is_main:
        parts = [path.with_name(f"{path.stem}.rank{r}.pt") for r in range(info.world_size)]
        ckpt.save_atomic(_merge([ckpt.load(p) for p in parts], len(dataset)), path)
        for p in parts:
            p.unlink()
    torch.distributed.barrier()
    return ckpt.load(path)
