"""Teacher (stage 1): frozen per-modality extractors, tokens cached to disk, a fusion transformer trained on them.

Only the fusion block and heads train, on cached tokens, so the teacher is cheap to train (METHOD.md);
trainer.stages orders its stages; here: its parts, its loss and the step that trains the fusion (`FusionStep`).
Loss: CE per head, optional InfoNCE alignment of per-modality token averages, optional teacher-side
modality dropout (then the teacher has learned missing-modality tokens, which KARMMA_S relies on:
the teacher predicts on the same subset the student sees).
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from trainer.config import TeacherConfig
from trainer.data.loaders import targets
from trainer.loop import Run
from trainer.masks import drop_mask
from trainer.extractors import make_extractor
from trainer.models import MODALITIES, Fusion, ModelConfig


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
    """CE per head on the masked tokens (targets: class indices or soft targets), plus the optional InfoNCE
    alignment."""
    verb_logits, noun_logits = fusion(*tokens, mask)
    loss = F.cross_entropy(verb_logits, verb) + F.cross_entropy(noun_logits, noun)
    if cfg.infonce:
        loss = loss + cfg.infonce_weight * alignment_loss(fusion, tokens, mask, cfg.infonce_tau)
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
        mask = drop_mask(index, view["present"][index], cfg.p_drop, self.run.seed, epoch)
        tokens = [view[m][index].float().to(device) for m in MODALITIES]
        return fusion_loss(self.fusion, tokens, mask.to(device), targets(view, "verb")[index].to(device),
                           targets(view, "noun")[index].to(device), cfg)
