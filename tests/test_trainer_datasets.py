"""`python -m trainer teacher | student | evaluate --dataset NAME` on every dataset: real annotation rows where
../shared/data has them, tiny media generated here (a missing video, a corrupt one, a segment past the end)."""
# Tier: unit, except the tests marked integration (whole trainings and evaluations; the slow benchmark).
from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import cv2
import pytest
import torch

from edge.bundle import load_bundle
from trainer.__main__ import main
from trainer.masks import random_drop, sample_drop

from media_helpers import corrupt, grey, write_video

SMOKE = ["--smoke", "--set", "batch_size=8"]


def read_json(path: Path) -> dict:
    return json.loads(path.read_text())


def write_recordings(root: Path, rows: int = 16) -> Path:
    """a.mp4 (with audio), b.mp4 (without), plus rows naming a missing, a corrupt and a too-short video."""
    rec = root / "recordings"
    write_video(rec / "a.mp4", 150, 30, audio=True, level=lambda k: k)
    write_video(rec / "b.mp4", 150, 30, audio=False, level=lambda k: 255 - k)
    corrupt(rec / "bad.mp4")
    lines = [f"{'ab'[i % 2]}.mp4,{0.2 * (i // 2):.1f},{0.2 * (i // 2) + 1.5:.1f},{('open', 'close')[i % 2]},"
             f"{('cup', 'door')[i // 2 % 2]}" for i in range(rows)]
    lines += ["gone.mp4,0,1,open,cup", "bad.mp4,0,1,close,door", "a.mp4,30,31,open,door"]
    header = "media,start,end,verb,noun\n"
    (rec / "train.csv").write_text(header + "\n".join(lines) + "\n")
    (rec / "test.csv").write_text(header + "\n".join(lines[:6] + lines[-1:]) + "\n")
    return rec


def test_masks_keep_to_what_each_sample_has():
    present = torch.tensor([[1, 1, 0], [1, 0, 0], [0, 1, 1], [1, 1, 1]] * 50).float()
    mask = random_drop(len(present), 0.7, torch.Generator().manual_seed(0), present)
    assert bool((mask <= present).all()) and bool((mask.sum(1) >= 1).all())
    assert bool((mask[1::4] == present[1::4]).all())                  # only one modality: always kept
    index = torch.arange(len(present))
    whole = sample_drop(index, present, 0.5, seed=3, epoch=2)
    order = torch.randperm(len(present))
    torch.testing.assert_close(sample_drop(index[order], present[order], 0.5, seed=3, epoch=2), whole[order])
    assert not torch.equal(sample_drop(index, present, 0.5, seed=3, epoch=3), whole)


@pytest.mark.integration
def test_student_on_recordings_then_evaluate_the_bundle(tmp_path, capsys):
    write_recordings(tmp_path)
    out = tmp_path / "run"
    assert main(["student", "--dataset", "recordings", "--data-root", str(tmp_path), "--out", str(out), *SMOKE]) == 0
    result = read_json(out / "student" / "results.json")
    assert result["train"]["skipped"] == {"missing or unreadable media": 2, "past the end of its video": 1}
    assert result["train"]["samples"] == 16 and result["n"] == 6
    assert set(result["table"]) == {"VFA", "VF", "VA", "FA", "V", "F", "A"}
    tokens = sorted(p.name for p in (out / "teacher" / "tokens").glob("*.pt"))
    assert len(tokens) == 3 and sum(n.startswith("train_") for n in tokens) == 2   # two TSN draws + the test split
    manifest = load_bundle(out / "bundles" / "karmma_s").manifest
    assert manifest["labels"] == {"verb": ["close", "open"], "noun": ["cup", "door"]}

    stamps = {p: p.stat().st_mtime_ns for p in (out / "teacher" / "tokens").glob("*.pt")}
    assert main(["teacher", "--dataset", "recordings", "--data-root", str(tmp_path), "--out", str(out), *SMOKE]) == 0
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps           # resumed: the token cache is reused

    capsys.readouterr()
    scores = tmp_path / "scores.json"
    assert main(["evaluate", "--bundle", str(out / "bundles" / "karmma_s"), "--dataset", "recordings",
                 "--data-root", str(tmp_path), "--json", str(scores), "--config",
                 str(Path(__file__).parent.parent / "assets/configs/trainer_smoke.yaml")]) == 0
    onnx = read_json(scores)
    assert onnx["n"] == 6 and "past the end" in capsys.readouterr().out
    for subset, acc in result["table"].items():                     # ONNX Runtime reproduces torch
        assert onnx["table"][subset] == pytest.approx(acc, abs=1e-6), subset


@pytest.mark.integration
def test_resuming_a_run_on_other_data_is_one_sentence(tmp_path, capsys):
    rec = write_recordings(tmp_path)
    out = tmp_path / "run"
    args = ["teacher", "--dataset", "recordings", "--data-root", str(tmp_path), "--out", str(out), *SMOKE]
    assert main(args) == 0
    (rec / "train.csv").write_text((rec / "test.csv").read_text())
    capsys.readouterr()
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "holds a run on other data" in err


def test_bad_dataset_arguments_are_one_sentence(tmp_path, capsys):
    assert main(["teacher", "--dataset", "recordings", "--out", str(tmp_path / "o"), *SMOKE]) == 2
    assert "needs --data-root" in capsys.readouterr().err
    assert main(["teacher", "--dataset", "recordings", "--data-root", str(tmp_path / "nowhere"),
                 "--out", str(tmp_path / "o"), *SMOKE]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["teacher", "--dataset", "moving-digits", "--layout", "video", "--out", str(tmp_path / "o"),
                 *SMOKE]) == 2
    assert "takes no media options" in capsys.readouterr().err
    assert main(["teacher", "--dataset", "recordings", "--data-root", str(tmp_path), "--limit", "0",
                 "--out", str(tmp_path / "o"), *SMOKE]) == 2
    assert "--limit must be at least 1" in capsys.readouterr().err


@pytest.mark.integration
def test_something_something_student_without_audio(data_root, tmp_path):
    """Real labels.json and validation rows; SSv2 has no audio, so no sample has the A subset."""
    real = data_root / "annotations" / "something-something-v2"
    entries = json.loads((real / "validation_first500.json").read_text())[:40]
    ann = tmp_path / "ann"
    ann.mkdir()
    shutil.copy(real / "labels.json", ann / "labels.json")
    for name in ("train.json", "validation.json"):
        (ann / name).write_text(json.dumps(entries))
    media = tmp_path / "videos"
    for e in entries[:10]:
        write_video(media / f"{e['id']}.webm", 24, 12, audio=False, codec="libvpx", level=lambda k: 6 * k + 10)
    corrupt(media / f"{entries[10]['id']}.webm")
    out = tmp_path / "run"
    assert main(["student", "--dataset", "something-something-v2", "--data-root", str(data_root),
                 "--annotations", str(ann), "--media-root", str(media), "--train-split", "train-full",
                 "--out", str(out), *SMOKE]) == 0
    result = read_json(out / "student" / "results.json")
    assert result["train"]["skipped"] == {"missing video": 29, "unreadable while loading": 1}
    assert set(result["table"]) == {"VFA", "VF", "VA", "FA", "V", "F"}     # "A" alone: nobody has it
    assert result["table"]["VA"] == result["table"]["V"]                     # VA on SSv2 is V
    assert load_bundle(out / "bundles" / "karmma_s").labels["noun"] == ["something"]


def write_epic(data_root: Path, tmp_path: Path) -> tuple[Path, Path, list[dict]]:
    """Real EPIC rows of P01_11 and P01_12 as train = validation = challenge annotations, and P01_11's first
    1500 frames as a generated frame folder (P01_12 has no media). Returns annotations, media root, rows."""
    real = data_root / "annotations" / "epic-kitchens-100"
    ann = tmp_path / "ann"
    ann.mkdir()
    for name in ("EPIC_100_verb_classes.csv", "EPIC_100_noun_classes.csv", "EPIC_100_video_info.csv"):
        shutil.copy(real / name, ann / name)
    with open(real / "EPIC_100_validation.csv", newline="") as fh:
        reader = csv.DictReader(fh)
        rows = [r for r in reader if r["video_id"] in ("P01_11", "P01_12")]
        fields = reader.fieldnames
    for name in ("EPIC_100_train.csv", "EPIC_100_validation.csv", "EPIC_100_test_timestamps.csv"):
        with open(ann / name, "w", newline="") as fh:
            unlabelled = name.endswith("timestamps.csv")
            writer = csv.DictWriter(fh, [f for f in fields if not (unlabelled and "class" in f)],
                                    extrasaction="ignore")
            writer.writeheader()
            writer.writerows(rows)
    frames = tmp_path / "media" / "P01" / "rgb_frames" / "P01_11"
    frames.mkdir(parents=True)
    for k in range(1, 1501):
        cv2.imwrite(str(frames / f"frame_{k:010d}.jpg"), grey(k % 256))
    return ann, tmp_path / "media", rows


def test_epic_kitchens_teacher_on_frame_folders(data_root, tmp_path, capsys):
    """Real EPIC rows of P01_11 (train = test = the official validation rows) over a generated frame folder."""
    ann, media, rows = write_epic(data_root, tmp_path)
    out = tmp_path / "run"
    epic = ["--dataset", "epic-kitchens-100", "--data-root", str(data_root), "--annotations", str(ann),
            "--media-root", str(media), "--out", str(out), *SMOKE]
    assert main(["teacher", *epic, "--train-split", "train-full"]) == 0
    result = read_json(out / "teacher" / "results.json")
    kept = sum(r["video_id"] == "P01_11" and int(r["start_frame"]) <= 1500 for r in rows)
    assert result["train"]["samples"] == kept >= 5
    assert result["train"]["skipped"]["missing or unreadable media"] == sum(r["video_id"] == "P01_12" for r in rows)
    assert result["train"]["skipped"]["past the end of its video"] >= 1
    assert set(result["table"]) == {"VFA", "VF", "VA", "FA", "V", "F"}     # no MP4: no audio
    manifest = load_bundle(out / "bundles" / "teacher").manifest
    assert (len(manifest["labels"]["verb"]), len(manifest["labels"]["noun"])) == (97, 300)
    capsys.readouterr()
    assert main(["teacher", *epic, "--train-split", "train-full", "--eval-split", "challenge"]) == 2
    assert "has no labels" in capsys.readouterr().err                      # not a silent 0 % score


@pytest.mark.slow
@pytest.mark.integration
def test_benchmark_on_a_real_dataset(tmp_path):
    """`benchmark --dataset` trains the teacher and the three students through the same stages as `student`."""
    write_recordings(tmp_path)
    out = tmp_path / "bench"
    assert main(["benchmark", "--dataset", "recordings", "--data-root", str(tmp_path), "--out", str(out),
                 *SMOKE]) == 0
    results = read_json(out / "results.json")
    models = {"teacher", "baseline", "baseline_delta", "karmma_s"}
    assert {(r["model"], r["modalities"]) for r in results["table"]} == {
        (m, s) for m in models for s in ("VFA", "VF", "VA", "FA", "V", "F", "A")}
    assert results["data"]["dataset"] == "recordings" and results["data"]["n_eval"] == 6
    assert {r["model"] for r in results["drop_curve"]} == models
    for name in ("baseline", "baseline_delta", "karmma_s"):
        assert (out / "students" / f"{name}_seed0.pt").is_file()
    assert load_bundle(out / "bundles" / "karmma_s").manifest["name"] == "karmma_s-recordings"
    assert "| VFA |" in (out / "results.md").read_text()
