"""The own actions added to MovingDigits-AV (new motions, new symbols with their sounds) and the guarantee that
adding them changed nothing the benchmark renders (tests/test_moving_digits_golden.py pins what it renders)."""
# Tier: unit, except the test marked device (starts a private PulseAudio server).
from __future__ import annotations

import json

import numpy as np
import pytest

from edge.errors import ConfigError
from edge.moving_digits import NuisanceLevels
from edge.moving_digits.motions import MOTIONS
from edge.moving_digits.own_actions import (OWN_ACTIONS, own_sources, plan_own_clip, render_own_session,
                                            write_own_session)
from edge.moving_digits.session import load_segments
from edge.moving_digits.symbols import SYMBOLS
from edge.preprocess import PreprocessConfig, uniform_indices

LEVELS = NuisanceLevels()
TRAINED = NuisanceLevels(card_scale=(0.5, 0.65), snr_db=(5.0, 25.0))      # the trainer's levels: larger cards


def _sampled(plan, pre=PreprocessConfig()):
    """Card centre, angle and (x, y) scale at the 4 fps instants a model samples, lead-in partner first."""
    idx = np.concatenate([[-1], uniform_indices(plan.n_frames - plan.lead_in_frames, pre.video_tokens)])
    t = idx / plan.fps
    poses = [plan.card.pose(x) for x in t]
    return (np.array([p[0] for p in poses]), np.array([p[1] for p in poses]),
            np.array([plan.card.scale(x) for x in t]))


@pytest.mark.parametrize("levels", [LEVELS, TRAINED], ids=["yaml-levels", "trainer-levels"])
@pytest.mark.parametrize("action", range(len(OWN_ACTIONS)))
def test_new_motions_are_visible_at_4_fps_and_stay_in_view(action, levels):
    name = MOTIONS[action]
    for seed in range(12):
        plan = plan_own_clip("train", action, np.random.default_rng(seed), levels)
        assert (plan.verb, plan.noun) == (action, action)
        centre, angle, scale = _sampled(plan)
        step = np.diff(centre, axis=0)
        path, net = np.linalg.norm(step, axis=1).sum(), centre[-1] - centre[0]
        assert abs(angle[-1] - angle[0]) < 1e-9                     # none of them turns in the image plane
        size = plan.scene.size
        half = 0.5 * plan.card.side * np.abs(scale).max(axis=1)
        assert (centre - half[:, None] > -1).all() and (centre + half[:, None] < size + 1).all()
        if name == "circle":        # around and back: the step direction keeps turning clockwise on screen
            assert path > 25 and np.linalg.norm(net) < 0.3 * path
            big = step[np.linalg.norm(step, axis=1) > 5]      # above hand tremor
            cross = big[:-1, 0] * big[1:, 1] - big[:-1, 1] * big[1:, 0]
            assert len(big) >= 3 and (cross > 0).all()
        elif name in ("approach", "recede"):   # grows / shrinks about 2x in place
            ratio = scale[-1, 1] / scale[0, 1]
            assert (ratio > 1.6) if name == "approach" else (ratio < 1 / 1.6)
            assert np.linalg.norm(step, axis=1).max() < 5
        elif name == "flip":        # the width goes through 0 to mirrored, the height stays
            assert scale[0, 0] > 0.95 and scale[-1, 0] < -0.95 and np.abs(scale[:, 1] - 1).max() < 1e-9
            assert (np.abs(scale[:, 0]) < 0.5).any() and np.linalg.norm(step, axis=1).max() < 5
        else:                       # swipe-diagonal: up and to the right, about 45 degrees
            assert net[0] > 20 and net[1] < -20 and abs(abs(net[0]) - abs(net[1])) < 8


def test_symbol_sources_follow_the_splits_and_sounds_tell_the_symbol():
    train, test = own_sources("train"), own_sources("test")
    assert train.source == "symbols" and sorted(train.images) == list(range(len(SYMBOLS)))
    seen = {img.tobytes() for k in train.images for img in train.images[k]}
    assert not any(img.tobytes() in seen for k in test.images for img in test.images[k])
    assert not any(np.array_equal(a, b) for k in range(5) for a in test.sounds[k][:5] for b in train.sounds[k][:5])
    # Each symbol's sound has its own spectrum: nearest class centroid of the mean log spectrum, train -> test.
    def spectrum(x):
        return np.log(np.abs(np.fft.rfft(x[:5600], 4096))[:1024] + 1e-3)
    cent = np.stack([np.mean([spectrum(x) for x in train.sounds[k]], 0) for k in range(5)])
    right = [int(np.argmin(((cent - spectrum(x)) ** 2).sum(1))) == k for k in range(5) for x in test.sounds[k]]
    assert np.mean(right) > 0.95
    with pytest.raises(ConfigError, match="unknown split"):
        own_sources("holdout")


def test_own_session_has_every_action_labelled_by_name(tmp_path):
    s = render_own_session("test", seed=2, n_actions=5, levels=TRAINED, gap_s=(0.5, 0.5))
    assert sorted(seg.verb for seg in s.segments) == list(range(5)) and all(seg.verb == seg.noun for seg in s.segments)
    assert s.frames.shape[1:] == (128, 128, 3) and s.audio.size == round(len(s.frames) / 30 * 16000)
    again = render_own_session("test", seed=2, n_actions=5, levels=TRAINED, gap_s=(0.5, 0.5))
    assert np.array_equal(s.frames[::20], again.frames[::20])
    pytest.importorskip("av")
    meta = json.loads(write_own_session(s, tmp_path / "own.mkv").read_text())
    assert meta["verbs"] == list(MOTIONS) and meta["nouns"] == list(SYMBOLS)
    assert [(x["verb_name"], x["noun_name"]) for x in meta["segments"]] == [OWN_ACTIONS[x.verb] for x in s.segments]
    assert load_segments(tmp_path / "own.json") == s.segments


@pytest.mark.parametrize("argv, says", [
    (["--actions", "0"], "--actions must be from 1 to 5"),
    (["--train", "0"], "--train must be at least 1"),
    (["--take-seconds", "2"], "--take-seconds must exceed 2.25"),
    (["--from", "/nonexistent/bundle"], "bundle"),
])
def test_own_actions_bench_refuses_bad_inputs_in_one_sentence(argv, says, tmp_path, capsys):
    from edge.bench.__main__ import main

    assert main(["own-actions", "--out", str(tmp_path / "o"), *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert says in err and err.count("\n") == 0, err
    (tmp_path / "file").write_text("")
    assert main(["own-actions", "--out", str(tmp_path / "file")]) == 2
    assert "is a file, not a folder" in capsys.readouterr().err


def test_own_actions_bench_without_pulseaudio_says_so(tmp_path, capsys, monkeypatch):
    import edge.bench.pulse
    from edge.bench.__main__ import main

    monkeypatch.setattr(edge.bench.pulse, "missing_tool", lambda: "pulseaudio")
    assert main(["own-actions", "--out", str(tmp_path / "o")]) == 2
    assert capsys.readouterr().err.strip() == (
        "edge.bench own-actions: pulseaudio is not installed, so there is no virtual microphone to record from "
        "(apt-get install pulseaudio pulseaudio-utils libasound2-plugins).")
    assert not (tmp_path / "o").exists()


@pytest.mark.device
def test_private_pulseaudio_starts_from_a_relative_folder(tmp_path, monkeypatch):
    """`--out runs/own` is relative, and PulseAudio refuses a relative XDG_RUNTIME_DIR ("Daemon startup failed")."""
    from pathlib import Path

    from edge.bench.pulse import PulseServer, missing_tool

    if missing_tool() is not None:
        pytest.skip(f"{missing_tool()} is not installed")
    monkeypatch.chdir(tmp_path)
    server = PulseServer(Path("runs") / "pulse")
    assert Path(server.env["XDG_RUNTIME_DIR"]).is_absolute()
    try:
        server.start()
    finally:
        server.close()


def test_the_bench_pools_finetunes_held_out_scores_by_takes():
    """finetune's results.json scores each split per subset with its take count; the bench pools val and test."""
    from edge.bench.own_actions import held_out_accuracy

    results = {"splits": {"val": {"VFA": {"verb": 100.0, "noun": 100.0, "action": 100.0, "takes": 5},
                                  "V": {"verb": 80.0, "noun": 80.0, "action": 60.0, "takes": 5}},
                          "test": {"VFA": {"verb": 90.0, "noun": 90.0, "action": 80.0, "takes": 15},
                                   "V": {"verb": 80.0, "noun": 80.0, "action": 80.0, "takes": 15}}}}
    assert held_out_accuracy(results) == {"VFA": 85.0, "V": 75.0, "n": 20}
    assert held_out_accuracy({"splits": {}}) is None and held_out_accuracy(None) is None
