"""Students (stage 2): one architecture, three trainings (METHOD.md).

  baseline        CE, no modality dropout, a missing modality's tokens are zeros   (missing="zeros")
  baseline_delta  modality dropout (resampled so one stays) + learned modality/position tokens, CE
  karmma_s        baseline_delta + alpha * T^2 * KL(teacher || student) + (1 - alpha) * CE per head,
                  the teacher predicting on the same modality subset as the student (a `kd_all` share of the KD
                  term: on all the sample's modalities instead); plus, per modality named
                  in `student.token_kd`, token KD: 1 - cos(linear(student token), teacher extractor token)
Here: the model, its forward, its loss, and `MultimodalStep`, the step that trains a multimodal model through
trainer.loop.fit in any of the modes (the students; the teacher's end-to-end stage; fine-tuning).
"""
from __future__ import annotations

import torch
from torch.nn import functional as F

from torch import nn

from trainer import distributed as ddp
from trainer.augment import mask_spectrograms
from trainer.config import StudentConfig, token_kd_weights
from trainer.data.loaders import presence, targets
from trainer.loop import Run, weights_digest
from trainer.masks import drop_mask
from trainer.models import MODALITIES, Fusion, ModelConfig, MultimodalModel

MODES = ("baseline", "baseline_delta", "karmma_s")


def student_config(cfg: StudentConfig, mode: str, tokens: dict[str, int]) -> ModelConfig:
    return ModelConfig(**{**cfg.model, "missing": "zeros" if mode == "baseline" else "learned", "tokens": dict(tokens)})


def encode_present(model: MultimodalModel, inputs: dict[str, torch.Tensor],
                   mask: torch.Tensor) -> list[torch.Tensor]:
    """Each modality's tokens [B, T, token_dim], its encoder run only on the rows where it is present (zeros
    elsewhere).

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
    return tokens


def kd_loss(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """T^2 * KL(softmax(teacher / T) || softmax(student / T)), averaged over the batch."""
    return F.kl_div(F.log_softmax(student / temperature, 1), F.log_softmax(teacher / temperature, 1),
                    log_target=True, reduction="batchmean") * temperature ** 2


def token_kd_loss(projected: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Mean over rows and positions of 1 - cos(student token projected to the teacher's width, teacher token):
    the student's encoder pulled toward what the teacher's extractor sees in the same frame / window."""
    return (1 - F.cosine_similarity(projected, teacher.to(projected.dtype), dim=-1)).mean()


def student_loss(verb: torch.Tensor, noun: torch.Tensor, target_verb: torch.Tensor, target_noun: torch.Tensor,
                 cfg: StudentConfig, teacher: tuple[torch.Tensor, torch.Tensor] | None = None,
                 teacher_all: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
    """CE per head (targets: class indices or soft targets); with the teacher's (verb, noun) logits on the same
    modality subset, KARMMA_S's alpha * T^2 * KL(teacher || student) + (1 - alpha) * CE. With `teacher_all`, its
    logits on all the sample's modalities, a `student.kd_all` share of the KD term is toward those instead."""
    ce = F.cross_entropy(verb, target_verb) + F.cross_entropy(noun, target_noun)
    if teacher is None:
        return ce
    kd = kd_loss(verb, teacher[0], cfg.temperature) + kd_loss(noun, teacher[1], cfg.temperature)
    if teacher_all is not None and cfg.kd_all:
        kd_all = kd_loss(verb, teacher_all[0], cfg.temperature) + kd_loss(noun, teacher_all[1], cfg.temperature)
        kd = (1 - cfg.kd_all) * kd + cfg.kd_all * kd_all
    return cfg.alpha * kd + (1 - cfg.alpha) * ce


class MultimodalStep(nn.Module):
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
        mask = drop_mask(index, presence(batch).cpu(), self.p_drop, self.run.seed, epoch).to(device)
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
