"""Parameters and MFLOPs of a model, per streaming step and per whole prediction window.

FLOPs are those torch.utils.flop_counter counts (convolutions and matrix products, 2 per multiply-add;
normalisation and activations are not counted), for one input with batch size 1.
"""
from __future__ import annotations

import torch
from torch.utils.flop_counter import FlopCounterMode

from edge.preprocess.config import PreprocessConfig
from trainer.models import MODALITIES, MultimodalModel, example_inputs


def mflops(module: torch.nn.Module, *args: torch.Tensor) -> float:
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        module(*args)
    return counter.get_total_flops() / 1e6


def model_costs(model: MultimodalModel, pre: PreprocessConfig) -> dict[str, float]:
    """Params (millions) and MFLOPs: per sampled frame (V + F encoders), per audio hop (A encoder),
    per fusion call, and per whole window (every token encoded + one fusion call)."""
    model = model.eval()
    enc = {m: mflops(model.encoders[m], x) for m, x in example_inputs(pre).items()}
    tokens = {"V": pre.video_tokens, "F": pre.flow_tokens, "A": pre.audio_tokens}
    dims = {m: model.fusion.embed[m].in_features for m in MODALITIES}
    fusion = mflops(model.fusion, *(torch.zeros(1, tokens[m], dims[m]) for m in MODALITIES), torch.ones(1, 3))
    return {
        "params_m": sum(p.numel() for p in model.parameters()) / 1e6,
        "mflops_per_sampled_frame": enc["V"] + enc["F"],
        "mflops_per_audio_hop": enc["A"],
        "mflops_per_fusion_call": fusion,
        "mflops_whole_window": sum(tokens[m] * enc[m] for m in MODALITIES) + fusion,
    }
