"""`python -m trainer finetune`: teach a shipped bundle's student a new label set.

The bundle's torch weights (`weights.pt`, edge.bundle.WEIGHTS) give the encoders, the fusion (embeddings,
modality / position tokens, transformer) and the heads' hidden layers; the heads' last layers are new, sized
by the dataset's labels. Training goes through the one loop (`trainer.stages.fit`, a `StudentStep` in mode
baseline_delta: CE under modality dropout, so the result still works with a sensor missing) in two phases:
the new head layers alone (`finetune.head_epochs`), then all weights (`finetune.train: all`) or all but the
encoders (`fusion`) at a lower rate. BatchNorm keeps the bundle's running statistics (`freeze_bn`).
"""
from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import torch
from torch import nn

from edge.bundle import WEIGHTS, Bundle, load_bundle
from edge.errors import BundleError, ConfigError
from trainer.export import export_bundle
from trainer.models import ModelConfig, MultimodalModel
from trainer.stages import (MODE_NAMES, Run, StudentStep, check_same_run, describe_dataset, fit, format_scores,
                            sample_batches, score_student)

PHASES = ("heads", "all", "fusion")


def bundle_model(bundle: Bundle) -> MultimodalModel:
    """The bundle's student as a torch model, from its manifest's model_config and its weights file."""
    path = bundle.file(WEIGHTS)
    if path is None:
        raise BundleError(f"bundle {bundle.path} has no torch weights ({WEIGHTS}.pt) to fine-tune from; use a bundle "
                          "exported by this trainer (int8 bundles keep none: fine-tune the fp32 one).")
    labels = bundle.labels
    try:
        model = MultimodalModel(ModelConfig(**bundle.manifest["extra"]["model_config"]), len(labels["verb"]),
                                len(labels["noun"]))
        model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    except Exception as exc:  # a missing key, a wrong shape or an unreadable pickle: one sentence each way
        first = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
        raise BundleError(f"bundle {bundle.path}: {path.name} does not fit its manifest's model ({first}).") from None
    return model


def new_heads(model: MultimodalModel, n_verb: int, n_noun: int) -> list[nn.Parameter]:
    """Replace the last layer of the verb and noun heads by fresh ones of the new sizes; their parameters."""
    fresh = []
    for name, n in (("head_verb", n_verb), ("head_noun", n_noun)):
        head = getattr(model.fusion, name)
        head[-1] = nn.Linear(head[-1].in_features, n)
        fresh += list(head[-1].parameters())
    return fresh


def _check_labels(train, labels: dict[str, list[str]]) -> None:
    """Every class of the label set must have a training sample (a class never seen cannot be learned)."""
    for head, names in labels.items():
        seen = {int(getattr(seg, head)) for seg in train.segments} if hasattr(train, "segments") \
            else {int(v) for v in getattr(train, head)}
        unseen = [n for i, n in enumerate(names) if i not in seen]
        if unseen:
            raise ConfigError(f"the train split has no sample of {head} {', '.join(map(repr, unseen))}; record "
                              "some, or remove the class from labels.json.")


def _nonempty(run: Run, split: str, train: bool):
    dataset = run.dataset(split, train=train)
    if len(dataset) == 0:
        skipped = getattr(dataset, "skips", None)
        why = f" ({skipped.summary(kept=0)})" if skipped is not None and skipped.total else ""
        raise ConfigError(f"split {split!r} of {run.spec.name} has no usable samples{why}.")
    return dataset


def _phase(run: Run, model: MultimodalModel, train, trainable: list[nn.Parameter], epochs: int, lr: float,
           name: str, phase: int) -> None:
    """One fine-tuning phase through `fit`: only `trainable` learns (its own optimizer, schedule, checkpoint)."""
    ft = run.cfg.finetune
    for p in model.parameters():
        p.requires_grad_(False)
    for p in trainable:
        p.requires_grad_(True)
    run = replace(run, seed=run.seed + phase, freeze_bn=run.freeze_bn or ft.freeze_bn)   # new masks per phase
    step = StudentStep(model, "baseline_delta", None, [], run, p_drop=ft.p_drop)
    batches, n_batches = sample_batches(train, run, view_of=lambda epoch: epoch)
    fit(step, batches, n_batches, run, epochs=epochs, lr=lr, weight_decay=ft.weight_decay, pct_start=0.15,
        ckpt_path=run.out / "finetune" / f"{name}.pt", desc=f"finetune {name}")


def check_settings(run: Run) -> None:
    ft = run.cfg.finetune
    if ft.train not in PHASES[1:]:
        raise ConfigError(f"finetune.train must be one of {list(PHASES[1:])}, got {ft.train!r}.")
    if ft.head_epochs < 0 or ft.epochs < 0 or ft.head_epochs + ft.epochs < 1:
        raise ConfigError("finetune.head_epochs and finetune.epochs must be >= 0, and at least one of them >= 1.")
    if not 0 <= ft.p_drop < 1:
        raise ConfigError(f"finetune.p_drop must be in [0, 1), got {ft.p_drop}.")
    if ft.batch_size < 1:
        raise ConfigError(f"finetune.batch_size must be at least 1, got {ft.batch_size}.")


def run_finetune(run: Run, source: Path, eval_splits: list[str], out_bundle: Path) -> dict:
    """Fine-tune the bundle at `source` on `run`'s dataset, score `eval_splits` per modality subset, write the
    bundle `out_bundle` and `run.out / finetune / results.json`; the result."""
    start = time.time()
    check_settings(run)
    bundle = load_bundle(source)
    model = bundle_model(bundle)
    run = replace(run, pre=bundle.preprocess)
    train = _nonempty(run, run.train_split, train=True)
    evaluations = {s: _nonempty(run, s, train=False) for s in eval_splits}    # bad splits fail before training
    labels = train.labels
    _check_labels(train, labels)
    origin = {"from": {"name": bundle.manifest["name"], "weights_sha256": bundle.manifest["files"][WEIGHTS]["sha256"]}}
    check_same_run(run, train, origin)
    ft = run.cfg.finetune
    run = replace(run, cfg=replace(run.cfg, batch_size=min(ft.batch_size, len(train))))
    torch.manual_seed(run.seed)
    heads = new_heads(model, len(labels["verb"]), len(labels["noun"]))
    run.log(f"fine-tuning {bundle.manifest['name']} on {len(train)} {run.spec.name} {run.train_split} samples: "
            f"{len(labels['verb'])} verbs, {len(labels['noun'])} nouns ({MODE_NAMES['baseline_delta']} loss, "
            f"modality dropout p = {ft.p_drop})")
    if ft.head_epochs:
        _phase(run, model, train, heads, ft.head_epochs, ft.head_lr, "heads", 1)
    if ft.epochs:
        trainable = list(model.parameters() if ft.train == "all" else model.fusion.parameters())
        _phase(run, model, train, trainable, ft.epochs, ft.lr, ft.train, 2)
    for p in model.parameters():
        p.requires_grad_(True)
    model.eval()
    work = run.out / "finetune"
    scores = {s: score_student(replace(run, eval_split=s), model, work) for s in evaluations}
    result = {"model": "finetuned", "dataset": run.spec.name, "from": str(source), **origin,
              "labels": labels, "train": describe_dataset(train),
              "splits": {s: {**describe_dataset(d), **scores[s]} for s, d in evaluations.items()},
              "config": run.cfg.finetune.__dict__, "wall_time_s": 0.0}
    last = eval_splits[-1] if eval_splits else None
    metrics = {"dataset": run.spec.name, **({"split": last, "accuracy": scores[last]["table"]} if last else {}),
               "splits": {s: scores[s]["table"] for s in eval_splits}}
    export_bundle(model.cpu(), run.pre, labels, out_bundle, name=f"{bundle.manifest['name']}-finetuned", metrics=metrics,
                  extra={"data": {"dataset": run.spec.name, "options": run.spec.options}, "finetuned_from": origin["from"]})
    result["wall_time_s"] = round(time.time() - start, 1)
    for s in eval_splits:
        run.log(format_scores({"model": "finetuned", "dataset": run.spec.name, "eval_split": s, **scores[s]}))
    return result
