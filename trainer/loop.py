"""The one training loop: a run's state (`Run`: dataset, settings, output folder, rank) and `fit`, which every
stage and every dataset goes through (AdamW + one-cycle, per-epoch checkpoints that resume, alone or under
torchrun). A stage hands `fit` a step module (`step(batch, epoch) -> loss`, beside its loss:
`trainer.extractors.PretrainStep`, `trainer.teacher.FusionStep`, `trainer.students.MultimodalStep`) and its
batches (`sample_batches` over samples, `index_batches` over cached-token rows)."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset
from tqdm import tqdm

from edge.errors import ConfigError
from edge.preprocess import PreprocessConfig
from trainer import ckpt
from trainer import distributed as ddp
from trainer.config import TrainerConfig
from trainer.data.loaders import make_loader, per_rank_batch
from trainer.data.registry import MOVING_DIGITS, DatasetSpec, build_dataset


@dataclass
class Run:
    """Everything a stage needs: the dataset, the settings, where to write, and this process's rank."""

    spec: DatasetSpec
    cfg: TrainerConfig
    out: Path
    info: ddp.DistInfo
    train_split: str = "train"
    eval_split: str = "test"
    freeze_bn: bool = False
    pre: PreprocessConfig = field(default_factory=PreprocessConfig)
    seed: int = 0                   # model init, shuffles, masks, pre-training positions (a student seed)
    cache: Path | None = None       # rendered-clip cache root (MovingDigits-AV; default trainer.config.cache_root)
    progress: bool = True           # progress bars (off in the benchmark's side-by-side job processes)
    verbose: bool = True            # per-epoch log lines (off in crossval's many short trainings)
    loaded: dict = field(default_factory=dict, repr=False, compare=False)   # datasets built so far (shared by
    #                                                                         dataclasses.replace copies)

    def dataset(self, split: str, train: bool):
        """`split` of the run's dataset, built once per run (MovingDigits-AV: rendered once, held in memory)."""
        in_memory = self.spec.name == MOVING_DIGITS
        key = (split, None if in_memory else train)
        if key not in self.loaded:
            first = in_memory and self.info.distributed      # rank 0 renders, the others read its cache
            if first and not self.info.is_main:
                torch.distributed.barrier()
            self.loaded[key] = build_dataset(self.spec, split, train=train, data=self.cfg.data, pre=self.pre,
                                             cache=self.cache)
            if first and self.info.is_main:
                torch.distributed.barrier()
        return self.loaded[key]

    @property
    def tokens_per_modality(self) -> dict[str, int]:
        return {"V": self.pre.video_tokens, "F": self.pre.flow_tokens, "A": self.pre.audio_tokens}

    def log(self, message: str) -> None:
        if self.info.is_main and self.verbose:
            print(message, flush=True)


def connected_zero(module: nn.Module) -> torch.Tensor:
    """0 that depends on every parameter: the loss of a batch with nothing to learn from, so each rank
    still takes part in the step's gradient all-reduce."""
    return sum(p.sum() for p in module.parameters() if p.requires_grad) * 0.0


def weights_digest(module: nn.Module) -> str:
    """12 hex digits naming a module's parameter values (token caches and checkpoints record what made them)."""
    digest = hashlib.sha256(b"".join(p.detach().cpu().numpy().tobytes() for p in module.parameters()))
    return digest.hexdigest()[:12]


def fit(step: nn.Module, batches: Callable[[int], Iterable], n_batches: int, run: Run, *, epochs: int, lr: float,
        weight_decay: float, pct_start: float, ckpt_path: Path, desc: str, unit: str = "epoch") -> None:
    """AdamW + one-cycle over `epochs` of `batches(epoch)`; resumes from and checkpoints to `ckpt_path` (per
    epoch, or per `unit`: a pass over the data)."""
    step.to(run.info.device)
    opt = torch.optim.AdamW([p for p in step.parameters() if p.requires_grad], lr=lr, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=max(1, epochs * n_batches),
                                                pct_start=pct_start)
    parts = {"model": step, "opt": opt, "sched": sched}
    settings = {"lr": lr, "weight_decay": weight_decay, "pct_start": pct_start,
                **(step.settings() if hasattr(step, "settings") else {})}
    start = ckpt.resume(ckpt_path, parts, settings)
    if sched.total_steps != max(1, epochs * n_batches):
        raise ConfigError(f"{ckpt_path} was trained for {sched.total_steps} steps, this run has {epochs * n_batches} "
                          "(other batch size or epochs); resume only with the same settings, or use a new --out.")
    model = ddp.wrap(step, run.info, find_unused=True)
    for epoch in range(start, epochs):
        step.train()
        if run.freeze_bn:
            ddp.freeze_batchnorm(step)
        total = torch.zeros(2)
        for batch in tqdm(batches(epoch), total=n_batches, desc=f"{desc} {unit} {epoch + 1}/{epochs}", mininterval=2,
                          leave=False, disable=not (run.info.is_main and run.progress)):
            loss = model(batch, epoch)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += torch.tensor([float(loss.detach()), 1.0])
        total = ddp.all_reduce_sum(total, run.info)
        extra = step.epoch_summary() if hasattr(step, "epoch_summary") else ""
        run.log(f"{desc} {unit} {epoch + 1}/{epochs}: mean loss {total[0] / max(1.0, float(total[1])):.4f}{extra}")
        if run.info.is_main:
            ckpt.save_epoch(ckpt_path, epoch, parts, settings)
        if run.info.distributed:
            torch.distributed.barrier()
    step.eval()


def sample_batches(dataset, run: Run, view_of: Callable[[int], int]) -> tuple[Callable[[int], Iterable], int]:
    """`batches(epoch)` over a dataset, with TSN draw `view_of(epoch)`, and the number of batches per epoch."""
    loader, sampler = make_loader(dataset, run.info, run.cfg.batch_size, shuffle=True, seed=run.seed,
                                  workers=run.cfg.data.workers)

    def batches(epoch: int) -> Iterable:
        sampler.set_epoch(epoch)
        dataset.set_epoch(view_of(epoch))
        return loader

    return batches, len(loader)


def index_batches(n: int, run: Run) -> tuple[Callable[[int], Iterable], int]:
    """`batches(epoch)` of row indices 0..n-1 (cached tokens), shared out over the ranks."""
    rows = TensorDataset(torch.arange(n))
    sampler = ddp.sampler(rows, run.info, shuffle=True, seed=run.seed, drop_last=True)
    loader = DataLoader(rows, batch_size=per_rank_batch(run.cfg.batch_size, run.info), sampler=sampler,
                        drop_last=True)

    def batches(epoch: int) -> Iterable:
        sampler.set_epoch(epoch)
        return (b[0] for b in loader)

    return batches, len(loader)
