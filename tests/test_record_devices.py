"""edge.record on real devices that go away mid-take (slow): a PulseAudio microphone (private server, null sink
monitor, a real recording played into it) through PortAudio's `default`, and a real clip served as an MJPEG
network camera by edge/bench/mjpeg.py, both as tests/test_real_devices.py runs them. The camera server is
killed during a take and restarted: the take is marked lost, the recorder waits for the camera and asks again."""
# Tier: device (slow: a PulseAudio microphone and an MJPEG camera that go away mid-take).
from __future__ import annotations

import csv
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from test_real_devices import NetworkCamera, PulseServer  # skips the module without PulseAudio

REPO = Path(__file__).resolve().parent.parent
pytestmark = [pytest.mark.slow, pytest.mark.device]


def test_a_camera_lost_mid_take_is_asked_again(data_root, tmp_path):
    pytest.importorskip("sounddevice", reason="PortAudio (libportaudio2) is not installed")
    clips = data_root / "clips"
    pulse = PulseServer(tmp_path / "xdg", clips / "ucf101_apply_eye_makeup.wav")
    camera = NetworkCamera(clips / "flipping_a_pancake.mkv")
    plan = tmp_path / "plan.yaml"
    plan.write_text("take_seconds: 1.5\ncountdown: 0.3\npause: 0.3\n"
                    "actions: [{verb: flip, noun: pancake, takes: 3}]\n")
    out = tmp_path / "rec"
    try:
        pulse.start()
        camera.start()
        proc = subprocess.Popen([sys.executable, "-m", "edge.record", "--camera", camera.url, "--mic", "default",
                                 "--plan", str(plan), "--out", str(out), "--yes"], cwd=REPO, env=pulse.env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        lines, starts = [], 0
        while starts < 2:  # the second take has begun: the camera goes away for a second
            line = proc.stdout.readline()
            assert line, proc.stderr.read()
            lines.append(line)
            starts += line.startswith("now:")
        time.sleep(0.3)
        camera.stop()
        time.sleep(1.0)
        camera.start()
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        camera.stop()
        pulse.close()
    stdout = "".join(lines) + stdout
    assert proc.returncode == 0, stderr
    assert "take lost (the camera was lost" in stdout and "take 2/3 again" in stdout, stdout
    rows = list(csv.DictReader((out / "train.csv").open()))
    assert len(rows) == 3
    log = [json.loads(x) for x in next((out / "media").glob("*.log.jsonl")).read_text().splitlines()]
    assert [(x["take"], x["status"]) for x in log] == [(1, "recorded"), (2, "lost"), (2, "recorded"),
                                                       (3, "recorded")]
    lost = log[1]
    for r in rows:  # no kept take overlaps the lost one
        assert float(r["end"]) <= lost["start"] + 0.01 or float(r["start"]) >= lost["end"] - 0.01
