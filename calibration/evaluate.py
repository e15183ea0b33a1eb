"""Clip-level inference of encoder / fusion ONNX models on a `ClipSet`, and the accuracies it scores.

Each clip's inputs are encoded once per encoder model; the fusion then runs once per modality subset,
with missing modalities' tokens zeroed and the mask saying so (what the live runtime feeds).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort

from edge.bundle import ENCODER_INPUT, FUSION_INPUT
from edge.modalities import SUBSETS, accuracy, subset_mask
from trainer.data.clip_set import ClipSet



def open_session(path: str | Path, threads: int = 1) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def encode(session: ort.InferenceSession, inputs: np.ndarray, batch: int = 256) -> np.ndarray:
    """[N, T, ...] per-token inputs (float16 or float32) -> [N, T, D] float32 tokens, each input encoded on its own."""
    n, t = inputs.shape[:2]
    flat = inputs.reshape(n * t, *inputs.shape[2:])
    name = session.get_inputs()[0].name
    out = [session.run(None, {name: flat[i:i + batch].astype(np.float32)})[0] for i in range(0, len(flat), batch)]
    return np.concatenate(out).reshape(n, t, -1)


def encode_clips(sessions: dict[str, ort.InferenceSession], clips: ClipSet) -> dict[str, np.ndarray]:
    """Tokens per modality ("V", "F", "A") of every clip, from the encoder sessions keyed by role."""
    return {m: encode(sessions[role], clips.inputs[m]) for m, (role, _) in ENCODER_INPUT.items()}


def fuse(session: ort.InferenceSession, tokens: dict[str, np.ndarray], subset: str,
         batch: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """(verb_logits, noun_logits) of every clip with only `subset`'s modalities present."""
    n = len(tokens["V"])
    feeds = {name: tokens[m] * np.float32(m in subset) for m, name in FUSION_INPUT.items()}
    feeds["mask"] = subset_mask(subset, n)
    verbs, nouns = [], []
    for i in range(0, n, batch):
        verb, noun = session.run(["verb_logits", "noun_logits"], {k: v[i:i + batch] for k, v in feeds.items()})
        verbs.append(verb)
        nouns.append(noun)
    return np.concatenate(verbs), np.concatenate(nouns)


def subset_logits(fusion: ort.InferenceSession,
                  tokens: dict[str, np.ndarray]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """(verb_logits, noun_logits) per subset key."""
    return {s: fuse(fusion, tokens, s) for s in SUBSETS}


def accuracy_table(logits: dict[str, tuple[np.ndarray, np.ndarray]], clips: ClipSet) -> dict[str, dict[str, float]]:
    """Per subset key: verb / noun / action accuracy in % (2 decimals)."""
    return {s: {k: round(a, 2) for k, a in accuracy(v, n, clips.verb, clips.noun).items()}
            for s, (v, n) in logits.items()}
