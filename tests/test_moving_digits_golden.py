"""What the benchmark renders must not change unnoticed, on any CPU.

Exact bytes differ between CPUs (OpenCV's and numpy's SIMD paths round differently), so the renderer's output is
pinned by `RENDER_VERSION` and golden statistics of 8 clips (one per shipped verb) and a session at fixed seeds,
compared within tolerances far above rounding noise and far below what any change of a draw or a nuisance moves.
A deliberate change bumps `RENDER_VERSION` and rewrites the golden file:
    KARMMA_WRITE_GOLDEN=1 .venv/bin/python -m pytest -q tests/test_moving_digits_golden.py
"""
# Tier: unit.
from __future__ import annotations

import json
import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge.moving_digits import NuisanceLevels, load_sources, render_clip, render_session
from edge.moving_digits.render import RENDER_VERSION

GOLDEN = Path(__file__).with_name("golden") / "moving_digits_render.json"
PIXEL_TOL = 0.25        # grey levels (0-255) on a mean or a 4x4 block mean; one-level rounding moves them < 0.01
AUDIO_RTOL = 1e-3       # relative, on RMS and peak


def stats(frames: np.ndarray, audio: np.ndarray) -> dict:
    """Per-item statistics: pixel mean / std, the time-mean image as 4x4 block means of grey, mean |frame
    difference|, audio RMS and peak."""
    grey = frames.astype(np.float64).mean(axis=3)
    blocks = cv2.resize(grey.mean(axis=0), (4, 4), interpolation=cv2.INTER_AREA)
    return {"mean": float(frames.mean()), "std": float(frames.std()), "blocks": blocks.round(3).ravel().tolist(),
            "motion": float(np.abs(np.diff(grey, axis=0)).mean()),
            "audio_rms": float(np.sqrt(np.mean(audio.astype(np.float64) ** 2))),
            "audio_peak": float(np.abs(audio).max())}


def rendered() -> list[dict]:
    src = load_sources(None, ["george"], (0, 100))
    levels = NuisanceLevels()
    items = [render_clip(src, np.random.default_rng([11, verb]), verb, verb % 10, levels) for verb in range(8)]
    session = render_session(src, seed=5, n_actions=2, levels=levels)
    return [stats(c.frames, c.audio) for c in items] + [stats(session.frames, session.audio)]


def test_the_renderer_matches_its_versions_golden_statistics():
    got = rendered()
    if os.environ.get("KARMMA_WRITE_GOLDEN"):
        GOLDEN.write_text(json.dumps({"render_version": RENDER_VERSION, "items": got}, indent=1) + "\n")
    golden = json.loads(GOLDEN.read_text())
    assert golden["render_version"] == RENDER_VERSION, (
        "RENDER_VERSION changed: rewrite the golden file (see this module's docstring)")
    assert len(got) == len(golden["items"])
    for i, (g, want) in enumerate(zip(got, golden["items"])):
        for key in ("mean", "std", "motion"):
            assert g[key] == pytest.approx(want[key], abs=PIXEL_TOL), (i, key)
        assert np.allclose(g["blocks"], want["blocks"], atol=PIXEL_TOL), (i, "blocks")
        for key in ("audio_rms", "audio_peak"):
            assert g[key] == pytest.approx(want[key], rel=AUDIO_RTOL), (i, key)


def test_the_golden_statistics_see_a_changed_draw():
    """The tolerances are not so loose that another draw of the same verb passes: a different seed moves them."""
    src = load_sources(None, ["george"], (0, 100))
    golden = json.loads(GOLDEN.read_text())["items"]
    for verb in range(8):
        c = render_clip(src, np.random.default_rng([12, verb]), verb, verb % 10, NuisanceLevels())
        g = stats(c.frames, c.audio)
        assert not np.allclose(g["blocks"], golden[verb]["blocks"], atol=PIXEL_TOL), verb


def test_the_item_cache_is_keyed_by_explicit_versions_not_source_bytes(monkeypatch):
    import trainer.data.moving_digits as md

    dataset = md.MovingDigitsDataset("val", n_clips=4, seed=0, data_root=None, levels=NuisanceLevels())
    key = dataset.cache_key()
    assert md.items_version() == f"render{RENDER_VERSION}-pre{md.PREPROCESS_VERSION}-items{md.ITEM_VERSION}"
    for name in ("RENDER_VERSION", "PREPROCESS_VERSION", "ITEM_VERSION"):
        with monkeypatch.context() as m:
            m.setattr(md, name, getattr(md, name) + 1)
            assert dataset.cache_key() != key, name
    assert dataset.cache_key() == key
