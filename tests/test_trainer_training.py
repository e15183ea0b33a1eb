"""Training mechanics: dropout masks, the encoder-skipping forward, KD loss, config overrides, resuming."""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from edge.errors import ConfigError  # noqa: E402
from trainer import ckpt  # noqa: E402
from trainer.clips import ClipSet  # noqa: E402
from trainer.config import StudentConfig, load_config  # noqa: E402
from trainer.masks import SUBSETS, random_drop, subset_index, subset_mask  # noqa: E402
from trainer.models import IN_CHANNELS, ModelConfig, MultimodalModel  # noqa: E402
from trainer.students import forward_present, kd_loss, train_student  # noqa: E402

TOKENS = {"V": 8, "F": 8, "A": 5}
TINY = {"video_widths": [4, 8], "flow_widths": [4, 8], "audio_widths": [4, 8], "token_dim": 8, "dim": 16,
        "ff": 16, "heads": 2, "layers": 1, "dropout": 0.0}


def test_random_drop_never_drops_everything_and_follows_p():
    gen = torch.Generator().manual_seed(0)
    mask = random_drop(20000, 0.9, gen)
    assert (mask.sum(1) > 0).all()
    mask = random_drop(20000, 0.3, gen)
    # P(missing | not all missing) = (p - p^3) / (1 - p^3)
    assert abs((1 - mask.mean().item()) - (0.3 - 0.027) / (1 - 0.027)) < 0.01
    assert torch.equal(random_drop(5, 0.0), torch.ones(5, 3))


def test_subset_index_matches_subset_masks():
    for i, subset in enumerate(SUBSETS):
        assert subset_index(subset_mask(subset, 2)).tolist() == [i, i]


@pytest.mark.parametrize("missing", ["learned", "zeros"])
def test_forward_present_equals_full_forward(missing):
    torch.manual_seed(0)
    model = MultimodalModel(ModelConfig(**TINY, missing=missing), 8, 10).eval()
    b = 7
    inputs = {"V": torch.randn(b, 8, IN_CHANNELS["V"], 64, 64), "F": torch.randn(b, 8, 2, 64, 64), "A": torch.randn(b, 5, 1, 64, 98)}
    mask = random_drop(b, 0.5, torch.Generator().manual_seed(1))
    mask[0] = torch.tensor([0.0, 0.0, 1.0])
    with torch.no_grad():
        for want, got in zip(model(inputs, mask), forward_present(model, inputs, mask)):
            torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_kd_loss_is_zero_only_for_matching_distributions():
    logits = torch.randn(4, 8)
    assert kd_loss(logits, logits, 2.0).abs().item() < 1e-6
    assert kd_loss(logits, torch.randn(4, 8), 2.0).item() > 0.01


def test_config_overrides_and_errors(tmp_path):
    cfg = load_config(None, ["student.epochs=3", "data.levels={noise_std: 4.0}", "teacher.infonce=true"])
    assert cfg.student.epochs == 3 and cfg.data.levels == {"noise_std": 4.0} and cfg.teacher.infonce is True
    with pytest.raises(ConfigError, match="unknown key"):
        load_config(None, ["student.epoch=3"])
    with pytest.raises(ConfigError, match="section.key=value"):
        load_config(None, ["student.epochs"])
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")


def _clips(n: int = 24) -> ClipSet:
    gen = torch.Generator().manual_seed(5)
    verb, noun = torch.randint(0, 8, (n,), generator=gen), torch.randint(0, 10, (n,), generator=gen)
    return ClipSet(V=torch.randn(n, 8, IN_CHANNELS["V"], 64, 64, generator=gen).half(),
                   F=torch.randn(n, 8, 2, 64, 64, generator=gen).half(), A=torch.randn(n, 5, 1, 64, 98, generator=gen).half(),
                   verb=verb, noun=noun, verb_t=torch.eye(8)[verb], noun_t=torch.eye(10)[noun])


def test_killed_student_training_resumes_to_the_same_weights(tmp_path, monkeypatch):
    cfg = StudentConfig(model=TINY, epochs=2, lr=0.01)
    clips = _clips()
    kwargs = dict(batch_size=8, seed=0)
    n_classes = {"verb": 8, "noun": 10}
    straight = train_student("baseline_delta", cfg, clips, n_classes, TOKENS, ckpt_path=tmp_path / "a.pt", **kwargs)

    real_save = ckpt.save_atomic

    def save_then_die(obj, path):
        real_save(obj, path)
        raise KeyboardInterrupt  # killed right after the first epoch's checkpoint

    monkeypatch.setattr(ckpt, "save_atomic", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        train_student("baseline_delta", cfg, clips, n_classes, TOKENS, ckpt_path=tmp_path / "b.pt", **kwargs)
    monkeypatch.setattr(ckpt, "save_atomic", real_save)
    assert ckpt.load(tmp_path / "b.pt")["epoch"] == 0
    resumed = train_student("baseline_delta", cfg, clips, n_classes, TOKENS, ckpt_path=tmp_path / "b.pt", **kwargs)
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        torch.testing.assert_close(a, b, msg=name)
    assert not list(tmp_path.glob(".*")), "no temporary checkpoint left behind"


def test_resume_on_different_clips_is_refused(tmp_path):
    from trainer.benchmark import _check_same_clips

    _check_same_clips(tmp_path, {"train": "a", "val": "b"})
    _check_same_clips(tmp_path, {"train": "a", "test": "c"})        # same clips, a new split: fine
    with pytest.raises(ConfigError, match="different train clips"):
        _check_same_clips(tmp_path, {"train": "changed", "val": "b"})
