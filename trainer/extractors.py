"""Teacher stage 1: one feature extractor per modality, pre-trained on that modality's own labels, then frozen
(`PretrainStep` below, through trainer.loop.fit; the student's warm start uses the same heads and loss).

Extractor specs (TeacherConfig.extractors, one per modality):
  "conv"                          a TokenEncoder with the teacher's (larger) widths, trained from scratch;
  "torchvision:<arch>"            a torchvision model, random init;
  "torchvision:<arch>:<weights>"  with pre-trained weights, by torchvision weights name (e.g. IMAGENET1K_V1,
                                  downloaded by torchvision) or by the path of a local state-dict file.
Every extractor maps one frame / flow field / log-mel window [B, C, H, W] to one token [B, out_dim].
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from edge.errors import ConfigError
from trainer import distributed as ddp
from trainer.data.loaders import presence, targets
from trainer.loop import connected_zero
from trainer.models import IN_CHANNELS, MODALITIES, ModelConfig, MultimodalModel, TokenEncoder

# Labels each modality's extractor is pre-trained on (V sees both; F sees motion; A hears the digit).
PRETRAIN_HEADS = {"V": ("noun", "verb"), "F": ("verb",), "A": ("noun",)}
_HEAD_ATTRS = ("fc", "classifier", "head", "heads")


class TorchvisionExtractor(nn.Module):
    """A torchvision classifier without its head; a 1x1 conv maps flow (2 ch) / log-mel (1 ch) to 3 channels."""

    def __init__(self, arch: str, weights: str | None, in_ch: int) -> None:
        super().__init__()
        import torchvision

        if arch not in torchvision.models.list_models():
            raise ConfigError(f"unknown torchvision model {arch!r}.")
        local = weights is not None and Path(weights).is_file()
        if weights is not None and not local and weights not in torchvision.models.get_model_weights(arch).__members__:
            raise ConfigError(f"torchvision model {arch!r} has no weights named {weights!r}, and no file {weights!r} exists.")
        try:
            net = torchvision.models.get_model(arch, weights=None if local else weights)
        except OSError as exc:
            raise ConfigError(f"could not fetch torchvision weights {weights!r} for {arch!r} ({exc}); "
                              "pass a local state-dict path instead.") from None
        if local:
            try:
                state = torch.load(weights, map_location="cpu", weights_only=True)
                net.load_state_dict(state)
            except Exception as exc:  # pickle, zip and key-mismatch errors all mean "not this model's weights"
                raise ConfigError(f"{weights} is not a state dict of torchvision {arch!r}: "
                                  f"{str(exc).splitlines()[0][:160]}") from None
        for attr in _HEAD_ATTRS:
            if hasattr(net, attr):
                setattr(net, attr, nn.Identity())
                break
        else:
            raise ConfigError(f"torchvision model {arch!r} has no classifier head ({'/'.join(_HEAD_ATTRS)}) to remove.")
        self.adapter = None
        if in_ch != 3:
            self.adapter = nn.Conv2d(in_ch, 3, 1, bias=False)
            with torch.no_grad():  # start as channel replication: output channel c = input channel c % in_ch
                self.adapter.weight.zero_()
                for c in range(3):
                    self.adapter.weight[c, c % in_ch] = 1.0
        self.net = net
        self.in_ch = in_ch
        with torch.no_grad():
            self.out_dim = int(self.eval()(torch.zeros(1, in_ch, 64, 64)).shape[1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.adapter is not None:
            x = self.adapter(x)
        return self.net(x).flatten(1)


def make_extractor(spec: str, modality: str, widths: tuple, token_dim: int) -> nn.Module:
    """Build the extractor named by `spec` for `modality`; it has an `out_dim` attribute."""
    in_ch = IN_CHANNELS[modality]
    if spec == "conv":
        enc = TokenEncoder(in_ch, tuple(widths), token_dim)
        enc.out_dim = token_dim
        return enc
    kind, _, rest = spec.partition(":")
    if kind == "torchvision" and rest:
        arch, _, weights = rest.partition(":")
        return TorchvisionExtractor(arch, weights or None, in_ch)
    raise ConfigError(f"unknown extractor {spec!r} for {modality}; use 'conv' or 'torchvision:<arch>[:<weights>]'.")


class ProjectedExtractor(nn.Module):
    """An extractor followed by a linear map to the student's token width: a bring-your-own video backbone."""

    def __init__(self, extractor: nn.Module, token_dim: int) -> None:
        super().__init__()
        self.extractor = extractor
        self.proj = nn.Linear(extractor.out_dim, token_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.extractor(x))


def video_backbone(spec: str, token_dim: int) -> nn.Module:
    """The student's video encoder `spec` = "torchvision:<arch>[:<state-dict path or weights name>]": the network
    without its head, its 1x1 input adapter passing the frame's RGB through and starting the frame-difference
    channels at zero weight (so it starts as the RGB network it was trained as), then a projection to the token."""
    kind, _, rest = spec.partition(":")
    arch, _, weights = rest.partition(":")
    if kind != "torchvision" or not arch:
        raise ConfigError(f"unknown video backbone {spec!r}; use 'torchvision:<arch>[:<state-dict path>]'.")
    return ProjectedExtractor(TorchvisionExtractor(arch, weights or None, IN_CHANNELS["V"]), token_dim)


def build_model(cfg: ModelConfig, n_verb: int, n_noun: int) -> MultimodalModel:
    """The multimodal model `cfg` describes, whatever its video encoder (conv, or a torchvision backbone)."""
    video = None if cfg.video_encoder == "conv" else video_backbone(cfg.video_encoder, cfg.token_dim)
    return MultimodalModel(cfg, n_verb, n_noun, video)


def pretrain_heads(extractor: nn.Module, modality: str, n_classes: dict[str, int]) -> nn.ModuleDict:
    """The linear heads an extractor is pre-trained with (PRETRAIN_HEADS), on its `out_dim` features."""
    return nn.ModuleDict({h: nn.Linear(extractor.out_dim, n_classes[h]) for h in PRETRAIN_HEADS[modality]})


def pretrain_loss(extractor: nn.Module, heads: nn.ModuleDict, modality: str, x: torch.Tensor,
                  labels: dict[str, torch.Tensor]) -> tuple[torch.Tensor, int]:
    """Summed CE of every head on single frames / windows `x` [B, C, H, W]; and how many the first head got right.

    `labels` per head: class indices [B] or soft targets [B, classes]."""
    feats = extractor(x)
    loss, correct = 0.0, 0
    for h, head in heads.items():
        logits = head(feats)
        loss = loss + F.cross_entropy(logits, labels[h])
        if h == PRETRAIN_HEADS[modality][0]:
            hard = labels[h].argmax(1) if labels[h].dim() > 1 else labels[h]
            correct = int((logits.argmax(1) == hard).sum())
    return loss, correct


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
        loss = connected_zero(self)
        for i, m in enumerate(MODALITIES):
            rows = torch.nonzero(present[:, i] > 0).flatten()
            if not len(rows):
                continue
            steps = batch[m].shape[1]
            pos = torch.as_tensor([int(np.random.default_rng([self.seed, epoch, int(index[r]), i]).integers(steps))
                                   for r in rows])
            x = batch[m][rows.to(batch[m].device), pos.to(batch[m].device)].to(device)
            labels = {h: targets(batch, h).cpu()[rows].to(device) for h in self.heads[m]}
            part, hits = pretrain_loss(self.encoders[m], self.heads[m], m, x, labels)
            loss = loss + float(weight[i]) * part
            self.tally[i] += torch.tensor([float(hits), float(len(rows))])
        return loss
