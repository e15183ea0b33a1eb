"""Training mechanics: dropout masks, the encoder-skipping forward, KD loss, config overrides, resuming."""
# Tier: unit.
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

import numpy as np  # noqa: E402

from edge.errors import ConfigError  # noqa: E402
from edge.modalities import MODALITIES, SUBSETS, accuracy, subset_key  # noqa: E402
from trainer import ckpt  # noqa: E402
from trainer import distributed as ddp  # noqa: E402
from trainer.data.clip_set import ClipSet  # noqa: E402
from trainer.config import StudentConfig, TeacherConfig, TrainerConfig, load_config  # noqa: E402
from trainer.data.registry import DatasetSpec
from trainer.masks import random_drop, subset_mask  # noqa: E402
from trainer.models import IN_CHANNELS, Fusion, ModelConfig, MultimodalModel  # noqa: E402
from trainer.loop import Run  # noqa: E402
from trainer.stages import Teacher, check_same_run, train_student, train_teacher  # noqa: E402
from trainer.students import MultimodalStep, encode_present, kd_loss, token_kd_loss  # noqa: E402

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


def test_subset_masks_and_keys_are_one_definition():
    for subset in SUBSETS:
        mask = subset_mask(subset, 2)                   # trainer's torch view of edge.modalities.subset_mask
        assert mask.dtype == torch.float32 and mask.shape == (2, 3)
        assert subset_key(mask[0].tolist()) == subset_key(dict(zip(MODALITIES, mask[1].tolist()))) == subset
    assert subset_key((0, 0, 0)) == ""


def test_action_accuracy_needs_verb_and_noun():
    verb_logits, noun_logits = np.eye(3)[[0, 1, 2, 0]], np.eye(3)[[0, 1, 0, 0]]
    acc = accuracy(verb_logits, noun_logits, np.array([0, 1, 2, 1]), np.array([0, 0, 0, 0]))
    assert acc == {"verb": 75.0, "noun": 75.0, "action": 50.0}     # rows 0 and 2 have both right


@pytest.mark.parametrize("missing", ["learned", "zeros"])
def test_encoding_only_present_modalities_equals_full_forward(missing):
    torch.manual_seed(0)
    model = MultimodalModel(ModelConfig(**TINY, missing=missing), 8, 10).eval()
    b = 7
    inputs = {"V": torch.randn(b, 8, IN_CHANNELS["V"], 64, 64), "F": torch.randn(b, 8, 2, 64, 64), "A": torch.randn(b, 5, 1, 64, 98)}
    mask = random_drop(b, 0.5, torch.Generator().manual_seed(1))
    mask[0] = torch.tensor([0.0, 0.0, 1.0])
    with torch.no_grad():
        for want, got in zip(model(inputs, mask), model.fusion(*encode_present(model, inputs, mask), mask)):
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
    rng = np.random.default_rng(5)
    verb, noun = rng.integers(0, 8, n), rng.integers(0, 10, n)
    inputs = {"V": rng.standard_normal((n, 8, IN_CHANNELS["V"], 64, 64)).astype(np.float16),
              "F": rng.standard_normal((n, 8, 2, 64, 64)).astype(np.float16),
              "A": rng.standard_normal((n, 5, 1, 64, 98)).astype(np.float16)}
    soft = {"verb": np.full((n, 8), 1 / 8, np.float32), "noun": np.eye(10, dtype=np.float32)[noun]}
    return ClipSet(inputs, verb, noun, soft, {"verb": [str(i) for i in range(8)], "noun": [str(i) for i in range(10)]},
                   key="random")


def _student_run(tmp_path, clips: ClipSet, mode: str = "baseline_delta", **student) -> Run:
    """A run on `clips` with a tiny student; token KD off unless `student` sets it."""
    cfg = TrainerConfig(student=StudentConfig(**{"model": TINY, "lr": 0.01, "token_kd": {}, **student}), batch_size=8)
    run = Run(DatasetSpec(), cfg, tmp_path, ddp.DistInfo())
    run.loaded[("train", None)] = clips            # the clips a MovingDigits run holds in memory
    return run


def _train(run: Run, mode: str, path) -> MultimodalModel:
    torch.manual_seed(1)
    model = MultimodalModel(ModelConfig(**TINY), 8, 10)
    teacher = Teacher(model, [{}], {})             # baselines read no teacher tokens
    return train_student(run, mode, teacher, model.encoders.state_dict(), path)


def test_students_train_on_soft_targets_from_memory(tmp_path):
    """Whole batches come from the ClipSet in memory, soft targets included (here a uniform verb target)."""
    clips = _clips()
    run = _student_run(tmp_path, clips, epochs=1)
    from trainer.data.loaders import make_loader

    loader, _ = make_loader(clips, run.info, 8, shuffle=True, seed=0, workers=2)
    batch = next(iter(loader))
    assert batch["V"].dtype == torch.float32 and batch["V"].shape == (8, 8, IN_CHANNELS["V"], 64, 64)
    assert batch["verb_t"].shape == (8, 8) and batch["index"].shape == (8,) and bool(batch["present"]["A"].all())
    torch.testing.assert_close(batch["V"][0], torch.from_numpy(clips.inputs["V"][int(batch["index"][0])]).float())
    for mode in ("baseline", "baseline_delta"):
        model = _train(run, mode, tmp_path / f"{mode}.pt")
        assert model.fusion.missing == ("zeros" if mode == "baseline" else "learned")


def _kd_parts(clips: ClipSet) -> tuple[MultimodalModel, dict, Fusion, dict]:
    """A tiny student, random teacher tokens of the clips (width 12), a teacher fusion over them, and the clips'
    first batch of 8 in order."""
    from trainer.data.loaders import make_loader

    torch.manual_seed(0)
    model = MultimodalModel(ModelConfig(**TINY), 8, 10).eval()
    steps = {m: clips.inputs[m].shape[1] for m in MODALITIES}
    view = {m: torch.randn(len(clips), steps[m], 12) for m in MODALITIES}
    teacher = Fusion(steps, {m: 12 for m in MODALITIES}, 16, 1, 2, 16, 8, 10).eval()
    loader, _ = make_loader(clips, ddp.DistInfo(), 8, shuffle=False, seed=0, workers=0)
    return model, view, teacher, next(iter(loader))


def test_token_kd_adds_the_cosine_to_the_teacher_extractor_tokens(tmp_path):
    """KARMMA_S with student.token_kd {V: w}: its loss is the logit-KD loss plus w * mean(1 - cos(linear(student
    V token), teacher V token)) over the samples' frames; the other trainings ignore the setting."""
    clips = _clips(8)
    model, view, teacher, batch = _kd_parts(clips)
    with_kd = MultimodalStep(model, "karmma_s", teacher, [view], _student_run(tmp_path, clips, token_kd={"V": 0.5}),
                          p_drop=0.0)
    plain = MultimodalStep(model, "karmma_s", teacher, [view], _student_run(tmp_path, clips), p_drop=0.0)
    assert list(with_kd.token_maps) == ["V"] and not list(plain.token_maps)
    with torch.no_grad():
        extra = with_kd(batch, 0) - plain(batch, 0)
        student = with_kd.token_maps["V"](model.encode("V", batch["V"]))
        cos = torch.nn.functional.cosine_similarity(student, view["V"][batch["index"]], dim=-1)
    torch.testing.assert_close(extra, 0.5 * (1 - cos).mean(), atol=1e-5, rtol=1e-5)
    delta = MultimodalStep(model, "baseline_delta", None, [view], _student_run(tmp_path, clips, token_kd={"V": 1.0}))
    assert not list(delta.token_maps)
    for bad, message in (("{X: 1.0}", "token_kd names 'X'"), ("{V: -1}", "weight >= 0"), ("{V: .nan}", "finite"),
                         ("V", "must be dict")):     # refused when the config loads, before any training
        with pytest.raises(ConfigError, match=message):
            load_config(None, [f"student.token_kd={bad}"])
    assert token_kd_loss(view["V"], view["V"]).abs().item() < 1e-6


def test_kd_all_moves_a_share_of_kd_toward_the_teacher_on_all_modalities(tmp_path):
    """student.kd_all = w: KARMMA_S's KD term is (1 - w) * KD toward the teacher on the student's subset + w * KD
    toward the teacher on every modality the sample has (not the dropped-out subset)."""
    from trainer.data.loaders import presence
    from trainer.masks import drop_mask
    from trainer.students import student_loss

    clips = _clips(8)
    model, view, teacher, batch = _kd_parts(clips)
    batch["present"]["A"][:3] = False                     # samples without audio: the teacher never sees theirs
    index = batch["index"]
    losses = {}
    for share in (0.0, 0.5, 1.0):
        step = MultimodalStep(model, "karmma_s", teacher, [view], _student_run(tmp_path, clips, kd_all=share), p_drop=0.7)
        with torch.no_grad():
            losses[share] = step(batch, 0)
    present = presence(batch)
    mask = drop_mask(index, present, 0.7, 0, 0)
    assert not bool((mask == 1).all()), "the test needs rows with a modality dropped"
    cfg = StudentConfig(model=TINY)
    with torch.no_grad():
        verb, noun = model.fusion(*encode_present(model, {m: batch[m] for m in MODALITIES}, mask), mask)
        tokens = [view[m][index] for m in MODALITIES]
        subset, everything = teacher(*tokens, mask), teacher(*tokens, present)
        want = {0.0: student_loss(verb, noun, batch["verb_t"], batch["noun_t"], cfg, subset),
                1.0: student_loss(verb, noun, batch["verb_t"], batch["noun_t"], cfg, everything)}
    for share in (0.0, 1.0):
        torch.testing.assert_close(losses[share], want[share], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(losses[0.5], (losses[0.0] + losses[1.0]) / 2, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(losses[0.0], losses[1.0])
    settings = MultimodalStep(model, "karmma_s", teacher, [view], _student_run(tmp_path, clips, kd_all=0.5)).settings()
    assert settings["kd_all"] == 0.5 and len(settings["teacher"]) == 12     # a resume under others is refused
    for bad in ("1.5", "-0.1", "true"):
        with pytest.raises(ConfigError, match="kd_all must be"):
            load_config(None, [f"student.kd_all={bad}"])


def _teacher(out, end_to_end_epochs: int) -> Teacher:
    cfg = TeacherConfig(widths=(4, 8), token_dim=8, dim=16, ff=16, heads=2, layers=1, pretrain_epochs=1,
                        pretrain_positions=1, fusion_epochs=1, end_to_end_epochs=end_to_end_epochs,
                        end_to_end_lr=0.01)
    run = Run(DatasetSpec(), TrainerConfig(teacher=cfg, batch_size=8), out, ddp.DistInfo())
    clips = _clips()
    run.loaded[("train", None)] = run.loaded[("test", None)] = clips
    return train_teacher(run)


def test_teacher_end_to_end_trains_extractors_and_fusion_and_recaches_their_tokens(tmp_path, monkeypatch):
    """teacher.end_to_end_epochs > 0: after the frozen stages, extractors and fusion train together; the teacher
    KARMMA_S distils from (its logits from cached tokens, its tokens for token KD) is the trained one, frozen."""
    frozen, trained = _teacher(tmp_path / "frozen", 0), _teacher(tmp_path / "e2e", 1)
    for part in ("encoders", "fusion"):
        before, after = dict(getattr(frozen.model, part).named_parameters()), getattr(trained.model, part)
        assert any(not torch.equal(before[k], p) for k, p in after.named_parameters()), f"{part} did not train"
    assert not any(p.requires_grad for p in trained.model.parameters()) and not trained.model.training
    clips = _clips()
    with torch.no_grad():
        for m in MODALITIES:
            tokens = trained.model.encode(m, torch.from_numpy(clips.inputs[m]).float())
            for view in (*trained.views, trained.eval_view):
                torch.testing.assert_close(view[m].float(), tokens, atol=2e-2, rtol=2e-2)
    assert (tmp_path / "e2e" / "teacher" / "end_to_end.pt").is_file()
    monkeypatch.setattr(MultimodalStep, "forward", lambda *args: pytest.fail("stage 4 trained again on resume"))
    again = _teacher(tmp_path / "e2e", 1)                  # resumed from its checkpoints, not trained again
    for (name, a), b in zip(trained.model.state_dict().items(), again.model.state_dict().values()):
        torch.testing.assert_close(a, b, msg=name)


def test_audio_masks_hide_mel_bands_and_frame_spans_drawn_per_sample():
    """SpecAugment (teacher.audio_mask): a band of mel bins hidden in every window of a sample (one voice), spans of
    frames per window, filled with the window's mean; the same sample gets the same masks in any batch; 0 = off."""
    from trainer.augment import mask_spectrograms

    x = torch.randn(3, 5, 1, 64, 98)
    before = x.clone()
    out = mask_spectrograms(x, torch.tensor([4, 9, 11]), 0, 2, 10, 12)
    assert out.shape == x.shape and not torch.equal(out, x) and torch.equal(x, before), "a masked copy, not in place"
    changed = out != x                                                     # [3, 5, 1, 64, 98]
    assert changed.float().mean() < 0.5, "most of each window stays"
    for row in range(3):
        for t in range(5):
            window, hidden = out[row, t, 0], changed[row, t, 0]
            if hidden.any():
                assert torch.allclose(window[hidden], x[row, t, 0].mean().expand(int(hidden.sum())), atol=1e-6)
        full_rows = changed[row, :, 0].all(-1)                             # mel bins hidden across a whole window
        assert torch.equal(full_rows, full_rows[0].expand_as(full_rows)), "the same bands in all of a sample's windows"
    alone = mask_spectrograms(x[1:2], torch.tensor([9]), 0, 2, 10, 12)
    torch.testing.assert_close(alone[0], out[1])                           # keyed by the sample, not its batch
    assert not torch.equal(mask_spectrograms(x, torch.tensor([4, 9, 11]), 0, 3, 10, 12), out)   # redrawn per epoch
    assert torch.equal(mask_spectrograms(x, torch.tensor([4, 9, 11]), 0, 2, 0, 0), x)
    for bad, message in (("[10]", "two whole widths"), ("[-3, 5]", "two whole widths"), ("[1.5, 2]", "two whole"),
                         ("[8, 10]", "only in the end-to-end stage")):
        with pytest.raises(ConfigError, match=message):
            load_config(None, [f"teacher.audio_mask={bad}"])
    for bad, message in (("end_to_end_epochs=-2", "end_to_end_epochs must be >= 0"),
                         ("end_to_end_lr=-1", "end_to_end_lr must be")):
        with pytest.raises(ConfigError, match=message):
            load_config(None, [f"teacher.{bad}"])


def test_the_audio_mask_reaches_the_encoder_and_the_checkpoint(tmp_path):
    """A MultimodalStep with audio_mask encodes masked log-mels (its loss differs from the unmasked step's on the same
    batch, with no dropout) and records the widths, so a resume under other widths is refused."""
    clips = _clips(8)
    model, _, _, batch = _kd_parts(clips)
    run = _student_run(tmp_path, clips)
    masked = MultimodalStep(model, "baseline_delta", None, [], run, p_drop=0.0, audio_mask=(10, 12))
    plain = MultimodalStep(model, "baseline_delta", None, [], run, p_drop=0.0)
    with torch.no_grad():
        assert not torch.allclose(masked(batch, 0), plain(batch, 0))
    assert masked.settings()["audio_mask"] == [10, 12] and plain.settings()["audio_mask"] == [0, 0]


def test_killed_student_training_resumes_to_the_same_weights(tmp_path, monkeypatch):
    clips = _clips()
    run = _student_run(tmp_path, clips, epochs=2)
    straight = _train(run, "baseline_delta", tmp_path / "a.pt")

    real_save = ckpt.save_atomic

    def save_then_die(obj, path):
        real_save(obj, path)
        raise KeyboardInterrupt  # killed right after the first epoch's checkpoint

    monkeypatch.setattr(ckpt, "save_atomic", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        _train(run, "baseline_delta", tmp_path / "b.pt")
    monkeypatch.setattr(ckpt, "save_atomic", real_save)
    assert ckpt.load(tmp_path / "b.pt")["epoch"] == 0
    resumed = _train(run, "baseline_delta", tmp_path / "b.pt")
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        torch.testing.assert_close(a, b, msg=name)
    assert not list(tmp_path.glob(".*")), "no temporary checkpoint left behind"


def test_a_checkpoint_of_another_model_is_one_sentence(tmp_path):
    """Resuming with settings that change the model (e.g. a new loss with its own weights) names the checkpoint."""
    ckpt.save_epoch(tmp_path / "step.pt", 0, {"model": torch.nn.Linear(2, 2)})
    with pytest.raises(ConfigError, match="step.pt was written by a run with other settings"):
        ckpt.resume(tmp_path / "step.pt", {"model": torch.nn.Linear(3, 2)})
    with pytest.raises(ConfigError, match="other settings"):
        ckpt.resume(tmp_path / "step.pt", {"model": torch.nn.Sequential(torch.nn.Linear(2, 2))})


def test_resuming_after_changing_a_loss_weight_is_refused(tmp_path):
    """A finished KARMMA_S checkpoint is not reported under a new KD weight; the baselines' ones stay valid (they
    do not use it), and a checkpoint from before settings were recorded still resumes."""
    clips = _clips(8)
    torch.manual_seed(0)
    model = MultimodalModel(ModelConfig(**TINY), 8, 10)
    steps = {m: clips.inputs[m].shape[1] for m in MODALITIES}
    view = {m: torch.randn(8, steps[m], 12) for m in MODALITIES}
    teacher = Teacher(model, [view], {})
    teacher.model.fusion = Fusion(steps, {m: 12 for m in MODALITIES}, 16, 1, 2, 16, 8, 10)
    for mode in ("baseline_delta", "karmma_s"):
        train_student(_student_run(tmp_path, clips, epochs=1), mode, teacher, model.encoders.state_dict(),
                      tmp_path / f"{mode}.pt")
    changed = _student_run(tmp_path, clips, epochs=1, alpha=0.5, temperature=4.0)
    train_student(changed, "baseline_delta", teacher, model.encoders.state_dict(), tmp_path / "baseline_delta.pt")
    with pytest.raises(ConfigError, match=r"karmma_s.pt was trained with other settings \(alpha 0.8 -> 0.5, "
                                          r"temperature 2.0 -> 4.0\)"):
        train_student(changed, "karmma_s", teacher, model.encoders.state_dict(), tmp_path / "karmma_s.pt")
    with_tokens = _student_run(tmp_path, clips, epochs=1, token_kd={"V": 1.0})
    for _ in range(2):          # written, then resumed as finished: the settings survive the file unchanged
        train_student(with_tokens, "karmma_s", teacher, model.encoders.state_dict(), tmp_path / "tokens.pt")
    old = ckpt.load(tmp_path / "karmma_s.pt")
    del old["settings"]
    ckpt.save_atomic(old, tmp_path / "karmma_s.pt")
    train_student(changed, "karmma_s", teacher, model.encoders.state_dict(), tmp_path / "karmma_s.pt")


def test_resume_on_different_clips_is_refused(tmp_path):
    run = Run(DatasetSpec(), TrainerConfig(), tmp_path, ddp.DistInfo())
    check_same_run(run, _clips())
    check_same_run(run, _clips())                  # the same clips: fine
    changed = _clips()
    changed.key = "other renderer"
    with pytest.raises(ConfigError, match="holds a run on other data"):
        check_same_run(run, changed)
