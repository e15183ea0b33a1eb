"""Teacher (stage 1): frozen per-modality extractors, tokens cached to disk, a fusion transformer trained on them.

Only the fusion block and heads train, on cached tokens, so the teacher is cheap to train (METHOD.md).
Loss: CE per head, optional InfoNCE alignment of per-modality token averages, optional teacher-side
modality dropout (then the teacher has learned missing-modality tokens, which KARMMA_S relies on:
the teacher predicts on the same subset the student sees).
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F
from tqdm import tqdm

from trainer import ckpt
from trainer.clips import ClipSet
from trainer.config import TeacherConfig
from trainer.extractors import cached_tokens, make_extractor, pretrain
from trainer.masks import SUBSETS, random_drop, subset_mask
from trainer.models import MODALITIES, Fusion, ModelConfig, MultimodalModel


def teacher_model_config(cfg: TeacherConfig, tokens: dict[str, int]) -> ModelConfig:
    """The teacher's shape as a ModelConfig (recorded in its bundle; widths describe the conv extractors)."""
    return ModelConfig(video_widths=tuple(cfg.widths), flow_widths=tuple(cfg.widths), audio_widths=tuple(cfg.widths),
                       token_dim=cfg.token_dim, dim=cfg.dim, layers=cfg.layers, heads=cfg.heads, ff=cfg.ff,
                       dropout=cfg.dropout, missing="learned", tokens=dict(tokens))


def build_extractors(cfg: TeacherConfig) -> nn.ModuleDict:
    return nn.ModuleDict({m: make_extractor(cfg.extractors[m], m, tuple(cfg.widths), cfg.token_dim) for m in MODALITIES})


def infonce(a: torch.Tensor, b: torch.Tensor, tau: float) -> torch.Tensor:
    """Symmetric InfoNCE between two batches of embeddings (row i of a and b are the positive pair)."""
    a, b = F.normalize(a, dim=-1), F.normalize(b, dim=-1)
    logits = a @ b.t() / tau
    target = torch.arange(a.shape[0])
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.t(), target))


def alignment_loss(fusion: Fusion, tokens: list[torch.Tensor], mask: torch.Tensor, tau: float) -> torch.Tensor:
    """InfoNCE over every pair of modalities, on the embedded per-modality token averages of rows where both exist."""
    means = [fusion.embed[m](x).mean(1) for m, x in zip(MODALITIES, tokens)]
    total, pairs = torch.zeros(()), 0
    for i in range(3):
        for j in range(i + 1, 3):
            both = (mask[:, i] > 0) & (mask[:, j] > 0)
            if int(both.sum()) >= 2:
                total = total + infonce(means[i][both], means[j][both], tau)
                pairs += 1
    return total / max(1, pairs)


def fusion_loss(fusion: Fusion, tokens: list[torch.Tensor], mask: torch.Tensor, verb: torch.Tensor,
                noun: torch.Tensor, cfg: TeacherConfig) -> torch.Tensor:
    """CE per head on the masked tokens, plus the optional InfoNCE alignment."""
    verb_logits, noun_logits = fusion(*tokens, mask)
    loss = F.cross_entropy(verb_logits, verb) + F.cross_entropy(noun_logits, noun)
    if cfg.infonce:
        loss = loss + cfg.infonce_weight * alignment_loss(fusion, tokens, mask, cfg.infonce_tau)
    return loss


def train_fusion(fusion: Fusion, tokens: dict[str, torch.Tensor], clips: ClipSet, cfg: TeacherConfig, *,
                 batch_size: int, seed: int, ckpt_path: Path) -> None:
    """Train the teacher's fusion + heads on cached tokens (resumes per epoch)."""
    opt = torch.optim.AdamW(fusion.parameters(), lr=cfg.fusion_lr, weight_decay=0.01)
    n = len(clips)
    steps = (n + batch_size - 1) // batch_size
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.fusion_lr, total_steps=max(1, cfg.fusion_epochs * steps),
                                                pct_start=0.1)
    parts = {"model": fusion, "opt": opt, "sched": sched}
    start = ckpt.resume(ckpt_path, parts)
    for epoch in tqdm(range(start, cfg.fusion_epochs), desc="teacher fusion", mininterval=2, initial=start,
                      total=cfg.fusion_epochs):
        fusion.train()
        gen = torch.Generator().manual_seed(seed * 1000 + epoch)
        order = torch.randperm(n, generator=gen)
        for s in range(0, n, batch_size):
            idx = order[s:s + batch_size]
            mask = random_drop(len(idx), cfg.p_drop, gen) if cfg.p_drop > 0 else torch.ones(len(idx), 3)
            target = clips.targets(idx)
            loss = fusion_loss(fusion, [tokens[m][idx] for m in MODALITIES], mask, target["verb"], target["noun"], cfg)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
        ckpt.save_epoch(ckpt_path, epoch, parts)
    fusion.eval()


def build_teacher(cfg: TeacherConfig, clips: dict[str, ClipSet], n_classes: dict[str, int], tokens_per_modality: dict,
                  *, batch_size: int, seed: int, work: Path) -> tuple[MultimodalModel, dict[str, dict[str, torch.Tensor]]]:
    """Pre-train + freeze the extractors, cache their tokens for every split in `clips`, train the fusion.

    Returns the teacher (extractors + fusion, ready to export) and its cached tokens per split.
    """
    torch.manual_seed(seed)
    extractors = build_extractors(cfg)
    for m in MODALITIES:
        pretrain(extractors[m], m, clips["train"], n_classes, epochs=cfg.pretrain_epochs,
                 positions=cfg.pretrain_positions, lr=cfg.pretrain_lr, batch_size=batch_size, seed=seed,
                 ckpt_path=work / f"extractor_{m}.pt")
    tokens = {split: {m: cached_tokens(extractors[m], getattr(cs, m), work / "tokens" / f"{split}_{m}.pt", batch_size,
                                       f"teacher {m} tokens ({split})")
                      for m in MODALITIES}
              for split, cs in clips.items()}
    dims = {m: extractors[m].out_dim for m in MODALITIES}
    fusion = Fusion(tokens_per_modality, dims, cfg.dim, cfg.layers, cfg.heads, cfg.ff, n_classes["verb"],
                    n_classes["noun"], missing="learned", dropout=cfg.dropout)
    train_fusion(fusion, tokens["train"], clips["train"], cfg, batch_size=batch_size, seed=seed,
                 ckpt_path=work / "fusion.pt")
    teacher = MultimodalModel.from_parts(teacher_model_config(cfg, tokens_per_modality), extractors, fusion).eval()
    return teacher, tokens


@torch.no_grad()
def subset_logits(fusion: Fusion, tokens: dict[str, torch.Tensor], batch_size: int = 512) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits for every clip on every modality subset: verb [7, n, n_verb], noun [7, n, n_noun] (SUBSETS order)."""
    fusion.eval()
    n = tokens["V"].shape[0]
    verbs, nouns = [], []
    for subset in SUBSETS:
        v_parts, n_parts = [], []
        for s in range(0, n, batch_size):
            batch = [tokens[m][s:s + batch_size] for m in MODALITIES]
            v, o = fusion(*batch, subset_mask(subset, batch[0].shape[0]))
            v_parts.append(v)
            n_parts.append(o)
        verbs.append(torch.cat(v_parts))
        nouns.append(torch.cat(n_parts))
    return torch.stack(verbs), torch.stack(nouns)
