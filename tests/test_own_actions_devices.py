"""The own-actions recording on real devices (slow): `python -m edge.bench own-actions --record-only` with 2 actions
x 2 takes. An MJPEG network camera (640x480, 30 fps) and a private PulseAudio microphone (16 kHz) play the stage;
`python -m edge.record` records the takes as prompted. The rows must name the actions in the plan's splits, lie
inside the session file, and each take's frames and sound must be the take the stage played for that prompt."""
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
pytestmark = pytest.mark.slow


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
