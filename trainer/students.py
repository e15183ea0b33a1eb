"""Students (stage 2): one architecture, three trainings (METHOD.md).

  baseline        CE, no modality dropout, a missing modality's tokens are zeros   (missing="zeros")
  baseline_delta  modality dropout (resampled so one stays) + learned modality/position tokens, CE
  karmma_s        baseline_delta + alpha * T^2 * KL(teacher || student) + (1 - alpha) * CE per head,
                  the teacher predicting on the same modality subset as the student
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch.nn import functional as F
from tqdm import tqdm

from trainer import ckpt
from trainer.clips import ClipSet
from trainer.config import StudentConfig
from trainer.evaluation import accuracy, fuse_batched, model_tokens
from trainer.extractors import pretrain
from trainer.masks import random_drop, subset_index
from trainer.models import MODALITIES, ModelConfig, MultimodalModel

MODES = ("baseline", "baseline_delta", "karmma_s")


def student_config(cfg: StudentConfig, mode: str, tokens: dict[str, int]) -> ModelConfig:
    return ModelConfig(**{**cfg.model, "missing": "zeros" if mode == "baseline" else "learned", "tokens": dict(tokens)})


def forward_present(model: MultimodalModel, inputs: dict[str, torch.Tensor],
                    mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Forward that runs each encoder only on the rows where its modality is present.

    A missing modality's tokens never reach the output (learned: its content is multiplied by 0; zeros: its
    tokens are zeroed), so skipping its encoder changes nothing but the cost and keeps BatchNorm statistics
    to real inputs.
    """
    tokens = []
    for i, m in enumerate(MODALITIES):
        x = inputs[m]
        keep = mask[:, i] > 0
        t = torch.zeros(x.shape[0], x.shape[1], model.fusion.embed[m].in_features, device=x.device)
        if bool(keep.all()):
            t = model.encode(m, x)
        elif bool(keep.any()):
            t = t.index_put((keep,), model.encode(m, x[keep]))
        tokens.append(t)
    return model.fusion(*tokens, mask)


def kd_loss(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """T^2 * KL(softmax(teacher / T) || softmax(student / T)), averaged over the batch."""
    return F.kl_div(F.log_softmax(student / temperature, 1), F.log_softmax(teacher / temperature, 1),
                    log_target=True, reduction="batchmean") * temperature ** 2


def student_loss(verb: torch.Tensor, noun: torch.Tensor, target_verb: torch.Tensor, target_noun: torch.Tensor,
                 cfg: StudentConfig, teacher: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
    """CE per head (targets: class indices or soft targets); with the teacher's (verb, noun) logits on the same
    modality subset, KARMMA_S's alpha * T^2 * KL(teacher || student) + (1 - alpha) * CE."""
    ce = F.cross_entropy(verb, target_verb) + F.cross_entropy(noun, target_noun)
    if teacher is None:
        return ce
    kd = kd_loss(verb, teacher[0], cfg.temperature) + kd_loss(noun, teacher[1], cfg.temperature)
    return cfg.alpha * kd + (1 - cfg.alpha) * ce


def pretrain_encoders(cfg: StudentConfig, clips: ClipSet, n_classes: dict[str, int], tokens: dict[str, int], *,
                      batch_size: int, seed: int, work: Path) -> dict[str, torch.Tensor]:
    """Warm start for the student encoders: each pre-trained on its own modality's labels, one frame / window
    per sample (as the teacher's extractors, but student-sized and not frozen). The three trainings of a seed
    start from the same weights, so they differ only in what the method changes."""
    torch.manual_seed(seed)
    model = MultimodalModel(student_config(cfg, "baseline_delta", tokens), n_classes["verb"], n_classes["noun"])
    for m in MODALITIES:
        model.encoders[m].out_dim = model.cfg.token_dim
        pretrain(model.encoders[m], m, clips, n_classes, epochs=cfg.pretrain_epochs, positions=cfg.pretrain_positions,
                 lr=cfg.pretrain_lr, batch_size=batch_size, seed=seed, ckpt_path=work / f"encoder_{m}_seed{seed}.pt",
                 freeze=False, desc="student")
    return model.encoders.state_dict()


def train_student(mode: str, cfg: StudentConfig, clips: ClipSet, n_classes: dict[str, int], tokens: dict[str, int], *,
                  batch_size: int, seed: int, ckpt_path: Path, teacher_logits: tuple[torch.Tensor, torch.Tensor] | None = None,
                  val: ClipSet | None = None, encoders: dict[str, torch.Tensor] | None = None) -> MultimodalModel:
    """Train one student (resumes per epoch from `ckpt_path`); `teacher_logits` = subset_logits of the train clips,
    `encoders` = pretrain_encoders' warm start (None: random init)."""
    if mode not in MODES:
        raise ValueError(f"unknown student mode {mode!r}; use one of {MODES}.")
    if mode == "karmma_s" and teacher_logits is None:
        raise ValueError("karmma_s needs the teacher's logits.")
    torch.manual_seed(seed)
    model = MultimodalModel(student_config(cfg, mode, tokens), n_classes["verb"], n_classes["noun"])
    if encoders is not None:
        model.encoders.load_state_dict(encoders)
    p_drop = 0.0 if mode == "baseline" else cfg.p_drop
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    n = len(clips)
    steps = (n + batch_size - 1) // batch_size
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=max(1, cfg.epochs * steps), pct_start=0.15)
    parts = {"model": model, "opt": opt, "sched": sched}
    start = ckpt.resume(ckpt_path, parts)
    for epoch in range(start, cfg.epochs):
        model.train()
        gen = torch.Generator().manual_seed(seed * 1000 + epoch)
        order = torch.randperm(n, generator=gen)
        bar = tqdm(range(0, n, batch_size), desc=f"{mode} seed {seed} epoch {epoch + 1}/{cfg.epochs}",
                   mininterval=2, leave=False)
        for s in bar:
            idx = order[s:s + batch_size]
            mask = random_drop(len(idx), p_drop, gen) if p_drop > 0 else torch.ones(len(idx), 3)
            verb, noun = forward_present(model, clips.inputs(idx), mask)
            teacher = None
            if mode == "karmma_s":
                sub = subset_index(mask)
                teacher = (teacher_logits[0][sub, idx], teacher_logits[1][sub, idx])
            target = clips.targets(idx)
            loss = student_loss(verb, noun, target["verb"], target["noun"], cfg, teacher)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
        msg = f"{mode} seed {seed} epoch {epoch + 1}/{cfg.epochs}: loss {loss.item():.3f}"
        if val is not None:
            toks = model_tokens(model, val, batch_size, "val")
            acc = accuracy(*fuse_batched(model.fusion, toks, torch.ones(len(val), 3)), val.verb, val.noun)
            msg += f", val VFA verb/noun/action {acc['verb']:.1f}/{acc['noun']:.1f}/{acc['action']:.1f}%"
        print(msg, flush=True)
        ckpt.save_epoch(ckpt_path, epoch, parts)
    return model.eval()
