"""The one training path: `python -m trainer teacher | student | benchmark` train the teacher and the students
(Baseline, Baseline w/ δ, KARMMA_S) on any dataset (trainer.data.registry; MovingDigits-AV from clips held in memory),
read in batches by one loop (`fit`), alone or under `torchrun --nproc_per_node=N` (DistributedDataParallel,
rank-0-only logs and checkpoints). A stage differs only in its model, its loss (a `...Step` module) and its data.

Teacher: (1) the three extractors pre-trained on their modalities' labels, `pretrain_positions` passes over
the data per epoch for all three (one frame / window per sample and pass), then frozen; (2) their tokens cached per split, keyed by the dataset's cache_key()
(training samples change with the TSN draw, so `teacher.token_views` draws of the train split are
cached and fusion epoch e reads draw e mod views); (3) the fusion trained on the cached tokens; (4) optionally
(`teacher.end_to_end_epochs`) extractors and fusion trained together on whole samples, and the tokens cached again.
Student: a unimodal warm start of its encoders (per seed, shared by that seed's trainings), then one of MODES:
Baseline (CE, no dropout, missing modalities fed as zeros), Baseline w/ δ (modality dropout, learned
missing-modality tokens, CE) or KARMMA_S (w/ δ + KD from the teacher on the same modality subset (a
`student.kd_all` share of it from the teacher on all the sample's modalities instead), computed
from the teacher's cached tokens of the very samples the student sees, plus token KD toward the teacher extractors'
tokens for the modalities in `student.token_kd`). Modality masks are the random drop
ANDed with what each sample has.

Every stage checkpoints per epoch (rank 0, atomically) and resumes, so `student` after `teacher` with the
same --out reuses the teacher. With --freeze-bn (BatchNorm on running statistics), dropout 0 and InfoNCE off (its
negatives are each rank's own batch), N processes train the same weights as one, up to floating-point noise:
masks, TSN offsets and pre-training positions are drawn per sample from (seed, epoch, index), never from a rank's
own generator, and every loader drops the samples that do not fill a whole global batch.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset
from tqdm import tqdm

from edge.errors import ConfigError
from edge.preprocess import PreprocessConfig
from trainer import ckpt
from trainer import distributed as ddp
from trainer.augment import mask_spectrograms
from trainer.config import EvalConfig, TrainerConfig, token_kd_weights
from trainer.data.loaders import presence
from trainer.data.registry import MOVING_DIGITS, DatasetSpec, build_dataset
from trainer.evaluation import drop_curve, subset_table
from trainer.export import export_bundle
from trainer.extractors import PRETRAIN_HEADS, pretrain_heads, pretrain_loss
from trainer.masks import sample_drop
from trainer.models import MODALITIES, Fusion, MultimodalModel
from trainer.data.loaders import make_loader, per_rank_batch
from trainer.data.token_cache import cached_tokens
from trainer.students import MODES, encode_present, student_config, student_loss, token_kd_loss
from trainer.teacher import build_extractors, fusion_loss, teacher_model_config


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


def _connected_zero(module: nn.Module) -> torch.Tensor:
    """0 that depends on every parameter: the loss of a batch with nothing to learn from, so each rank
    still takes part in the step's gradient all-reduce."""
    return sum(p.sum() for p in module.parameters() if p.requires_grad) * 0.0


class PretrainStep(nn.Module):
    """Loss of one batch for pre-training the three encoders on single frames / windows of their own modality:
    one per sample and pass, at a position drawn from (seed, pass, index, modality). Frames of one step come
    from as many different samples (on MovingDigits, 3 frames of each of 10 clips per step learned far slower
    than 1 frame of each of 32 clips, for as many frames and steps: train A noun 12 vs 21 %).

    A modality's loss is the mean over the samples of the GLOBAL batch that have it: each rank's share is
    weighted by its own count (ranks can hold different numbers of samples with audio), which keeps N
    processes equal to one.
    """

    def __init__(self, encoders: nn.ModuleDict, n_classes: dict[str, int], seed: int, info: ddp.DistInfo) -> None:
        super().__init__()
        self.encoders = encoders
        self.heads = nn.ModuleDict({m: pretrain_heads(encoders[m], m, n_classes) for m in MODALITIES})
        self.seed, self.info = seed, info
        self.tally = torch.zeros(len(MODALITIES), 2)     # per modality: first head right, frames seen (this epoch)

    def epoch_summary(self) -> str:
        """Train accuracy of each encoder's first pre-training head this epoch (all ranks together)."""
        tally, self.tally = ddp.all_reduce_sum(self.tally, self.info), torch.zeros_like(self.tally)
        return ", train " + " ".join(f"{m} {PRETRAIN_HEADS[m][0]} {100 * hits / max(1.0, float(seen)):.1f}%"
                                     for m, (hits, seen) in zip(MODALITIES, tally.tolist()) if seen)

    def forward(self, batch: dict, epoch: int) -> torch.Tensor:
        device = next(self.parameters()).device
        present, index = presence(batch).cpu(), batch["index"].cpu()
        local = present.sum(0)
        weight = local * self.info.world_size / ddp.all_reduce_sum(local, self.info).clamp(min=1)
        loss = _connected_zero(self)
        for i, m in enumerate(MODALITIES):
            rows = torch.nonzero(present[:, i] > 0).flatten()
            if not len(rows):
                continue
            steps = batch[m].shape[1]
            pos = torch.as_tensor([int(np.random.default_rng([self.seed, epoch, int(index[r]), i]).integers(steps))
                                   for r in rows])
            sample = rows
            x = batch[m][sample.to(batch[m].device), pos.to(batch[m].device)].to(device)
            labels = {h: targets(batch, h).cpu()[sample].to(device) for h in self.heads[m]}
            part, hits = pretrain_loss(self.encoders[m], self.heads[m], m, x, labels)
            loss = loss + float(weight[i]) * part
            self.tally[i] += torch.tensor([float(hits), float(len(sample))])
        return loss


class FusionStep(nn.Module):
    """Loss of one batch of cached-token rows for the teacher's fusion."""

    def __init__(self, fusion: Fusion, views: list[dict[str, torch.Tensor]], run: Run) -> None:
        super().__init__()
        self.fusion, self.views, self.run = fusion, views, run

    def settings(self) -> dict:
        """What shapes this loss besides the tensors (a checkpoint resumes only under the same)."""
        cfg = self.run.cfg.teacher
        infonce = {"infonce_weight": cfg.infonce_weight, "infonce_tau": cfg.infonce_tau} if cfg.infonce else {}
        return {"p_drop": cfg.p_drop, "dropout": cfg.dropout, "token_views": len(self.views), "infonce": cfg.infonce,
                **infonce}

    def forward(self, index: torch.Tensor, epoch: int) -> torch.Tensor:
        cfg, view = self.run.cfg.teacher, self.views[epoch % len(self.views)]
        device, index = self.run.info.device, index.cpu()
        mask = _mask(index, view["present"][index], cfg.p_drop, self.run.seed, epoch)
        tokens = [view[m][index].float().to(device) for m in MODALITIES]
        return fusion_loss(self.fusion, tokens, mask.to(device), targets(view, "verb")[index].to(device),
                           targets(view, "noun")[index].to(device), cfg)


class StudentStep(nn.Module):
    """Loss of one batch of samples for one student training (`mode`, one of MODES): CE under the mode's modality
    dropout; for KARMMA_S plus KD from the teacher predicting from its cached tokens of the same samples, on the
    same modality subset (a `student.kd_all` share on all the sample's modalities), and token KD for the modalities
    in `student.token_kd` (a linear map from the student's token to the teacher extractor's, trained here and not
    exported)."""

    def __init__(self, student: MultimodalModel, mode: str, teacher: Fusion | None,
                 views: list[dict[str, torch.Tensor]], run: Run, p_drop: float | None = None,
                 audio_mask: tuple[int, int] = (0, 0)) -> None:
        super().__init__()
        if mode not in MODES:
            raise ValueError(f"unknown student mode {mode!r}; use one of {MODES}.")
        if mode == "karmma_s" and teacher is None:
            raise ValueError("karmma_s needs the teacher.")
        self.student, self.views, self.run = student, views, run
        self.audio_mask = tuple(int(w) for w in audio_mask)     # SpecAugment widths (trainer.augment); 0 = off
        self.p_drop = 0.0 if mode == "baseline" else run.cfg.student.p_drop if p_drop is None else p_drop
        # a list: not a submodule, so DDP neither syncs nor checkpoints it
        self.teacher = [teacher] if mode == "karmma_s" else []
        self.token_kd = token_kd_weights(run.cfg.student.token_kd) if mode == "karmma_s" else {}
        self.token_maps = nn.ModuleDict({m: nn.Linear(student.cfg.token_dim, views[0][m].shape[-1])
                                         for m in self.token_kd})

    def settings(self) -> dict:
        """What shapes this loss besides the tensors (a checkpoint resumes only under the same): the KD settings
        and the teacher's weights only for KARMMA_S, so changing them leaves the baselines' finished trainings valid."""
        cfg = self.run.cfg.student
        kd = {"alpha": cfg.alpha, "temperature": cfg.temperature, "token_kd": self.token_kd, "kd_all": cfg.kd_all,
              "teacher": weights_digest(self.teacher[0])} if self.teacher else {}
        return {"p_drop": self.p_drop, "dropout": self.student.cfg.dropout, "audio_mask": list(self.audio_mask), **kd}

    def forward(self, batch: dict, epoch: int) -> torch.Tensor:
        cfg, device = self.run.cfg.student, self.run.info.device
        index = batch["index"].cpu()
        mask = _mask(index, presence(batch).cpu(), self.p_drop, self.run.seed, epoch).to(device)
        inputs = {m: batch[m].to(device) for m in MODALITIES}
        if any(self.audio_mask):
            inputs["A"] = mask_spectrograms(inputs["A"], index, self.run.seed, epoch, *self.audio_mask)
        tokens = encode_present(self.student, inputs, mask)
        verb, noun = self.student.fusion(*tokens, mask)
        teacher = teacher_all = None
        view = self.views[epoch % len(self.views)] if self.teacher else {}
        if self.teacher:
            with torch.no_grad():
                teacher_tokens = [view[m][index].float().to(device) for m in MODALITIES]
                teacher = self.teacher[0](*teacher_tokens, mask)
                if cfg.kd_all:
                    teacher_all = self.teacher[0](*teacher_tokens, presence(batch).to(device))
        loss = student_loss(verb, noun, targets(batch, "verb").to(device), targets(batch, "noun").to(device), cfg,
                            teacher, teacher_all)
        if not self.token_kd:                       # token KD: KARMMA_S only (token_kd is empty otherwise)
            return loss
        # each rank's mean over its own kept frames, weighted by its share of the global batch's (as PretrainStep),
        # so N processes average to the one-process loss even when their masks keep different numbers of rows
        kept = (mask > 0).sum(0).cpu()
        share = kept * self.run.info.world_size / ddp.all_reduce_sum(kept, self.run.info).clamp(min=1)
        for i, m in enumerate(MODALITIES):
            keep = mask[:, i] > 0
            if m in self.token_kd and bool(keep.any()):
                loss = loss + self.token_kd[m] * float(share[i]) * token_kd_loss(
                    self.token_maps[m](tokens[i][keep]), view[m][index][keep.cpu()].to(device))
        return loss


def weights_digest(module: nn.Module) -> str:
    """12 hex digits naming a module's parameter values (token caches and checkpoints record what made them)."""
    digest = hashlib.sha256(b"".join(p.detach().cpu().numpy().tobytes() for p in module.parameters()))
    return digest.hexdigest()[:12]


def targets(batch: dict, head: str) -> torch.Tensor:
    """Training targets for `head` of a batch (or of cached-token rows): soft targets where the dataset gives
    them (MovingDigits), else class indices."""
    return batch.get(f"{head}_t", batch[head])


def _mask(index: torch.Tensor, present: torch.Tensor, p_drop: float, seed: int, epoch: int) -> torch.Tensor:
    return sample_drop(index, present, p_drop, seed, epoch) if p_drop > 0 else present.float()


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


def _index_batches(n: int, run: Run) -> tuple[Callable[[int], Iterable], int]:
    """`batches(epoch)` of row indices 0..n-1 (cached tokens), shared out over the ranks."""
    rows = TensorDataset(torch.arange(n))
    sampler = ddp.sampler(rows, run.info, shuffle=True, seed=run.seed, drop_last=True)
    loader = DataLoader(rows, batch_size=per_rank_batch(run.cfg.batch_size, run.info), sampler=sampler,
                        drop_last=True)

    def batches(epoch: int) -> Iterable:
        sampler.set_epoch(epoch)
        return (b[0] for b in loader)

    return batches, len(loader)


def pretrain_encoders(encoders: nn.ModuleDict, train, run: Run, *, epochs: int, positions: int, lr: float,
                      ckpt_path: Path, desc: str) -> None:
    """Each encoder (with an `out_dim`) + linear heads trained on its own modality's labels (the teacher's
    extractors before freezing; the students' warm start): an epoch is `positions` passes over the data, one
    single frame / window per sample and pass (each pass a new shuffle, position and TSN draw)."""
    step = PretrainStep(encoders, train.num_classes, run.seed, run.info)
    batches, n = sample_batches(train, run, view_of=lambda p: p)
    fit(step, batches, n, run, epochs=epochs * positions, lr=lr, weight_decay=0.01, pct_start=0.15,
        ckpt_path=ckpt_path, desc=desc, unit="pass")


def tsn_draws(run: Run, dataset) -> int:
    """TSN draws of `dataset` whose teacher tokens are cached: `teacher.token_views` of a training split, else one;
    the students cycle through as many (epoch e reads draw e mod draws)."""
    return run.cfg.teacher.token_views if getattr(dataset, "train", False) else 1


def split_tokens(encoders: nn.ModuleDict, dataset, name: str, run: Run, work: Path,
                 dims: dict[str, int]) -> list[dict[str, torch.Tensor]]:
    """Cached tokens of `dataset` per TSN draw (teacher.token_views draws of a training split, else one)."""
    device = run.info.device

    def encode(m: str, x: torch.Tensor) -> torch.Tensor:
        return encoders[m](x.to(device))

    views = []
    for view in range(tsn_draws(run, dataset)):
        dataset.set_epoch(view)
        path = work / "tokens" / f"{name}_{dataset.cache_key()}.pt"
        views.append(cached_tokens(encode, dataset, path, run.info, dims=dims, batch_size=run.cfg.batch_size,
                                   workers=run.cfg.data.workers, desc=f"{work.name} tokens ({name}, draw {view})",
                                   show=run.progress))
    return views


def score_tokens(fuse, view: dict[str, torch.Tensor], cfg: EvalConfig) -> dict:
    """The 7-subset table (each subset scored on the samples that have one of its modalities) and the drop curve."""
    tokens = {m: view[m].float() for m in MODALITIES}
    present = view["present"]
    return {"n": int(present.shape[0]),
            "table": subset_table(fuse, tokens, view["verb"], view["noun"], present),
            "curve": drop_curve(fuse, tokens, view["verb"], view["noun"], tuple(cfg.drop_ps), cfg.drop_repeats,
                                present=present)}


def describe_dataset(dataset) -> dict:
    skips = getattr(dataset, "skips", None)
    return {"samples": len(dataset), "skipped": dict(skips.counts) if skips is not None else {}}


def check_same_run(run: Run, train, origin: dict | None = None) -> None:
    """A resumed --out must hold a run on the same data (and `origin`, e.g. the bundle fine-tuned from): its
    checkpoints and token caches belong to it."""
    train.set_epoch(0)
    this = {"dataset": run.spec.name, "train_samples": train.cache_key(), **(origin or {})}
    path = run.out / "run.json"
    if path.is_file():
        if json.loads(path.read_text()) != this:
            raise ConfigError(f"{run.out} holds a run on other data ({path}); resume only with the same dataset, "
                              "split files and preprocessing, or use a new --out.")
    elif run.info.is_main:      # atomically: another rank reading it sees no file or the whole file
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(json.dumps(this))
        os.replace(tmp, path)


@dataclass
class Teacher:
    """A trained teacher, its cached tokens of the train split (one per TSN draw) and of the eval split."""

    model: MultimodalModel
    views: list[dict[str, torch.Tensor]]
    eval_view: dict[str, torch.Tensor]


def train_teacher(run: Run) -> Teacher:
    """Teacher on `run.spec`'s train split (resumed from --out where it got to)."""
    cfg, work = run.cfg.teacher, run.out / "teacher"
    train = run.dataset(run.train_split, train=True)
    evaluation = run.dataset(run.eval_split, train=False)     # a bad split fails now, not after training
    check_same_run(run, train)
    torch.manual_seed(run.seed)
    extractors = build_extractors(cfg)
    pretrain_encoders(extractors, train, run, epochs=cfg.pretrain_epochs, positions=cfg.pretrain_positions,
                      lr=cfg.pretrain_lr, ckpt_path=work / "extractors.pt", desc="teacher extractors")
    for p in extractors.parameters():
        p.requires_grad_(False)
    dims = {m: extractors[m].out_dim for m in MODALITIES}
    views = split_tokens(extractors, train, "train", run, work, dims)
    eval_view = split_tokens(extractors, evaluation, run.eval_split, run, work, dims)[0]
    n = train.num_classes
    fusion = Fusion(run.tokens_per_modality, dims, cfg.dim, cfg.layers, cfg.heads, cfg.ff, n["verb"], n["noun"],
                    missing="learned", dropout=cfg.dropout)
    batches, n_batches = _index_batches(len(train), run)
    fit(FusionStep(fusion, views, run), batches, n_batches, run, epochs=cfg.fusion_epochs, lr=cfg.fusion_lr,
        weight_decay=0.01, pct_start=0.1, ckpt_path=work / "fusion.pt", desc="teacher fusion")
    teacher = MultimodalModel.from_parts(teacher_model_config(cfg, run.tokens_per_modality), extractors, fusion)
    if cfg.end_to_end_epochs:
        del views, eval_view                        # the frozen stage's tokens: stage 4 caches its own
        views, eval_view = _train_end_to_end(run, teacher, train, evaluation)
    return Teacher(teacher.eval(), views, eval_view)


def _train_end_to_end(run: Run, teacher: MultimodalModel, train, evaluation) -> tuple[list[dict], dict]:
    """Teacher stage (4), when `teacher.end_to_end_epochs` > 0: extractors and fusion trained together on whole
    samples from where stages (1)-(3) left them, under the teacher's modality dropout (the Baseline w/ δ loss), then
    frozen again and their tokens re-cached (named by the extractors' weights: the frozen-stage caches stay valid
    for stage 3, and a retrained stage 4 never reads tokens of other weights).
    Extractors pre-trained one frame / window at a time and then frozen left the teacher below the students on the
    verb from V and the noun from A, where the students' encoders learn from the whole window (docs/RESULTS.md)."""
    cfg, work = run.cfg.teacher, run.out / "teacher"
    teacher.encoders.requires_grad_(True)
    draws = tsn_draws(run, train)
    batches, n_batches = sample_batches(train, run, view_of=lambda epoch: epoch % draws)
    step = StudentStep(teacher, "baseline_delta", None, [], run, p_drop=cfg.p_drop, audio_mask=cfg.audio_mask)
    fit(step, batches, n_batches, run,
        epochs=cfg.end_to_end_epochs, lr=cfg.end_to_end_lr, weight_decay=0.01, pct_start=0.15,
        ckpt_path=work / "end_to_end.pt", desc="teacher end to end")
    teacher.eval().requires_grad_(False)
    dims = {m: teacher.encoders[m].out_dim for m in MODALITIES}
    name = f"e2e_w{weights_digest(teacher.encoders)}"
    views = split_tokens(teacher.encoders, train, f"train_{name}", run, work, dims)
    return views, split_tokens(teacher.encoders, evaluation, f"{run.eval_split}_{name}", run, work, dims)[0]


def run_teacher(run: Run) -> tuple[Teacher, dict]:
    """`python -m trainer teacher`: the teacher, its eval-split scores, results.json and its bundle."""
    start = time.time()
    teacher = train_teacher(run)
    train, evaluation = run.dataset(run.train_split, train=True), run.dataset(run.eval_split, train=False)
    result = {"model": "teacher", "dataset": run.spec.name, "eval_split": run.eval_split,
              "train": describe_dataset(train), "eval": describe_dataset(evaluation),
              **score_tokens(cpu_fuse(teacher.model.fusion), teacher.eval_view, run.cfg.eval),
              "wall_time_s": round(time.time() - start, 1)}
    _finish(run, teacher.model, train.labels, "teacher", result)
    return teacher, result


def warm_start(run: Run, ckpt_path: Path) -> dict[str, torch.Tensor]:
    """The student encoders' unimodal warm start for `run.seed` (each on its own modality's labels); the state
    dict every training of that seed starts from, so they differ only in what the method changes."""
    cfg, train = run.cfg.student, run.dataset(run.train_split, train=True)
    torch.manual_seed(run.seed)
    n = train.num_classes
    model = MultimodalModel(student_config(cfg, "baseline_delta", run.tokens_per_modality), n["verb"], n["noun"])
    for m in MODALITIES:
        model.encoders[m].out_dim = model.cfg.token_dim
    pretrain_encoders(model.encoders, train, run, epochs=cfg.pretrain_epochs, positions=cfg.pretrain_positions,
                      lr=cfg.pretrain_lr, ckpt_path=ckpt_path, desc=f"student encoders (seed {run.seed})")
    return {k: v.detach().clone() for k, v in model.encoders.state_dict().items()}


def train_student(run: Run, mode: str, teacher: Teacher | None, encoders: dict[str, torch.Tensor],
                  ckpt_path: Path) -> MultimodalModel:
    """One student training (`mode`, one of MODES) from the warm start `encoders` (resumes per epoch). The
    baselines need no `teacher` (None)."""
    cfg, train = run.cfg.student, run.dataset(run.train_split, train=True)
    n = train.num_classes
    torch.manual_seed(run.seed)
    model = MultimodalModel(student_config(cfg, mode, run.tokens_per_modality), n["verb"], n["noun"])
    model.encoders.load_state_dict(encoders)
    views, fusion = (teacher.views, teacher.model.fusion.to(run.info.device)) if teacher else ([], None)
    draws = tsn_draws(run, train)
    batches, n_batches = sample_batches(train, run, view_of=lambda epoch: epoch % draws)
    fit(StudentStep(model, mode, fusion, views, run), batches, n_batches, run, epochs=cfg.epochs,
        lr=cfg.lr, weight_decay=cfg.weight_decay, pct_start=0.15, ckpt_path=ckpt_path,
        desc=f"{MODE_NAMES[mode]} (seed {run.seed})")
    return model.eval()


MODE_NAMES = {"baseline": "Baseline", "baseline_delta": "Baseline w/ delta", "karmma_s": "KARMMA_S"}


def score_student(run: Run, model: MultimodalModel, work: Path) -> dict:
    """The student's eval-split scores (rank 0; {} on the others): its own encoders' tokens, cached under `work`
    by a hash of their weights (every rank encodes its share: rank 0 alone could outlast the other ranks'
    collective timeout on a large split)."""
    evaluation = run.dataset(run.eval_split, train=False)
    eval_view = split_tokens(model.eval().encoders, evaluation, f"{run.eval_split}_w{weights_digest(model.encoders)}",
                             run, work, {m: model.cfg.token_dim for m in MODALITIES})[0]
    if not run.info.is_main:
        return {}
    return score_tokens(cpu_fuse(model.fusion), eval_view, run.cfg.eval)


def run_student(run: Run) -> dict:
    """`python -m trainer student`: KARMMA_S distilled from the teacher (trained first, or resumed from --out)."""
    teacher, _ = run_teacher(run)
    start, work = time.time(), run.out / "student"
    encoders = warm_start(run, work / "encoders.pt")
    model = train_student(run, "karmma_s", teacher, encoders, work / "karmma_s.pt")
    spread = ddp.check_synchronised(model, run.info)
    scores = score_student(run, model, work)
    if not run.info.is_main:
        return {}
    train, evaluation = run.dataset(run.train_split, train=True), run.dataset(run.eval_split, train=False)
    model = model.cpu()
    result = {"model": "karmma_s", "dataset": run.spec.name, "eval_split": run.eval_split,
              "world_size": run.info.world_size, "backend": ddp.backend_name(run.info),
              "weight_spread_between_ranks": spread,
              "train": describe_dataset(train), "eval": describe_dataset(evaluation),
              **scores, "wall_time_s": round(time.time() - start, 1)}
    _finish(run, model, train.labels, "karmma_s", result)
    return result


def cpu_fuse(fusion: Fusion):
    fusion = fusion.cpu().eval()
    return lambda *args: fusion(*args)


def _finish(run: Run, model: MultimodalModel, labels: dict, name: str, result: dict) -> None:
    """Rank 0: results.json, a bundle, and the table on stdout."""
    if not run.info.is_main:
        return
    folder = run.out / ("teacher" if name == "teacher" else "student")
    (folder / "results.json").write_text(json.dumps(result, indent=1))
    metrics = {"split": run.eval_split, "accuracy": result["table"], "dataset": run.spec.name}
    export_bundle(model.cpu(), run.pre, labels, run.out / "bundles" / name, name=f"{name}-{run.spec.name}",
                  kind="teacher" if name == "teacher" else "student", metrics=metrics,
                  extra={"data": {"dataset": run.spec.name, "options": run.spec.options}})
    run.log(format_scores(result))


def format_scores(result: dict) -> str:
    lines = [f"{result['model']} on {result['dataset']} {result['eval_split']} ({result['n']} samples)",
             "subset   verb   noun  action"]
    lines += [f"{s:<6} {a['verb']:6.1f} {a['noun']:6.1f} {a['action']:7.1f}" for s, a in result["table"].items()]
    lines.append("random drop p: " + "  ".join(f"{p:.1f}:{a:.1f}" for p, a in result["curve"].items()))
    return "\n".join(lines)
