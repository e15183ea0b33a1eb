"""Teacher extractor factory: conv extractors, and torchvision models with weights from a local state-dict file."""
# Tier: unit.
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("torchvision")

from edge.errors import ConfigError  # noqa: E402
from trainer.extractors import make_extractor  # noqa: E402
from trainer.models import IN_CHANNELS  # noqa: E402

ARCH = "mobilenet_v3_small"   # small, so the test stays fast


@pytest.fixture(scope="module")
def state_dict_file(tmp_path_factory):
    import torchvision

    torch.manual_seed(0)
    net = torchvision.models.get_model(ARCH, weights=None)
    path = tmp_path_factory.mktemp("weights") / f"{ARCH}.pt"
    torch.save(net.state_dict(), path)
    return path, net.state_dict()


@pytest.mark.parametrize("modality,size", [("V", (64, 64)), ("F", (64, 64)), ("A", (64, 98))])
def test_torchvision_extractor_loads_local_state_dict(state_dict_file, modality, size):
    channels = IN_CHANNELS[modality]       # V: frame + difference to the previous frame (6)
    path, saved = state_dict_file
    ext = make_extractor(f"torchvision:{ARCH}:{path}", modality, (), 0).eval()
    loaded = ext.net.state_dict()
    for key, value in saved.items():
        if key in loaded:                       # the classifier head was removed
            assert torch.equal(loaded[key], value), key
    assert "features.0.0.weight" in loaded
    with torch.no_grad():
        tokens = ext(torch.randn(2, channels, *size))
    assert tokens.shape == (2, ext.out_dim) and ext.out_dim == 576


def test_torchvision_extractor_differs_from_random_init(state_dict_file):
    path, saved = state_dict_file
    torch.manual_seed(123)
    random_init = make_extractor(f"torchvision:{ARCH}", "V", (), 0)
    assert not torch.equal(random_init.net.state_dict()["features.0.0.weight"], saved["features.0.0.weight"])


def test_conv_extractor_token_width():
    ext = make_extractor("conv", "F", (8, 16), 24)
    assert ext(torch.randn(3, 2, 64, 64)).shape == (3, 24) and ext.out_dim == 24


@pytest.mark.parametrize("spec,message", [
    ("resnet", "unknown extractor"),
    ("torchvision:no_such_net", "unknown torchvision model"),
    (f"torchvision:{ARCH}:NO_SUCH_WEIGHTS", "no weights named"),
])
def test_bad_extractor_specs_are_one_sentence(spec, message):
    with pytest.raises(ConfigError, match=message):
        make_extractor(spec, "V", (8,), 8)


def test_state_dict_of_another_model_is_rejected(tmp_path):
    path = tmp_path / "other.pt"
    torch.save({"weight": torch.zeros(3)}, path)
    with pytest.raises(ConfigError, match="is not a state dict"):
        make_extractor(f"torchvision:{ARCH}:{path}", "V", (), 0)
