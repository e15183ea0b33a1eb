"""Exported bundles compute what the torch model computes, on every modality subset (student and teacher)."""
# Tier: unit.
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from edge.bundle import load_bundle  # noqa: E402
from edge.preprocess import PreprocessConfig  # noqa: E402
from trainer.config import TeacherConfig  # noqa: E402
from trainer.evaluation import bundle_callables  # noqa: E402
from trainer.export import export_bundle  # noqa: E402
from edge.modalities import SUBSETS  # noqa: E402
from trainer.masks import subset_mask  # noqa: E402
from trainer.models import IN_CHANNELS, MODALITIES, Fusion, ModelConfig, MultimodalModel  # noqa: E402
from trainer.teacher import build_extractors, teacher_model_config  # noqa: E402

LABELS = {"verb": [f"v{i}" for i in range(8)], "noun": [str(i) for i in range(10)]}
TOKENS = {"V": 8, "F": 8, "A": 5}


def _student(missing: str) -> MultimodalModel:
    torch.manual_seed(1)
    return MultimodalModel(ModelConfig(missing=missing), 8, 10)


def _teacher() -> MultimodalModel:
    """A teacher with a different token width per modality, as torchvision extractors give."""
    torch.manual_seed(2)
    cfg = TeacherConfig(widths=(8, 16, 32), token_dim=24, dim=32, ff=64)
    extractors = build_extractors(cfg)
    extractors["A"].proj = torch.nn.Linear(32, 40)   # audio tokens 40 wide, video/flow 24
    fusion = Fusion(TOKENS, {"V": 24, "F": 24, "A": 40}, 32, 2, 4, 64, 8, 10)
    return MultimodalModel.from_parts(teacher_model_config(cfg, TOKENS), extractors, fusion)


def _perturb_running_stats(model: MultimodalModel) -> None:
    """Non-trivial BatchNorm statistics, so eval-mode export is really exercised."""
    gen = torch.Generator().manual_seed(3)
    for mod in model.modules():
        if isinstance(mod, torch.nn.BatchNorm2d):
            mod.running_mean.copy_(torch.randn(mod.running_mean.shape, generator=gen) * 0.1)
            mod.running_var.copy_(torch.rand(mod.running_var.shape, generator=gen) + 0.5)


@pytest.mark.parametrize("make,kind", [(lambda: _student("learned"), "student"), (lambda: _student("zeros"), "student"),
                                       (_teacher, "teacher")], ids=["student-learned", "student-zeros", "teacher"])
def test_onnx_runtime_matches_torch_on_every_subset(make, kind, tmp_path):
    model = make()
    _perturb_running_stats(model)
    model.eval()
    pre = PreprocessConfig()
    path = export_bundle(model, pre, LABELS, tmp_path / kind, name=f"test-{kind}", kind=kind)
    bundle = load_bundle(path)
    assert bundle.manifest["kind"] == kind
    assert bundle.manifest["token_dim"] == {m: model.fusion.embed[m].in_features for m in MODALITIES}
    encode, fuse = bundle_callables(bundle)
    gen = torch.Generator().manual_seed(4)
    b = 3
    inputs = {"V": torch.randn(b, 8, IN_CHANNELS["V"], 64, 64, generator=gen), "F": torch.randn(b, 8, 2, 64, 64, generator=gen),
              "A": torch.randn(b, 5, 1, 64, 98, generator=gen)}
    onnx_tokens = {m: encode(m, inputs[m].flatten(0, 1)).reshape(b, TOKENS[m], -1) for m in MODALITIES}
    with torch.no_grad():
        for m in MODALITIES:
            np.testing.assert_allclose(onnx_tokens[m], model.encode(m, inputs[m]), atol=1e-4, rtol=1e-4)
        outputs = set()
        for subset in SUBSETS:
            mask = subset_mask(subset, b)
            want = model(inputs, mask)
            got = fuse(*(onnx_tokens[m] for m in MODALITIES), mask)
            for w, g in zip(want, got):
                np.testing.assert_allclose(g, w, atol=1e-4, rtol=1e-4, err_msg=f"subset {subset}")
            outputs.add(tuple(np.round(got[0][0].numpy(), 4)))
        assert len(outputs) == len(SUBSETS), "the mask must change the output"
