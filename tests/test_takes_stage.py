"""The real-takes stage of `edge.bench own-actions --takes` without devices: which takes it reads, which it holds
out, and what its camera and microphone show (a take looped to the take length, its sound, a live empty picture
between takes)."""
# Tier: unit.
from __future__ import annotations

import json
import re

import numpy as np
import pytest

from edge.bench.takes_stage import NOISE_RMS, TakeRow, TakesStage, actions_of, hold_out, read_takes
from edge.errors import EdgeError
from media_helpers import write_video


def _folder(tmp_path):
    root = tmp_path / "takes"
    write_video(root / "a1.mp4", 10, 10, audio=True, level=lambda k: 20 + 20 * k)
    write_video(root / "a2.mp4", 10, 10, audio=False)
    write_video(root / "b1.mp4", 10, 10, audio=False)
    write_video(root / "b2.mp4", 10, 10, audio=False)
    (root / "takes.csv").write_text("media,start,end,verb,noun,group,notes\n"
                                    "a1.mp4,,,wave,hand,anna,first\n"
                                    "a2.mp4,0.2,0.8,wave,hand,anna,\n"
                                    "b1.mp4,,,open,door,,\n")
    (root / "more.jsonl").write_text(json.dumps({"media": "b2.mp4", "verb": "open", "noun": "door"}) + "\n")
    return root


def test_takes_are_read_from_every_split_file_and_held_out_by_group(tmp_path):
    rows = read_takes(_folder(tmp_path))
    assert [(r.media.name, r.start, r.end, r.action) for r in rows] == [
        ("a1.mp4", None, None, ("wave", "hand")), ("a2.mp4", 0.2, 0.8, ("wave", "hand")),
        ("b1.mp4", None, None, ("open", "door")), ("b2.mp4", None, None, ("open", "door"))]
    assert actions_of(rows) == (("open", "door"), ("wave", "hand"))
    rows.append(TakeRow(rows[0].media, None, None, "wave", "hand", "ben"))
    for seed in range(6):
        train, test = hold_out(rows, 1, seed)
        assert sorted(map(id, train + test)) == sorted(map(id, rows))
        for action in actions_of(rows):
            assert any(r.action == action for r in train) and any(r.action == action for r in test)
        groups = {r.group for r in test}
        assert not groups & {r.group for r in train}              # anna's two takes stay together
    with pytest.raises(EdgeError, match="'open door' has 2 take group\\(s\\); holding out 2 take\\(s\\) would leave "
                                        "none to train on"):
        hold_out(rows, 2, 0)


@pytest.mark.parametrize("row, says", [
    ("a1.mp4,,,wave,,", "takes.csv line 2: a take needs media, verb and noun."),
    ("gone.mp4,,,wave,hand", "does not exist"),
    ("a1.mp4,abc,,wave,hand", "takes.csv line 2: 'abc' is not a number of seconds."),
    ("a1.mp4,-1,,wave,hand", "is not a time in seconds"),
])
def test_a_bad_takes_row_is_one_sentence(tmp_path, row, says):
    root = tmp_path / "t"
    write_video(root / "a1.mp4", 4, 10, audio=False)
    (root / "takes.csv").write_text(f"media,start,end,verb,noun\n{row}\n")
    with pytest.raises(EdgeError, match=re.escape(says)):
        read_takes(root)
    (root / "takes.csv").write_text("media,start,end,verb,noun\n")
    with pytest.raises(EdgeError, match="has no takes"):
        read_takes(root)


def test_the_stage_loops_a_short_take_with_its_sound_and_keeps_the_empty_picture_alive(tmp_path):
    rows = read_takes(_folder(tmp_path))
    a1 = next(r for r in rows if r.media.name == "a1.mp4")
    stage = TakesStage({"train": [a1]}, (("wave", "hand"),), length_s=2.5)
    idle = [stage.picture(k).astype(float) for k in (0, 1)]
    assert abs(idle[0].mean() - 128) < 1 and np.abs(idle[0] - idle[1]).mean() > 1      # never a frozen camera
    stage.prepare("train", 0)
    take = stage.play("train", 0)
    clip = take.clip
    assert clip.n_frames == 75 and abs(clip.fps - 10) < 0.01 and abs(take.end - take.shown - 2.5) < 1e-9
    for j in (0, 5, 12, 29, 44, 74):                    # stream frame j shows take frame int(j / 3) % 10
        level = stage.picture(clip.frame_base + j).mean()
        assert abs(level - (20 + 20 * ((j // 3) % 10))) < 4, (j, level)
    assert abs(stage.picture(clip.frame_base + 75).mean() - 128) < 1                     # over: empty again
    s0 = round(clip.frame_base / 30 * 16000)
    during, after = stage.audio(s0, 40000), stage.audio(s0 + 40000, 8000)
    assert 0.15 < np.sqrt(np.mean(during ** 2)) < 0.3 and np.sqrt(np.mean(after ** 2)) < 2 * NOISE_RMS
    offsets, shown, empty = stage.reference(take)
    assert len(offsets) == len(shown) == len(empty) == 25 and abs(shown[10].mean() - (20 + 20 * 0)) < 4
    assert stage.sound(take) is not None


def test_a_take_without_sound_is_not_checked_for_it_and_an_unknown_split_is_one_sentence(tmp_path):
    rows = read_takes(_folder(tmp_path))
    b1 = next(r for r in rows if r.media.name == "b1.mp4")
    stage = TakesStage({"train": [b1]}, (("open", "door"),), length_s=2.5)
    take = stage.play("train", 0)
    assert take.clip.sound is None and stage.sound(take) is None and stage.live_plays(0) == 0
    with pytest.raises(EdgeError, match="there is no test take of 'open door' to play."):
        stage.play("test", 0)
