"""The one training path: `python -m trainer teacher | student | benchmark` train the teacher and the students
(Baseline, Baseline w/ δ, KARMMA_S) on any dataset (trainer.data.registry; MovingDigits-AV from clips held in memory),
read in batches by one loop (`fit`), alone or under `torchrun --nproc_per_node=N` (DistributedDataParallel,
rank-0-only logs and checkpoints). A stage differs only in its model, its loss (a step module beside it: extractors, teacher, students) and its data;
the loop and the run state are trainer/loop.py.

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

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from edge.errors import ConfigError
from trainer import distributed as ddp
from trainer.config import EvalConfig
from trainer.data.token_cache import cached_tokens
from trainer.evaluation import drop_curve, subset_table
from trainer.export import export_bundle
from trainer.extractors import PretrainStep, build_model
from trainer.loop import Run, fit, index_batches, sample_batches, weights_digest
from trainer.models import MODALITIES, Fusion, MultimodalModel
from trainer.students import MultimodalStep, student_config
from trainer.teacher import FusionStep, build_extractors, teacher_model_config


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
    batches, n_batches = index_batches(len(train), run)
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
    step = MultimodalStep(teacher, "baseline_delta", None, [], run, p_drop=cfg.p_drop, audio_mask=cfg.audio_mask)
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
    model = build_model(student_config(cfg, "baseline_delta", run.tokens_per_modality), n["verb"], n["noun"])
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
    model = build_model(student_config(cfg, mode, run.tokens_per_modality), n["verb"], n["noun"])
    model.encoders.load_state_dict(encoders)
    views, fusion = (teacher.views, teacher.model.fusion.to(run.info.device)) if teacher else ([], None)
    draws = tsn_draws(run, train)
    batches, n_batches = sample_batches(train, run, view_of=lambda epoch: epoch % draws)
    fit(MultimodalStep(model, mode, fusion, views, run), batches, n_batches, run, epochs=cfg.epochs,
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
