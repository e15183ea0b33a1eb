"""Shared fixtures (the real data root, tests skip without it; a tiny random-weight bundle) and the test tiers.

Every test is in exactly one tier (markers registered in pyproject.toml):

- unit: in-process and fast (each about a second or less): no subprocess, socket, torchrun or multiprocessing, no
  PulseAudio, Chromium, camera or GPU. `make test-fast` runs this tier (`pytest -m unit`, under a minute).
- integration: everything else: subprocesses and CLI runs, sockets and HTTP servers, torchrun and process pools,
  real-time sessions and end-to-end training runs, and every `slow` test.
- device: needs a PulseAudio server, Chromium or a GPU (skips with a reason where absent).

A file's tier is at its top: `pytestmark = pytest.mark.integration` (or `device`; with `slow` in a list where
long) for a whole file, or a comment naming the individual tests marked `@pytest.mark.integration` (or `device`).
A test with neither mark is unit: the hook below marks it. `make test` runs all three tiers.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from edge.assets import default_data_root

REPO = Path(__file__).resolve().parent.parent
DATA_ROOT = default_data_root()          # the runtime's own rule ($KARMMA_DATA_ROOT, else ../shared/data); None: absent
TIERS = ("unit", "integration", "device")


def tier_problems(items) -> list[str]:
    """One line per test that is not in exactly one tier, or that is `slow` but unit (slow tests are not unit)."""
    problems = []
    for item in items:
        marks = {m.name for m in item.iter_markers()}
        tiers = [t for t in TIERS if t in marks]
        if len(tiers) != 1:
            problems.append(f"{item.nodeid}: {len(tiers)} tiers {tiers or ''}, needs exactly one of {list(TIERS)}")
        elif tiers == ["unit"] and "slow" in marks:
            problems.append(f"{item.nodeid}: slow but unit; mark it integration (or device)")
    return problems


@pytest.hookimpl(tryfirst=True)                   # before `-m` deselects by marker
def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.get_closest_marker("integration") is None and item.get_closest_marker("device") is None:
            item.add_marker(pytest.mark.unit)
    problems = tier_problems(items)
    if problems:
        raise pytest.UsageError("tests not in exactly one tier (see tests/conftest.py):\n" + "\n".join(problems))


@pytest.fixture(scope="session")
def data_root() -> Path:
    if DATA_ROOT is None:
        pytest.skip("the real data root is absent (set KARMMA_DATA_ROOT or place ../shared/data beside the checkout)")
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
