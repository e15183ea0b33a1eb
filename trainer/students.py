"""Students (stage 2): one architecture, three trainings (METHOD.md).

  baseline        CE, no modality dropout, a missing modality's tokens are zeros   (missing="zeros")
  baseline_delta  modality dropout (resampled so one stays) + learned modality/position tokens, CE
  karmma_s        baseline_delta + alpha * T^2 * KL(teacher || student) + (1 - alpha) * CE per head,
                  the teacher predicting on the same modality subset as the student (a `kd_all` share of the KD
                  term: on all the sample's modalities instead); plus, per modality named
                  in `student.token_kd`, token KD: 1 - cos(linear(student token), teacher extractor token)
trainer.stages trains them (StudentStep); here: the model, its forward and its loss.
"""
from __future__ import annotations

import torch
from torch.nn import functional as F

from trainer.config import StudentConfig
from trainer.models import MODALITIES, ModelConfig, MultimodalModel

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
