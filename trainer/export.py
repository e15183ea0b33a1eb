"""Export a trained MultimodalModel as a model bundle (per-modality encoders + fusion + manifest, and the torch
state dict `weights.pt` that `python -m trainer finetune --from` starts from; the runtime never reads it)."""
from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any, Mapping

import torch

from edge.bundle import ENCODER_INPUT, FUSION_INPUT, WEIGHTS, write_bundle
from edge.preprocess.config import PreprocessConfig
from trainer.models import MODALITIES, MultimodalModel, example_inputs

OPSET = 17


def _export(module: torch.nn.Module, args: tuple, input_names: list[str], output_names: list[str], path: Path) -> None:
    dynamic = {name: {0: "batch"} for name in input_names + output_names}
    torch.onnx.export(module, args, str(path), input_names=input_names, output_names=output_names,
                      dynamic_axes=dynamic, opset_version=OPSET, dynamo=False)


def export_bundle(model: MultimodalModel, pre: PreprocessConfig, labels: Mapping[str, list[str]], out_dir: str | Path,
                  *, name: str, kind: str = "student", metrics: Mapping[str, Any] | None = None,
                  temperatures: Mapping[str, float] | None = None, extra: Mapping[str, Any] | None = None,
                  actions: list[list[str]] | None = None) -> Path:
    """Write `model` as an fp32 bundle at `out_dir` and return its path. `actions` ([verb, noun] names): the only
    actions it may say (None: every verb-noun pair)."""
    model = model.eval().cpu()
    dims = {m: model.fusion.embed[m].in_features for m in MODALITIES}  # per modality: a teacher's may differ
    tokens = {"V": pre.video_tokens, "F": pre.flow_tokens, "A": pre.audio_tokens}
    if tokens != dict(model.cfg.tokens):
        raise ValueError(f"model tokens {model.cfg.tokens} do not match preprocessing {tokens}")
    with tempfile.TemporaryDirectory() as tmp, torch.no_grad():
        tmp = Path(tmp)
        files = {
            "video_encoder": tmp / "v.onnx", "flow_encoder": tmp / "f.onnx",
            "audio_encoder": tmp / "a.onnx", "fusion": tmp / "fusion.onnx", WEIGHTS: tmp / "weights.pt",
        }
        torch.save(model.state_dict(), files[WEIGHTS])
        example = example_inputs(pre)
        for m, (role, input_name) in ENCODER_INPUT.items():
            _export(model.encoders[m], (example[m],), [input_name], ["token"], files[role])
        fusion_args = tuple(torch.zeros(1, tokens[m], dims[m]) for m in MODALITIES) + (torch.ones(1, 3),)
        _export(model.fusion, fusion_args, [*(FUSION_INPUT[m] for m in MODALITIES), "mask"],
                ["verb_logits", "noun_logits"], files["fusion"])
        manifest = {
            "name": name, "kind": kind, "precision": "fp32", "modalities": list(MODALITIES),
            "tokens": tokens, "token_dim": dims,
            "preprocess": pre.to_dict(), "labels": {k: list(v) for k, v in labels.items()},
            **({"actions": [list(a) for a in actions]} if actions is not None else {}),
            "temperatures": dict(temperatures or {}), "metrics": dict(metrics or {}),
            "extra": {"model_config": model.cfg.to_dict(), **dict(extra or {})},
        }
        return write_bundle(out_dir, manifest, files)
