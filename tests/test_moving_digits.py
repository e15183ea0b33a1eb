"""MovingDigits-AV: sources, splits, clips, sessions and the training dataset's preprocessing contract."""
# Tier: unit, except the tests marked integration (materialize with worker processes; a scan of the real
# data's splits).
from __future__ import annotations

import gzip
import json
import wave
from pathlib import Path

import numpy as np
import pytest

from edge.errors import ConfigError
from edge.moving_digits import (DEFAULT_SPLITS, VERBS, NuisanceLevels, load_config, load_sources, make_split,
                                render_clip, render_session, write_session)
from edge.moving_digits.render import plan_clip
from edge.moving_digits.session import load_segments
from edge.moving_digits.sources import DataError
from edge.moving_digits.splits import Split, check_disjoint
from edge.preprocess import (PreprocessConfig, compute_flow, flow_to_model_input, log_mel, make_flow_backend,
                             prepare_frame, to_gray, uniform_indices, video_input)

LEVELS = NuisanceLevels()


@pytest.fixture(scope="module")
def procedural():
    return load_sources(None, ["george", "nicolas"], (0, 200))


def _write_idx(path: Path, magic: int, array: np.ndarray) -> None:
    header = np.array([magic, *array.shape], dtype=">u4").tobytes()
    with gzip.open(path, "wb") as fh:
        fh.write(header + array.astype(np.uint8).tobytes())


@pytest.fixture
def fake_root(tmp_path) -> Path:
    """A tiny data root in the real layouts: 40 MNIST-format images, 2 takes per digit, one corrupt wav."""
    (tmp_path / "mnist").mkdir()
    rng = np.random.default_rng(0)
    _write_idx(tmp_path / "mnist" / "t10k-images-idx3-ubyte.gz", 2051, rng.integers(0, 256, (40, 28, 28)))
    _write_idx(tmp_path / "mnist" / "t10k-labels-idx1-ubyte.gz", 2049, np.arange(40) % 10)
    rec = tmp_path / "fsdd" / "recordings"
    rec.mkdir(parents=True)
    for d in range(10):
        for take in range(2):
            with wave.open(str(rec / f"{d}_alice_{take}.wav"), "wb") as wf:
                wf.setnchannels(1), wf.setsampwidth(2), wf.setframerate(8000)
                wf.writeframes((rng.normal(0, 3000, 2400)).astype("<i2").tobytes())
    (rec / "3_alice_9.wav").write_bytes(b"RIFF not really a wav")
    return tmp_path


# ---------------------------------------------------------------- sources and splits


def test_procedural_source_without_data_root(procedural, tmp_path):
    assert procedural.source == "procedural"
    assert all(procedural.images[d].shape[1:] == (28, 28) and len(procedural.sounds[d]) == 100 for d in range(10))
    assert load_sources(tmp_path / "missing", ["george"], (0, 20)).source == "procedural"
    # The same image index / speaker gives the same sample; another speaker gives different sounds.
    again = load_sources(None, ["george"], (0, 200))
    assert np.array_equal(again.images[4], procedural.images[4])
    assert np.array_equal(again.sounds[4][0], procedural.sounds[4][0])
    assert not np.array_equal(procedural.sounds[4][0], procedural.sounds[4][50])


def test_real_source_layout_skips_and_counts_corrupt_files(fake_root):
    src = load_sources(fake_root, ["alice"], (10, 40), sample_rate=16000)
    assert src.source == "real" and src.skipped == 1
    assert sum(len(v) for v in src.images.values()) == 30
    assert all(len(src.sounds[d]) == 2 for d in range(10))
    assert src.sounds[0][0].dtype == np.float32 and src.sounds[0][0].size == 4800   # 8 kHz -> 16 kHz
    with pytest.raises(DataError, match="speaker 'bob'"):
        load_sources(fake_root, ["bob"], (0, 40))
    with pytest.raises(DataError, match="exceeds the 40 MNIST images"):
        load_sources(fake_root, ["alice"], (0, 41))


def test_real_source_from_data_root(data_root):
    src = load_sources(data_root, ["nicolas"], (6000, 6200))
    assert src.source == "real" and src.skipped == 0
    assert sum(len(v) for v in src.images.values()) == 200
    assert all(len(src.sounds[d]) == 50 for d in range(10))


@pytest.mark.integration
def test_default_splits_share_no_speaker_or_image(data_root):
    seen: dict[bytes, str] = {}
    for split in DEFAULT_SPLITS.values():
        src = load_sources(data_root, list(split.speakers), split.images)
        for d in range(10):
            for img in src.images[d]:
                assert seen.setdefault(img.tobytes(), split.name) == split.name
            for snd in src.sounds[d]:
                assert seen.setdefault(snd.tobytes(), split.name) == split.name


def test_split_overlaps_are_refused():
    check_disjoint(DEFAULT_SPLITS.values())
    assert make_split("test", ["theo"], "100:200") == Split("test", ("theo",), (100, 200))
    with pytest.raises(ConfigError, match="START:STOP"):
        make_split("test", images="7000-8000")
    with pytest.raises(ConfigError, match="share speaker"):
        check_disjoint([DEFAULT_SPLITS["train"], make_split("x", ["lucas"], "6000:7000")])
    with pytest.raises(ConfigError, match="share image"):
        check_disjoint([DEFAULT_SPLITS["val"], Split("x", ("bob",), (6999, 7001))])


def test_config_rejects_unknown_keys(tmp_path):
    cfg = load_config()
    assert cfg.levels == NuisanceLevels() and set(cfg.splits) >= {"train", "val", "test"}
    bad = tmp_path / "bad.yaml"
    bad.write_text("levels: {blur_probability: 0.5}\n")
    with pytest.raises(ConfigError, match="unknown key"):
        load_config(bad)
    bad.write_text("splits: {val: {speakers: [george], images: [0, 10]}}\n")
    with pytest.raises(ConfigError, match="share"):
        load_config(bad)
    with pytest.raises(ConfigError, match="probability"):
        NuisanceLevels(blur_prob=1.5)
    bad.write_text("levels: [\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.yaml")


# ---------------------------------------------------------------- clips


def test_clip_shapes_and_determinism(procedural):
    a = render_clip(procedural, np.random.default_rng(7), 7, 3, LEVELS)
    b = render_clip(procedural, np.random.default_rng(7), 7, 3, LEVELS)
    c = render_clip(procedural, np.random.default_rng(8), 7, 3, LEVELS)
    assert a.frames.shape == (68, 128, 128, 3) and a.frames.dtype == np.uint8
    assert a.lead_in_frames == 8 and a.lead_in_samples == round(8 / 30 * 16000)
    assert a.audio.dtype == np.float32 and a.audio.size == a.lead_in_samples + 32000
    assert np.array_equal(a.frames, b.frames) and np.array_equal(a.audio, b.audio)
    assert not np.array_equal(a.frames, c.frames)
    assert (a.verb, a.noun) == (7, 3)


def _sampled_poses(plan, pre=PreprocessConfig()):
    """Card centre (world px) and angle at the 4 fps instants a model samples, lead-in partner first."""
    clip_frames = plan.n_frames - plan.lead_in_frames
    idx = np.concatenate([[-1], uniform_indices(clip_frames, pre.video_tokens)])
    poses = [plan.card.pose(i / plan.fps) for i in idx]
    return np.array([p[0] for p in poses]), np.array([p[1] for p in poses])


@pytest.mark.parametrize("verb", range(len(VERBS)))
def test_verbs_are_visible_in_motion_sampled_at_4_fps(procedural, verb):
    """The card's motion between consecutive 4 fps samples identifies the verb for every draw."""
    name = VERBS[verb]
    for seed in range(12):
        plan = plan_clip(procedural, np.random.default_rng(seed), verb, 0, LEVELS)
        centre, angle = _sampled_poses(plan)
        step = np.diff(centre, axis=0)
        path, net, turn = np.linalg.norm(step, axis=1).sum(), centre[-1] - centre[0], angle[-1] - angle[0]
        if name == "hold":            # only hand tremor and no turn
            assert np.linalg.norm(step, axis=1).max() < 5 and abs(turn) < 1
        elif name in ("push-left", "push-right", "lift", "lower"):
            axis, sign = {"push-left": (0, -1), "push-right": (0, 1), "lift": (1, -1), "lower": (1, 1)}[name]
            assert sign * net[axis] > 20 and abs(net[1 - axis]) < 6
        elif name.startswith("rotate"):
            assert (turn > 45) if name == "rotate-cw" else (turn < -45)
        else:   # shake: large back-and-forth motion, little net travel, never aliased to stillness
            assert path > 25 and np.linalg.norm(net) < 0.5 * path
            assert (np.linalg.norm(step, axis=1) > 6).sum() >= 2


# ---------------------------------------------------------------- sessions


def test_session_segments_match_the_stream(procedural, tmp_path):
    levels = NuisanceLevels(snr_db=(25.0, 25.0))
    s = render_session(procedural, seed=3, n_actions=3, levels=levels, gap_s=(0.5, 1.0))
    again = render_session(procedural, seed=3, n_actions=3, levels=levels, gap_s=(0.5, 1.0))
    assert np.array_equal(s.frames, again.frames) and s.segments == again.segments
    assert len(s.segments) == 3 and s.audio.size == round(len(s.frames) / s.fps * s.sample_rate)
    ends = [0.0] + [seg.end_s for seg in s.segments]
    for prev_end, seg in zip(ends, s.segments):
        assert seg.start_s >= prev_end + 0.5 + 8 / 30 - 1e-6 and abs(seg.end_s - seg.start_s - 2.0) < 1e-6
    assert s.segments[-1].end_s + 0.5 - 1e-6 <= s.duration_s
    # Speech (at 25 dB SNR) lies inside the segments; the gaps carry only the noise floor.
    rms = lambda a, b: float(np.sqrt(np.mean(s.audio[int(a * 16000):int(b * 16000)] ** 2)))
    gap = rms(0, s.segments[0].start_s - 0.3)
    assert all(rms(seg.start_s, seg.end_s) > 3 * gap for seg in s.segments)
    # The in-memory stream (what a live source replays) covers the arrays in order.
    assert [t for t, _ in s.iter_frames()][:2] == [0.0, 1 / 30]
    blocks = list(s.iter_audio(1000))
    assert blocks[1][0] == 1000 / 16000 and sum(b.size for _, b in blocks) == s.audio.size

    av = pytest.importorskip("av")
    json_path = write_session(s, tmp_path / "demo.mkv")
    assert load_segments(json_path) == s.segments
    assert json.loads(json_path.read_text())["segments"][0]["verb_name"] == VERBS[s.segments[0].verb]
    with av.open(str(tmp_path / "demo.mkv")) as container:
        n_video = sum(1 for _ in container.decode(video=0))
    with av.open(str(tmp_path / "demo.mkv")) as container:
        n_audio = sum(f.samples for f in container.decode(audio=0))
    assert n_video == len(s.frames) and n_audio == s.audio.size


# ---------------------------------------------------------------- the training dataset


def test_dataset_follows_the_preprocessing_contract():
    torch = pytest.importorskip("torch")
    from trainer.data import MovingDigitsDataset

    pre = PreprocessConfig()
    ds = MovingDigitsDataset(make_split("val", images=(6000, 6200)), n_clips=90, seed=5, data_root=None, pre=pre)
    item = ds[83]
    assert item["V"].shape == (8, 6, 64, 64) and item["F"].shape == (8, 2, 64, 64)
    assert item["A"].shape == (5, 1, 64, 98) and item["V"].dtype == item["F"].dtype == item["A"].dtype == torch.float32
    assert (item["verb"], item["noun"]) == divmod(83 % 80, 10)
    twin = MovingDigitsDataset(make_split("val", images=(6000, 6200)), n_clips=90, seed=5, data_root=None, pre=pre)
    assert all(torch.equal(item[k], twin[83][k]) for k in ("V", "F", "A"))

    # Rebuild the item from the whole clip with the documented recipe.
    clip = render_clip(ds.sources, ds.item_rng(83), item["verb"], item["noun"], ds.levels, duration_s=2.0,
                       lead_in_s=0.25, fps=30, size=128, sample_rate=16000)
    lead = clip.lead_in_frames
    sampled = lead + uniform_indices(len(clip.frames) - lead, 8)
    assert sampled.tolist() == [lead + i for i in (6, 14, 21, 29, 36, 44, 51, 59)]
    small = [prepare_frame(clip.frames[i], pre) for i in [lead - 1, *sampled]]
    v = np.stack([video_input(b, a, pre) for a, b in zip(small[:-1], small[1:])])
    flow = make_flow_backend(pre.flow)
    f = np.stack([flow_to_model_input(compute_flow(flow, to_gray(a), to_gray(b), pre), pre)
                  for a, b in zip(small[:-1], small[1:])])
    windows = [clip.audio[clip.lead_in_samples + int((1.0 + 0.25 * j) * 16000) - 16000:
                          clip.lead_in_samples + int((1.0 + 0.25 * j) * 16000)] for j in range(5)]
    a = np.stack([log_mel(w, pre)[None] for w in windows])
    assert np.array_equal(item["V"].numpy(), v)
    assert np.allclose(item["F"].numpy(), f, atol=1e-6)
    assert np.allclose(item["A"].numpy(), a, atol=1e-5)


@pytest.mark.integration
def test_materialize_equals_items_and_reuses_its_cache(tmp_path):
    torch = pytest.importorskip("torch")
    from trainer.data import MovingDigitsDataset, materialize

    ds = MovingDigitsDataset(make_split("test", images=(7000, 7100)), n_clips=6, seed=1, data_root=None)
    out = materialize(ds, workers=0, cache_dir=tmp_path, progress=False)
    assert out["V"].shape == (6, 8, 6, 64, 64) and out["verb"].dtype == torch.int64
    for i in (0, 5):
        item = ds[i]
        assert all(torch.equal(out[k][i], item[k]) for k in ("V", "F", "A"))
        assert (int(out["verb"][i]), int(out["noun"][i])) == (item["verb"], item["noun"])
    forked = materialize(ds, workers=2, use_cache=False, progress=False)     # worker processes: same clips
    assert all(torch.equal(forked[k], out[k]) for k in out)
    (folder,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    assert folder.name == ds.cache_key()
    np.save(folder / "noun.npy", np.full(6, 9))       # a cache hit reads the folder instead of re-rendering
    assert materialize(ds, workers=0, cache_dir=tmp_path, progress=False)["noun"].tolist() == [9] * 6
    other = MovingDigitsDataset(make_split("test", images=(7000, 7100)), n_clips=6, seed=2, data_root=None)
    assert other.cache_key() != ds.cache_key()
    # A cache of older renderer code is removed when a new one is written; a current one is kept.
    old = tmp_path / "0123456789abcdef0123"
    old.mkdir()
    (old / "meta.json").write_text(json.dumps({"code": "older"}))
    materialize(other, workers=0, cache_dir=tmp_path, progress=False)
    assert not old.exists() and folder.exists() and (tmp_path / other.cache_key()).exists()


def test_session_command_renders_at_a_bundles_training_levels(tmp_path, capsys):
    from edge.moving_digits.__main__ import main as moving_digits_main

    bundle = Path(__file__).resolve().parent.parent / "assets" / "bundles" / "karmma_s"
    out = tmp_path / "s.mkv"
    assert moving_digits_main(["session", "--out", str(out), "--n-actions", "1", "--bundle", str(bundle)]) == 0
    assert "the bundle's training levels" in capsys.readouterr().out and out.is_file()
    assert moving_digits_main(["session", "--out", str(out), "--n-actions", "1", "--bundle", str(tmp_path)]) == 2
    assert capsys.readouterr().err.startswith("error: ")
