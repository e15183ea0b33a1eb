"""Student and teacher networks (METHOD.md) with the streaming split the runtime needs.

Encoders map ONE frame / flow field / audio window to ONE token, so the runtime encodes each input
once as it arrives; `Fusion` maps the per-modality token sequences plus an availability mask to
verb and noun logits. The same `Fusion` class serves teacher and student (they differ in widths).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from edge.modalities import MODALITIES
from edge.preprocess import PreprocessConfig

# Input channels of one frame / flow field / log-mel window under the preprocessing the trainer uses.
IN_CHANNELS = {"V": PreprocessConfig().video_channels, "F": 2, "A": 1}


def example_inputs(pre: PreprocessConfig) -> dict[str, torch.Tensor]:
    """One zero input per encoder, batch 1: a frame (video_input), a flow field, a log-mel window."""
    s = pre.frame_size
    return {"V": torch.zeros(1, pre.video_channels, s, s), "F": torch.zeros(1, 2, s, s),
            "A": torch.zeros(1, 1, pre.n_mels, pre.logmel_frames)}


def conv_stack(in_ch: int, widths: tuple[int, ...]) -> nn.Sequential:
    """3x3 stride-2 conv + BatchNorm + ReLU per width, then global average pooling."""
    layers: list[nn.Module] = []
    for w in widths:
        layers += [nn.Conv2d(in_ch, w, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(w), nn.ReLU(inplace=True)]
        in_ch = w
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    return nn.Sequential(*layers)


class TokenEncoder(nn.Module):
    """One input (frame, flow field or log-mel window) -> one token of `token_dim`."""

    def __init__(self, in_ch: int, widths: tuple[int, ...], token_dim: int) -> None:
        super().__init__()
        self.features = conv_stack(in_ch, widths)
        self.proj = nn.Linear(widths[-1], token_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.features(x))


class FusionLayer(nn.Module):
    """Pre-norm transformer encoder layer written with plain ops (exports and quantizes cleanly)."""

    def __init__(self, dim: int, heads: int, ff: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim)
        self.ff = nn.Sequential(nn.Linear(dim, ff), nn.GELU(), nn.Linear(ff, dim))
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        q, k, v = self.qkv(self.norm1(x)).reshape(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4).unbind(0)
        attn = torch.softmax(q @ k.transpose(-2, -1) * (d // self.heads) ** -0.5, dim=-1)
        x = x + self.drop(self.out((attn @ v).transpose(1, 2).reshape(b, n, d)))
        return x + self.drop(self.ff(self.norm2(x)))


class Fusion(nn.Module):
    """Tokens of V, F, A + availability mask [B, 3] -> (verb_logits, noun_logits).

    Embedding (METHOD.md): present  e_i^m = Linear_m(x_i^m) + t_mod^m + t_pos_i^m
                           missing  e_i^m = t_mod^m + t_pos_i^m          ("learned", Baseline w/ delta, KARMMA)
                           missing  e_i^m = Linear_m(0) + t_mod^m + t_pos_i^m   ("zeros", Baseline)
    The head is shared: applied to [CLS] and to each present modality's mean token, logits averaged.
    """

    def __init__(self, tokens: dict[str, int], token_dim: dict[str, int], dim: int, layers: int, heads: int,
                 ff: int, n_verb: int, n_noun: int, missing: str = "learned", dropout: float = 0.0) -> None:
        super().__init__()
        if missing not in ("learned", "zeros"):
            raise ValueError(f"missing must be 'learned' or 'zeros', got {missing!r}")
        self.missing = missing
        self.tokens = dict(tokens)
        self.embed = nn.ModuleDict({m: nn.Linear(token_dim[m], dim) for m in MODALITIES})
        self.t_mod = nn.ParameterDict({m: nn.Parameter(torch.randn(1, 1, dim) * 0.02) for m in MODALITIES})
        self.t_pos = nn.ParameterDict({m: nn.Parameter(torch.randn(1, tokens[m], dim) * 0.02) for m in MODALITIES})
        self.cls = nn.Parameter(torch.randn(1, 1, dim) * 0.02)
        self.layers = nn.ModuleList(FusionLayer(dim, heads, ff, dropout) for _ in range(layers))
        self.norm = nn.LayerNorm(dim)
        self.head_verb = nn.Sequential(nn.Linear(dim, dim), nn.GELU(), nn.Linear(dim, n_verb))
        self.head_noun = nn.Sequential(nn.Linear(dim, dim), nn.GELU(), nn.Linear(dim, n_noun))

    def forward(self, video_tokens: torch.Tensor, flow_tokens: torch.Tensor, audio_tokens: torch.Tensor,
                mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b = mask.shape[0]
        parts = [self.cls.expand(b, -1, -1)]
        for i, (m, x) in enumerate(zip(MODALITIES, (video_tokens, flow_tokens, audio_tokens))):
            present = mask[:, i].reshape(b, 1, 1)
            if self.missing == "zeros":
                content = self.embed[m](x * present)
            else:
                content = self.embed[m](x) * present
            parts.append(content + self.t_mod[m] + self.t_pos[m])
        h = torch.cat(parts, dim=1)
        for layer in self.layers:
            h = layer(h)
        h = self.norm(h)
        pooled = [h[:, 0]]
        weights = [torch.ones_like(mask[:, :1])]
        start = 1
        for i, m in enumerate(MODALITIES):
            n = self.tokens[m]
            pooled.append(h[:, start:start + n].mean(dim=1))
            weights.append(mask[:, i:i + 1])
            start += n
        stacked = torch.stack(pooled, dim=1)                       # [B, 4, dim]
        w = torch.cat(weights, dim=1).unsqueeze(-1)                # [B, 4, 1]
        verb = (self.head_verb(stacked) * w).sum(1) / w.sum(1)
        noun = (self.head_noun(stacked) * w).sum(1) / w.sum(1)
        return verb, noun


@dataclass
class ModelConfig:
    """Widths of one multimodal model (student or teacher)."""

    video_widths: tuple = (16, 32, 64, 96)
    flow_widths: tuple = (16, 32, 64, 96)
    audio_widths: tuple = (16, 32, 64)
    token_dim: int = 64
    dim: int = 64
    layers: int = 2
    heads: int = 4
    ff: int = 128
    dropout: float = 0.1
    missing: str = "learned"
    tokens: dict = field(default_factory=lambda: {"V": 8, "F": 8, "A": 5})
    video_encoder: str = "conv"      # or "torchvision:<arch>" (built by trainer.extractors.build_model; weights not kept)

    def to_dict(self) -> dict:
        return asdict(self)


class MultimodalModel(nn.Module):
    """Encoders + fusion. `forward` takes whole windows: V [B,T,C,S,S], F [B,T,2,S,S], A [B,T,1,M,W]."""

    def __init__(self, cfg: ModelConfig, n_verb: int, n_noun: int, video: nn.Module | None = None) -> None:
        """`video`: the video encoder when it is not the conv one (cfg.video_encoder names it; build such a model
        with trainer.extractors.build_model, which knows every encoder kind)."""
        super().__init__()
        self.cfg = cfg
        d = cfg.token_dim
        if video is None:
            if cfg.video_encoder != "conv":
                raise ValueError(f"video encoder {cfg.video_encoder!r}: build the model with "
                                 "trainer.extractors.build_model.")
            video = TokenEncoder(IN_CHANNELS["V"], tuple(cfg.video_widths), d)
        self.encoders = nn.ModuleDict({
            "V": video,
            "F": TokenEncoder(IN_CHANNELS["F"], tuple(cfg.flow_widths), d),
            "A": TokenEncoder(IN_CHANNELS["A"], tuple(cfg.audio_widths), d),
        })
        self.fusion = Fusion(cfg.tokens, {m: d for m in MODALITIES}, cfg.dim, cfg.layers, cfg.heads, cfg.ff,
                             n_verb, n_noun, missing=cfg.missing, dropout=cfg.dropout)

    @classmethod
    def from_parts(cls, cfg: ModelConfig, encoders: nn.ModuleDict, fusion: Fusion) -> "MultimodalModel":
        """A model around given encoders and fusion (the teacher: frozen extractors of any kind + its fusion)."""
        model = cls.__new__(cls)
        nn.Module.__init__(model)
        model.cfg, model.encoders, model.fusion = cfg, encoders, fusion
        return model

    def encode(self, modality: str, x: torch.Tensor) -> torch.Tensor:
        """[B, T, C, H, W] -> [B, T, token_dim], each element encoded on its own (as when streaming)."""
        b, t = x.shape[:2]
        return self.encoders[modality](x.flatten(0, 1)).reshape(b, t, -1)

    def forward(self, inputs: dict[str, torch.Tensor], mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        tokens = [self.encode(m, inputs[m]) for m in MODALITIES]
        return self.fusion(*tokens, mask)
