"""Shared fixtures: the real data root (tests skip without it) and a tiny random-weight bundle."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
DATA_ROOT = Path(os.environ.get("KARMMA_DATA_ROOT", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def data_root() -> Path:
    if not DATA_ROOT.is_dir():
        pytest.skip(f"real data root {DATA_ROOT} is absent (set KARMMA_DATA_ROOT or place ../shared/data)")
    return DATA_ROOT


@pytest.fixture(scope="session")
def random_bundle(tmp_path_factory) -> Path:
    """A student bundle exported from randomly initialised weights (the real export path)."""
    torch = pytest.importorskip("torch")
    from edge.preprocess import PreprocessConfig
    from trainer.export import export_bundle
    from trainer.models import ModelConfig, MultimodalModel

    torch.manual_seed(0)
    model = MultimodalModel(ModelConfig(), n_verb=8, n_noun=10)
    labels = {"verb": [f"verb{i}" for i in range(8)], "noun": [str(i) for i in range(10)]}
    return export_bundle(model, PreprocessConfig(), labels, tmp_path_factory.mktemp("bundles") / "random",
                         name="random-student")
