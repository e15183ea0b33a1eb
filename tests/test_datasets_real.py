"""Real-dataset loaders on REAL annotation rows (../shared/data/annotations) with tiny media generated here.

Frame k of every generated frame folder / video is a flat grey of a known level, so a test can read
back which frame each token was built from.
"""
# Tier: unit.
from __future__ import annotations

import csv
import json
import logging
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge.errors import ConfigError
from edge.preprocess import PreprocessConfig, uniform_indices
from trainer.data.segments import plan_clip, tsn_offsets
from trainer.data.epic_kitchens import EpicKitchens, paper_split
from trainer.data.media import EPIC_FLOW_BOUND_PX, MediaError, VideoFile
from trainer.data.recordings import Recordings
from trainer.data.registry import build_real_dataset
from trainer.data.something_something import SomethingSomethingV2

from media_helpers import corrupt, grey, write_video

CFG = PreprocessConfig()
EPIC_FPS = 60000 / 1001            # P01_11's fps in EPIC_100_video_info.csv
N_FRAMES = 200                     # the generated P01_11 frame folder stops here (most segments are later)
HOLE = 130                         # 1-based frame file deleted from it


def token_levels(v) -> np.ndarray:
    """The grey level each V token was made from (undoing ImageNet normalisation of channel 0)."""
    x = v[:, 0].mean(dim=(1, 2)).numpy() * CFG.std[0] + CFG.mean[0]
    return np.round(x * 255).astype(int)


@pytest.fixture(scope="module")
def epic_rows(data_root) -> list[dict]:
    with open(data_root / "annotations" / "epic-kitchens-100" / "EPIC_100_validation.csv", newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def epic_media(tmp_path_factory) -> Path:
    """P01_11 as distributed frame folders (frames 1..N_FRAMES, frame HOLE missing) plus u/v flow JPEGs."""
    root = tmp_path_factory.mktemp("epic")
    rgb = root / "P01" / "rgb_frames" / "P01_11"
    rgb.mkdir(parents=True)
    for k in range(1, N_FRAMES + 1):
        if k != HOLE:
            cv2.imwrite(str(rgb / f"frame_{k:010d}.jpg"), grey(k))
    for axis, level in (("u", 140), ("v", 100)):
        folder = root / "P01" / "flow_frames" / "P01_11" / axis
        folder.mkdir(parents=True)
        for k in range(1, N_FRAMES // 2 + 1):
            cv2.imwrite(str(folder / f"frame_{k:010d}.jpg"), np.full((24, 32), level, np.uint8))
    return root


def expected_epic(rows: list[dict], n_frames: int, hole: int | None) -> dict[str, tuple[int, int]]:
    """narration_id -> (start, stop) 1-based of the P01_11 segments a loader must keep."""
    gap = round(EPIC_FPS / CFG.sample_fps)
    out = {}
    for r in rows:
        start, stop = int(r["start_frame"]), int(r["stop_frame"])
        if r["video_id"] != "P01_11" or start > n_frames:
            continue
        stop = min(stop, n_frames)
        if hole is not None and max(1, start - gap) <= hole <= stop:
            continue
        out[r["narration_id"]] = (start, stop)
    return out


def test_epic_frames_layout_on_real_rows(data_root, epic_rows, epic_media, caplog):
    with caplog.at_level(logging.WARNING):
        ds = EpicKitchens(data_root, "test", media_root=epic_media)
    want = expected_epic(epic_rows, N_FRAMES, HOLE)
    assert [s.id for s in ds.segments] == list(want) and len(want) >= 2
    n_p01_11 = sum(r["video_id"] == "P01_11" for r in epic_rows)
    past_end = sum(r["video_id"] == "P01_11" and int(r["start_frame"]) > N_FRAMES for r in epic_rows)
    assert ds.skips.counts["missing or unreadable media"] == len(epic_rows) - n_p01_11
    assert ds.skips.counts["past the end of its video"] == past_end > 100
    assert ds.skips.counts["missing frame files"] == n_p01_11 - past_end - len(want) >= 1
    assert sum("skipped" in r.message for r in caplog.records) == 1          # reported once
    assert ds.num_classes == {"verb": 97, "noun": 300} and ds.labels["verb"][0] == "take"

    row = {r["narration_id"]: r for r in epic_rows}
    for i, seg in enumerate(ds.segments):
        sample = ds[i]
        start, stop = want[seg.id]
        assert sample["id"] == seg.id
        assert (sample["verb"], sample["noun"]) == (int(row[seg.id]["verb_class"]), int(row[seg.id]["noun_class"]))
        assert sample["V"].shape == (8, 6, 64, 64) and sample["F"].shape == (8, 2, 64, 64)
        assert sample["A"].shape == (5, 1, 64, 98) and not sample["A"].any()
        assert sample["present"] == {"V": True, "F": True, "A": False}          # no video file: no audio
        # evaluation sampling: uniform_indices over the 1-based frame files start..stop
        np.testing.assert_array_equal(token_levels(sample["V"]), start + uniform_indices(stop - start + 1, 8))
        assert float(sample["F"].abs().max()) < 0.05                          # flat frames: no motion


def test_epic_tsn_training_samples_vary_by_epoch_not_by_process(data_root, epic_media):
    ds = EpicKitchens(data_root, "test", media_root=epic_media, train=True)
    seg = ds.segments[0]
    parts = (np.arange(9) * (seg.stop - seg.start + 1)) // 8 + seg.start + 1
    first = token_levels(ds[0]["V"])
    assert np.all((first >= parts[:-1]) & (first < parts[1:]))             # one frame inside each eighth
    np.testing.assert_array_equal(token_levels(ds[0]["V"]), first)         # same epoch: same sample
    ds.set_epoch(1)
    assert not np.array_equal(token_levels(ds[0]["V"]), first)


def test_epic_precomputed_flow_option(data_root, epic_media):
    ds = EpicKitchens(data_root, "test", media_root=epic_media, flow_source="epic")
    f = ds[0]["F"]
    s = CFG.frame_size
    u = (140 * 2 * EPIC_FLOW_BOUND_PX / 255 - EPIC_FLOW_BOUND_PX) * s / 32 / CFG.flow.clip_px
    v = (100 * 2 * EPIC_FLOW_BOUND_PX / 255 - EPIC_FLOW_BOUND_PX) * s / 24 / CFG.flow.clip_px
    assert float(f[:, 0].mean()) == pytest.approx(np.clip(u, -1, 1), abs=0.02)
    assert float(f[:, 1].mean()) == pytest.approx(np.clip(v, -1, 1), abs=0.02)
    with pytest.raises(ConfigError, match="layout='frames'"):
        EpicKitchens(data_root, "test", media_root=epic_media, layout="video", flow_source="epic")


def test_epic_corrupt_frame_is_skipped_while_loading(data_root, epic_rows, tmp_path):
    rgb = tmp_path / "P01" / "rgb_frames" / "P01_11"
    rgb.mkdir(parents=True)
    for k in range(1, 121):
        cv2.imwrite(str(rgb / f"frame_{k:010d}.jpg"), grey(k))
    ds = EpicKitchens(data_root, "test", media_root=tmp_path)
    first, second = ds.segments[0], ds.segments[1]
    bad = first.start + int(uniform_indices(first.stop - first.start + 1, 8)[3])
    (rgb / f"frame_{bad + 1:010d}.jpg").write_bytes(b"not a jpeg")
    sample = ds[0]
    assert sample["id"] == second.id                                   # replaced by the next readable one
    assert ds.skips.counts["unreadable while loading"] == 1
    assert ds[0]["id"] == second.id and ds.skips.counts["unreadable while loading"] == 1   # remembered


def test_epic_video_layout_with_audio_and_a_corrupt_video(data_root, epic_rows, tmp_path):
    write_video(tmp_path / "P01" / "videos" / "P01_11.MP4", 160, EPIC_FPS, audio=True, level=lambda k: k + 20)
    corrupt(tmp_path / "P01" / "videos" / "P01_12.MP4")
    ds = EpicKitchens(data_root, "test", media_root=tmp_path, layout="video")
    n_p01_11 = sum(r["video_id"] == "P01_11" for r in epic_rows)
    assert ds.skips.counts["missing or unreadable media"] == len(epic_rows) - n_p01_11   # P01_12's rows too
    with pytest.raises(MediaError, match="cannot open video"):
        VideoFile(tmp_path / "P01" / "videos" / "P01_12.MP4")
    want = expected_epic(epic_rows, 159, None)                        # duration * fps of a 160-frame video
    assert [s.id for s in ds.segments] == list(want)
    sample = ds[0]
    start, stop = want[ds.segments[0].id]
    expect = start + uniform_indices(stop - start + 1, 8) - 1 + 20    # 0-based index + 20
    assert np.abs(token_levels(sample["V"]) - expect).max() <= 3       # h264 rounding
    assert sample["present"]["A"] and sample["A"].std() > 1.0
    mel = sample["A"][-1, 0].mean(dim=1)                              # a 440 Hz tone: one strong mel band
    assert int(mel.argmax()) in range(10, 30)
    rgb = tmp_path / "P01" / "rgb_frames" / "P01_11"                 # frame folders + the video's audio
    rgb.mkdir(parents=True)
    for k in range(1, 161):
        cv2.imwrite(str(rgb / f"frame_{k:010d}.jpg"), grey(k))
    frames = EpicKitchens(data_root, "test", media_root=tmp_path)[0]
    assert frames["present"]["A"] and np.allclose(frames["A"], sample["A"])
    np.testing.assert_array_equal(token_levels(frames["V"]), start + uniform_indices(stop - start + 1, 8))


def test_epic_paper_split_on_real_rows(data_root, epic_media, tmp_path):
    real = data_root / "annotations" / "epic-kitchens-100"
    ann = tmp_path / "ann"
    ann.mkdir()
    for f in real.glob("*.csv"):
        (ann / f.name).symlink_to(f)
    (ann / "EPIC_100_train.csv").symlink_to(real / "EPIC_100_validation.csv")   # stand-in: train is not here
    with open(real / "EPIC_100_validation.csv", newline="") as fh:
        videos = [r["video_id"] for r in csv.DictReader(fh)]
    val = paper_split(videos, 0.1, seed=0)
    share = sum(v in val for v in videos) / len(videos)
    assert 0.09 < share < 0.13 and paper_split(videos, 0.1, seed=0) == val != paper_split(videos, 0.1, seed=1)
    seed = next(s for s in range(50) if "P01_11" in paper_split(videos, 0.1, s))   # P01_11 in val
    val = paper_split(videos, 0.1, seed)
    with open(real / "EPIC_100_validation.csv", newline="") as fh:   # the train video whose first segment ends first
        other = min((int(r["stop_frame"]), r["video_id"]) for r in csv.DictReader(fh) if r["video_id"] not in val)[1]
    media = tmp_path / "media"
    for vid in ("P01_11", other):
        folder = media / vid.split("_")[0] / "rgb_frames" / vid
        folder.mkdir(parents=True)
        for k in range(1, 301):
            cv2.imwrite(str(folder / f"frame_{k:010d}.jpg"), grey(k % 256))
    sets = {split: EpicKitchens(data_root, split, annotations=ann, media_root=media, seed=seed)
            for split in ("train", "val", "train-full")}
    assert sets["train"].train and not sets["val"].train and sets["train-full"].train
    rows = {split: len(ds) + ds.skips.total for split, ds in sets.items()}
    assert rows["train"] + rows["val"] == rows["train-full"] == len(videos)
    assert rows["val"] == sum(v in val for v in videos)
    assert {s.media for s in sets["val"].segments} == {"P01_11"}
    assert {s.media for s in sets["train"].segments} == {other}
    assert len(sets["train-full"]) == len(sets["train"]) + len(sets["val"])


def test_ssv2_real_labels_generated_webm(data_root, tmp_path):
    ann = data_root / "annotations" / "something-something-v2"
    entries = json.loads((ann / "validation_first500.json").read_text())
    labels = json.loads((ann / "labels.json").read_text())
    media = tmp_path / "videos"
    media.mkdir()
    for e in entries[:2]:
        write_video(media / f"{e['id']}.webm", 30, 12, audio=False, codec="libvpx", level=lambda k: 5 * k + 10)
    corrupt(media / f"{entries[2]['id']}.webm")
    ds = SomethingSomethingV2(data_root, "test", media_root=media, list_file=ann / "validation_first500.json")
    assert len(ds) == 3 and ds.skips.counts["missing video"] == len(entries) - 3
    assert ds.num_classes == {"verb": 174, "noun": 1} and ds.labels["noun"] == ["something"]
    got = [ds[i] for i in range(3)]
    assert ds.skips.counts["unreadable while loading"] == 1             # the corrupt one, replaced
    for sample in got:
        e = next(x for x in entries if x["id"] == sample["id"])
        assert sample["verb"] == int(labels[e["template"].replace("[", "").replace("]", "")]) and sample["noun"] == 0
        assert sample["present"] == {"V": True, "F": True, "A": False} and not sample["A"].any()
        assert np.abs(token_levels(sample["V"]) - (5 * uniform_indices(30, 8) + 10)).max() <= 3


def test_recordings_csv_and_jsonl(tmp_path):
    write_video(tmp_path / "a.mp4", 90, 30, audio=True, level=lambda k: 2 * k)
    write_video(tmp_path / "clips" / "b.mp4", 60, 30, audio=False)
    corrupt(tmp_path / "broken.mp4")
    (tmp_path / "train.csv").write_text(
        "media,start,end,verb,noun\n"
        "a.mp4,0.5,2.5,open,fridge\n"
        "clips/b.mp4,0.0,1.0,close,door\n"
        "broken.mp4,0,1,open,door\n"
        "a.mp4,5.0,6.0,open,door\n"          # starts past the end of the 3 s video
        "a.mp4,2.0,4.0,close,fridge\n")      # runs past the end: clamped
    (tmp_path / "test.jsonl").write_text(json.dumps({"media": "a.mp4", "start": 1, "end": 2, "verb": "wash",
                                                     "noun": "cup"}) + "\n")
    ds = Recordings(tmp_path, annotations=tmp_path)
    assert ds.labels == {"verb": ["close", "open", "wash"], "noun": ["cup", "door", "fridge"]}
    assert len(ds) == 3 and ds.skips.counts["missing or unreadable media"] == 1
    assert ds.skips.counts["past the end of its video"] == 1
    assert ds.segments[2].stop == 89
    s0 = Recordings(tmp_path, "train", annotations=tmp_path, train=False)[0]
    assert (s0["verb"], s0["noun"]) == (1, 2) and s0["present"]["A"] and s0["A"].std() > 1.0
    expect = 2 * (15 + uniform_indices(60, 8))                               # frames 15..74 at 30 fps
    assert np.abs(token_levels(s0["V"]) - expect).max() <= 3
    assert not ds[1]["present"]["A"]                                         # b.mp4 has no audio track
    test = build_real_dataset("recordings", tmp_path, "test", annotations=tmp_path)
    assert test[0]["verb"] == 2 and not test.train


def test_recordings_bad_rows_are_one_sentence(tmp_path):
    (tmp_path / "train.csv").write_text("media,start,end,verb\nx.mp4,0,1,open\n")
    with pytest.raises(ConfigError, match=r"row 1 lacks \['noun'\]"):
        Recordings(tmp_path, annotations=tmp_path)
    (tmp_path / "train.csv").write_text("media,start,end,verb,noun\nx.mp4,2,1,open,cup\n")
    with pytest.raises(ConfigError, match="start < end"):
        Recordings(tmp_path, annotations=tmp_path)
    with pytest.raises(ConfigError, match="unknown dataset"):
        build_real_dataset("kinetics", tmp_path, "train")


def test_video_file_frames_by_index_including_seek_and_past_the_end(tmp_path):
    write_video(tmp_path / "v.mp4", 100, EPIC_FPS, audio=False, level=lambda k: 2 * k)
    video = VideoFile(tmp_path / "v.mp4")
    assert video.n_frames == 100 and not video.has_audio
    got = video.frames([0, 37, 80, 99, 130])
    levels = {i: int(round(f.mean())) for i, f in got.items()}
    assert all(abs(levels[i] - 2 * min(i, 99)) <= 3 for i in levels), levels
    assert video.audio_windows([1.0], 1.0, 16000) is None


def test_video_file_audio_averages_channels_as_the_runtime_does(tmp_path):
    """Loud stereo (0.8 on both channels) stays 0.8: FFmpeg's mono downmix would sum it past full scale."""
    write_video(tmp_path / "v.mp4", 60, EPIC_FPS, audio=True, audio_layout="stereo", amplitude=0.8)
    window = VideoFile(tmp_path / "v.mp4").audio_windows([1.0], 0.5, 16000)[0]
    assert 0.7 < float(np.abs(window).max()) < 0.9


def test_plan_clip_flow_spans_the_runtime_interval():
    plan = plan_clip(100, 699, EPIC_FPS, CFG)                      # a 10 s segment
    np.testing.assert_array_equal(plan.video, 100 + uniform_indices(600, 8))
    np.testing.assert_array_equal(plan.flow_to - plan.flow_from, 15)   # 1/4 s at 59.94 fps, not 1.25 s
    np.testing.assert_allclose(plan.audio_end_s, (plan.video[3:] + 1) / EPIC_FPS)
    short = plan_clip(3, 5, 30.0, CFG, np.random.default_rng(0))    # shorter than 8 frames: repeats
    assert short.video.min() >= 3 and short.video.max() <= 5 and short.flow_from.min() >= 0
    offs = tsn_offsets(80, 8, np.random.default_rng(1))
    assert np.all(offs // 10 == np.arange(8))
