"""The own-actions recording on real devices (slow): `python -m edge.bench own-actions --record-only` with 2 actions
x 2 takes. An MJPEG network camera (640x480, 30 fps) and a private PulseAudio microphone (16 kHz) play the stage;
`python -m edge.record` records the takes as prompted. The rows must name the actions in the plan's splits, lie
inside the session file, and each take's frames and sound must be the take the stage played for that prompt."""
# Tier: device (slow: an MJPEG camera and a PulseAudio microphone, edge.bench in subprocesses).
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import av
import pytest

from edge.bench.pulse import missing_tool
from test_record import kept_rows_within_the_video

REPO = Path(__file__).resolve().parent.parent
pytestmark = [pytest.mark.slow, pytest.mark.device]


def test_own_actions_are_recorded_from_the_devices_as_played(tmp_path):
    if missing_tool():
        pytest.skip(f"{missing_tool()} is not installed (apt-get install pulseaudio pulseaudio-utils libasound2-plugins)")
    pytest.importorskip("sounddevice", reason="PortAudio (libportaudio2) is not installed")
    out = tmp_path / "own"
    run = subprocess.run([sys.executable, "-m", "edge.bench", "own-actions", "--out", str(out), "--actions", "2",
                          "--train", "1", "--val", "0", "--test", "1", "--record-only", "--json"], cwd=REPO,
                         capture_output=True, text=True, timeout=240)
    assert run.returncode == 0, run.stderr[-2000:]
    s = json.loads(run.stdout)
    rec, check = s["record"], s["check"]
    assert rec["takes_kept"] == 4 and rec["frames_dropped"] == 0 and rec["samples_dropped"] == 0, rec
    assert s["rows"] == {"train": 2, "val": 0, "test": 2}
    assert check["takes"] == 4 and check["label_is_played_action"] == 4, check
    assert check["frames_show_played_take"] == 4 and check["audio_has_played_sound"] == 4, check["rows"]
    assert s["finetune"] == {"ran": False, "why": "--record-only"}
    kept, media = kept_rows_within_the_video(out / "recordings")
    assert sorted((r["verb"], r["noun"]) for r in kept) == [("approach", "triangle")] * 2 + [("circle", "ring")] * 2
    with av.open(str(media)) as c:
        v, a = c.streams.video[0], c.streams.audio[0]
        assert (v.codec_context.width, v.codec_context.height, a.rate) == (640, 480, 16000)
        assert abs(float(v.average_rate) - 30) < 0.5


def test_real_takes_are_recorded_fine_tuned_and_recognized_live_from_the_devices(tmp_path, data_root):
    """`own-actions --takes`: 2 real actions x 4 takes (diving, bench press); one take of each is held out, the
    other three are played on the camera and recorded as prompted, fine-tuned, and the held-out ones played live."""
    if missing_tool():
        pytest.skip(f"{missing_tool()} is not installed (apt-get install pulseaudio pulseaudio-utils libasound2-plugins)")
    pytest.importorskip("sounddevice", reason="PortAudio (libportaudio2) is not installed")
    real = data_root / "real-takes"
    if not (real / "takes.csv").is_file():
        pytest.skip(f"{real} has no takes.csv")
    folder = tmp_path / "takes"
    folder.mkdir()
    rows = [f"{real / c / f'v_{n}_g01_c0{k}.mp4'},,,{v},{o}" for c, n, v, o in
            (("diving", "Diving", "dive", "pool"), ("benchpress", "BenchPress", "press", "barbell")) for k in (1, 2, 3, 4)]
    (folder / "takes.csv").write_text("media,start,end,verb,noun\n" + "\n".join(rows) + "\n")
    out = tmp_path / "own"
    run = subprocess.run([sys.executable, "-m", "edge.bench", "own-actions", "--takes", str(folder), "--out", str(out),
                          "--take-seconds", "3", "--live-gap", "2", "--json"], cwd=REPO, capture_output=True,
                         text=True, timeout=400)
    assert run.returncode == 0, run.stderr[-2000:]
    s = json.loads(run.stdout)
    assert s["actions"] == ["dive pool", "press barbell"] and s["takes"] == {"train": 6, "test": 2}
    assert s["record"]["takes_kept"] == 6 and s["rows"] == {"train": 6, "val": 0, "test": 0}
    assert s["check"]["frames_show_played_take"] == 6 and s["check"]["label_is_played_action"] == 6, s["check"]
    live = s["live"]
    assert live["of"] == 2 and all(a["votes"] >= 5 and a["outside_actions"] == 0 for a in live["actions"]), live
    assert sorted(tuple(a["truth"]) for a in live["actions"]) == [("dive", "pool"), ("press", "barbell")]
    # What the learner gets right from 3 takes per action is measured by crossval, not here: the recorded frames
    # differ from run to run, and over 2 held-out takes one miss (2 of about 6 runs here) is noise. Swapped or
    # shifted labels would get both wrong.
    assert live["right"] >= 1, live
