"""Own actions on real footage: takes read whole, folds by take and group, the learner and two baselines on the
same folds (`python -m trainer crossval`), and a bundle that only ever says an action from its list."""
# Tier: unit, except the tests marked integration (crossval runs on a generated takes folder: whole,
# refused, and members trained).
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

from edge.bundle import MANIFEST, load_bundle
from edge.errors import BundleError
from edge.live.arrays import ArrayVideo
from edge.live.config import EventsConfig
from edge.live.events import EventTracker
from edge.modalities import action_log_probs, best_action
from trainer.__main__ import main
from trainer.crossval import baselines, make_folds
from trainer.data.takes import Take

from live_helpers import run_live_session
from media_helpers import write_video

REPO = Path(__file__).resolve().parent.parent
SHIPPED = REPO / "assets" / "bundles" / "karmma_s"
CLASSES = (("wave", "hand", 40), ("tap", "desk", 120), ("swipe", "phone", 200))     # verb, noun, grey level


def _take(i: int, action: tuple[int, int], group: str = "") -> Take:
    return Take(f"t{i}", *action, group or f"t{i}", np.zeros((4, 8, 8, 3), np.uint8), 4.0, None, 1.0)


def test_folds_are_by_take_stratified_and_keep_groups_together():
    takes = [_take(i, (i % 3, i % 3)) for i in range(12)] + [_take(12 + i, (0, 0), "alice") for i in range(3)]
    folds = make_folds(takes, 3, seed=0)
    assert sorted(i for f in folds for i in f) == list(range(15))               # every take once
    assert any({12, 13, 14} <= set(f) for f in folds)                           # one group, one fold
    for f in folds:
        assert {takes[i].action for i in f if i < 12} == {(0, 0), (1, 1), (2, 2)}  # each fold sees each action
    assert len(make_folds(takes, None)) == 13                                   # leave one take (or group) out
    with pytest.raises(Exception, match="--folds must be from 2"):
        make_folds(takes, 14)


def test_baselines_are_nearest_class_mean_and_nearest_take():
    feats = [{"V": np.array([x, 0.0]), "F": np.array([0.0, x])} for x in (0.0, 1.0, 10.0, 11.0, 4.0, 6.5)]
    labels = np.array([0, 0, 1, 1, 0, 1])
    out = baselines(feats, [0, 1, 2, 3], [4, 5], labels, "V")
    # take 4 (x = 4) is nearer class 0's mean (0.5) than class 1's (10.5); take 5 (6.5) nearer class 1's
    assert out["centroid"][0].tolist() == [0, 1] and out["nn1"][0].tolist() == [0, 1]
    assert np.all((out["centroid"][1] > 0.5) & (out["centroid"][1] <= 1.0))


def test_joint_decoding_only_says_a_listed_action():
    verb = np.log(np.array([[0.5, 0.4, 0.1]]))
    noun = np.log(np.array([[0.1, 0.45, 0.45]]))
    actions = [(0, 0), (1, 2)]              # the heads' separate argmaxes (0, 1) or (0, 2) are not actions
    assert best_action(np.exp(verb[0]), np.exp(noun[0]), actions) == (1, 2)
    assert best_action(np.exp(verb[0]), np.exp(noun[0])) == (0, 1)               # no list: every pair is one
    assert action_log_probs(verb, noun, actions).argmax() == 1
    tracker = EventTracker(EventsConfig(start_at=0.0, end_below=0.0, min_duration_s=0.0), {"verb": list("abc"),
                                                                                           "noun": list("xyz")}, actions)
    tracker.update(0.0, np.exp(verb[0]), np.exp(noun[0]), ["V"])
    (event,) = tracker.flush(1.0)
    assert (event["verb"], event["noun"]) == ("b", "z")


def _with_actions(tmp_path: Path, actions) -> Path:
    bundle = shutil.copytree(SHIPPED, tmp_path / "b")
    manifest = yaml.safe_load((bundle / MANIFEST).read_text())
    manifest["actions"] = actions
    (bundle / MANIFEST).write_text(yaml.safe_dump(manifest, sort_keys=False))
    return bundle


def test_the_live_runtime_reports_only_listed_actions(tmp_path):
    """The shipped student with 3 of its 80 pairs listed: every prediction and event names one of them, where the
    same frames without the list give other pairs."""
    listed = [["hold", "3"], ["lift", "7"], ["shake", "1"]]
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 255, (96, 128, 3), np.uint8) for _ in range(60)]

    def said(bundle_dir: Path) -> set[tuple[str, str]]:
        _, records, _ = run_live_session(load_bundle(bundle_dir), ArrayVideo(frames, 8.0, realtime=False))
        return {(r["verb"], r["noun"]) for r in records if r["type"] in ("prediction", "event") and r.get("verb")}

    constrained = said(_with_actions(tmp_path, listed))
    assert constrained and constrained <= {tuple(a) for a in listed}
    assert said(SHIPPED) - {tuple(a) for a in listed}                        # the list is what restricts them


def test_a_bundle_action_naming_no_label_is_refused(tmp_path):
    with pytest.raises(BundleError, match="actions must be a non-empty list"):
        load_bundle(_with_actions(tmp_path, [["hold", "eleven"]]))


@pytest.fixture(scope="module")
def takes(tmp_path_factory) -> Path:
    """A takes folder as `real-takes` lays it out: one whole file per take, no start / end, extra columns."""
    root = tmp_path_factory.mktemp("takes")
    rows = ["media,class,verb,noun,person_or_group"]
    for k, (verb, noun, level) in enumerate(CLASSES):
        for j in range(3):
            write_video(root / verb / f"{j}.mp4", 40 + 6 * j, 15, audio=False,
                        level=lambda f, level=level, j=j: (level + 3 * j + (f % 6) * 5) % 250)
            rows.append(f"{verb}/{j}.mp4,{verb},{verb},{noun},p{j}")
    (root / "takes.csv").write_text("\n".join(rows) + "\n")
    return root


@pytest.mark.integration
def test_crossval_reports_learner_and_baselines_on_the_same_folds(takes, tmp_path, capsys):
    png = tmp_path / "cm.png"
    assert main(["crossval", "--dataset", "recordings", "--data-root", str(takes), "--folds", "3", "--smoke", "--seeds", "2",
                 "--json", "--png", str(png), "--bundles", str(tmp_path / "folds")]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["folds"] == 3 and result["takes"] == 9 and result["absent"] == ["A"]
    assert set(result["subsets"]) == {"VF", "V", "F"}                        # no take has audio: nothing copied
    for row in result["subsets"].values():
        assert set(row) >= {"learner", "centroid", "nn1", "takes"} and row["takes"] == 9
        assert len(row["learner_seeds"]) == 2 and all(a in {round(100 * k / 9, 1) for k in range(10)}
                                                      for a in row["learner_seeds"])
    assert result["subsets"]["V"]["centroid"] == 100.0             # grey levels set the classes apart (motion does not)
    assert len(result["per_take"]) == 9 and len(result["seconds_per_fold"]) == 3
    take = result["per_take"][0]
    assert take["truth"] in result["actions"]
    assert set(take["subsets"]["VF"]) == {"learner", "centroid", "nn1"}
    assert all(0 < x["confidence"] <= 1 and x["prediction"] in result["actions"] for x in take["subsets"]["VF"].values())
    assert png.stat().st_size > 10_000
    fold0 = load_bundle(tmp_path / "folds" / "fold0" / "bundle")              # each fold's learner, to run live
    assert sorted(map(tuple, fold0.manifest["actions"])) == sorted((v, n) for v, n, _ in CLASSES)
    held_out = (tmp_path / "folds" / "fold0" / "held_out.csv").read_text().splitlines()
    assert held_out[0] == "media,start,end,verb,noun" and len(held_out) == 1 + sum(t["fold"] == 0 for t in result["per_take"])
    assert sorted({tuple(t["media"].split("/")[-2:]) for t in result["per_take"]})[0] == ("swipe", "0.mp4")


@pytest.mark.parametrize("argv, says", [
    (["--folds", "1"], "--folds must be from 2"),
    (["--verbs", "dance"], "--verbs dance not among"),
    (["--verbs", "wave"], "at least 2 actions"),
    (["--seeds", "0"], "--seeds must be at least 1"),
    (["--dataset", "moving-digits"], "crossval reads --dataset recordings"),
])
@pytest.mark.integration
def test_crossval_bad_inputs_are_one_sentence(argv, says, takes, capsys):
    base = ["crossval", "--dataset", "recordings", "--data-root", str(takes), "--smoke"]
    assert main(base + argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and says in err and "\n" not in err, err


@pytest.mark.integration
def test_members_are_trained_apart_from_one_start_and_their_weights_averaged(takes, tmp_path, monkeypatch):
    """finetune.members = 2: both members start from the same new heads, train on their own draws, and the result
    is the mean of their weights."""
    import dataclasses

    import torch

    import trainer.finetune as finetune_module
    from trainer import distributed as ddp
    from trainer.config import load_config
    from trainer.data.recordings import Recordings
    from trainer.data.takes import load_takes
    from trainer.data.registry import DatasetSpec
    from trainer.loop import Run

    bundle = load_bundle(SHIPPED)
    dataset = Recordings(takes, "*", bundle.preprocess)
    cfg = load_config(REPO / "assets" / "configs" / "trainer_smoke.yaml")
    cfg = dataclasses.replace(cfg, finetune=dataclasses.replace(cfg.finetune, members=2))
    starts, ends, real_phase = [], [], finetune_module._phase

    def spy(run, model, train, trainable, epochs, lr, name, phase):
        if phase == 1:
            starts.append({k: v.clone() for k, v in model.state_dict().items() if ".head_" in k})
        real_phase(run, model, train, trainable, epochs, lr, name, phase)
        if phase == 2:
            ends.append({k: v.clone() for k, v in model.state_dict().items()})

    monkeypatch.setattr(finetune_module, "_phase", spy)
    run = Run(DatasetSpec("recordings", str(takes)), cfg, tmp_path, ddp.DistInfo(device=torch.device("cpu")),
              pre=bundle.preprocess, progress=False, verbose=False)
    soup = finetune_module.finetune_model(run, finetune_module.bundle_model(bundle), load_takes(dataset),
                                          dataset.labels).state_dict()
    assert len(starts) == len(ends) == 2
    assert all(torch.equal(starts[0][k], starts[1][k]) for k in starts[0])            # one start
    assert any(not torch.equal(ends[0][k], ends[1][k]) for k in ends[0])              # two trainings
    for k, v in soup.items():
        if v.is_floating_point():
            torch.testing.assert_close(v, (ends[0][k] + ends[1][k]) / 2)


def test_a_work_folder_from_other_takes_or_settings_is_refused(tmp_path):
    """`fit` resumes checkpoints: a fold folder written for other takes or settings must not be reused silently."""
    from edge.errors import ConfigError
    from trainer.finetune import claim_folder

    claim_folder(tmp_path / "fold0", {"train": ["a", "b"], "finetune": {"speed": 0.2}})
    claim_folder(tmp_path / "fold0", {"train": ["a", "b"], "finetune": {"speed": 0.2}})        # same: resumes
    for other in ({"train": ["a", "c"], "finetune": {"speed": 0.2}}, {"train": ["a", "b"], "finetune": {"speed": 0}}):
        with pytest.raises(ConfigError, match="use a new --out"):
            claim_folder(tmp_path / "fold0", other)
