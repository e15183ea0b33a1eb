"""The live recognizer end to end: real clips from ../shared/data/clips, sensor faults, bad inputs, signals."""
# Tier: unit, except the tests marked integration (run_live.py in a subprocess; slow: a real-time session).
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edge.bundle import load_bundle
from edge.live.faults import Fault, FaultInjector
from edge.live.media import MediaAudio, MediaVideo
from tests.live_helpers import run_live_session, wait_for_a_prediction

REPO = Path(__file__).resolve().parent.parent
PREDICTION_KEYS = {"type", "t", "modalities", "verb", "noun", "confidence", "latency_ms"}
EVENT_KEYS = {"type", "start", "end", "verb", "noun", "confidence", "modalities"}


def run_live(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "run_live.py"), *args], cwd=REPO, capture_output=True,
                          text=True, timeout=timeout)


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def predictions(records: list[dict]) -> list[dict]:
    return [r for r in records if r["type"] == "prediction"]


def check_formats(records: list[dict]) -> None:
    assert records[-1]["type"] == "summary"
    for r in records:
        if r["type"] == "prediction":
            assert PREDICTION_KEYS <= set(r) and set(r["modalities"]) <= {"V", "F", "A"}
        elif r["type"] == "event":
            assert EVENT_KEYS <= set(r)


@pytest.fixture(scope="module")
def clips(data_root) -> Path:
    return data_root / "clips"


@pytest.mark.integration
def test_pancake_runs_in_real_time_with_video_flow_and_audio(random_bundle, clips, tmp_path):
    pancake = str(clips / "flipping_a_pancake.mkv")
    out = tmp_path / "p.jsonl"
    start = time.monotonic()
    res = run_live("--camera", pancake, "--mic", pancake, "--bundle", str(random_bundle), "--duration", "4",
                   "--jsonl", str(out))
    assert res.returncode == 0, res.stderr
    assert 3.9 < time.monotonic() - start < 12          # paced at the clip's own speed, not faster
    records = read_jsonl(out)
    check_formats(records)
    preds = predictions(records)
    assert preds[0]["state"] == "warming_up"
    assert sum(p["modalities"] == ["V", "F", "A"] for p in preds) >= 12
    assert all(p["latency_ms"] is not None for p in preds if p["modalities"])
    summary = records[-1]
    assert summary["counters"].get("late_ticks", 0) <= 5   # a busy shared CPU may delay a tick or two
    assert summary["capture_to_prediction_ms"]["p50"] < 100
    assert "capture-to-prediction ms" in res.stdout


@pytest.mark.integration
def test_clip_without_audio_runs_on_video_and_flow_until_the_file_ends(random_bundle, clips, tmp_path):
    clip = str(clips / "kinetics_arm_wrestling_noaudio.mp4")
    out = tmp_path / "n.jsonl"
    res = run_live("--camera", clip, "--mic", clip, "--bundle", str(random_bundle), "--fast", "--jsonl", str(out))
    assert res.returncode == 0, res.stderr
    assert "has no audio stream" in res.stderr and "Traceback" not in res.stderr
    records = read_jsonl(out)
    check_formats(records)
    preds = predictions(records)
    assert 9.0 < preds[-1]["t"] < 10.5                    # ran to the end of the 10 s file, then stopped
    used = [p["modalities"] for p in preds if p["modalities"]]
    assert used and all("A" not in m for m in used) and used[-1] == ["V", "F"]
    assert all(p["missing"]["A"] == "no audio stream" for p in preds)
    # Video alone gets a new token every other tick: the ticks in between repeat nothing.
    assert all(round(p["t"] * 4) == p["t"] * 4 for p in preds if p["modalities"])
    assert "ticks_without_new_input" not in records[-1]["counters"]  # no audio source: no audio ticks at all


def _faulty_camera_run(bundle_dir: Path, clip: Path, realtime: bool) -> list[dict]:
    bundle = load_bundle(bundle_dir)
    camera = FaultInjector(MediaVideo(clip, realtime=realtime), [Fault(3.0, 5.0, "lost")], audio=False)
    mic = MediaAudio(clip, bundle.preprocess.audio_sample_rate, realtime=realtime)
    camera.open()
    mic.open()
    _, records, _ = run_live_session(bundle, camera, mic, realtime=realtime, duration_s=8.5)
    return predictions(records)


def _check_camera_gap(preds: list[dict]) -> None:
    def used(t0: float, t1: float) -> list[list[str]]:
        return [p["modalities"] for p in preds if t0 <= p["t"] < t1]

    assert all(m == ["V", "F", "A"] for m in used(2.5, 2.9))
    assert used(3.6, 5.0) and all(m == ["A"] for m in used(3.6, 5.0))       # camera lost: A alone goes on
    assert all(m == ["V", "F", "A"] for m in used(7.0, 8.5))                # reopened: V and F are back


def test_camera_failing_after_3s_leaves_audio_then_video_and_flow_come_back(random_bundle, clips):
    _check_camera_gap(_faulty_camera_run(random_bundle, clips / "flipping_a_pancake.mkv", realtime=False))


@pytest.mark.slow
@pytest.mark.integration
def test_camera_failing_after_3s_in_real_time_reconnects_with_backoff(random_bundle, clips):
    _check_camera_gap(_faulty_camera_run(random_bundle, clips / "flipping_a_pancake.mkv", realtime=True))


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
@pytest.mark.integration
def test_signal_stops_cleanly_and_flushes_jsonl_and_summary(random_bundle, clips, tmp_path, sig):
    pancake = str(clips / "flipping_a_pancake.mkv")
    out = tmp_path / "s.jsonl"
    proc = subprocess.Popen([sys.executable, str(REPO / "run_live.py"), "--camera", pancake, "--mic", pancake,
                             "--bundle", str(random_bundle), "--jsonl", str(out)], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for_a_prediction(out)
    proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=10)
    assert proc.returncode == 0, stderr
    assert "Traceback" not in stderr and "capture-to-prediction" in stdout
    records = read_jsonl(out)
    check_formats(records)
    assert records[-1]["wall_s"] < 8


@pytest.mark.integration
def test_no_camera_and_no_microphone_exit_within_10s_pointing_to_demo(random_bundle):
    if Path("/dev/video0").exists():
        pytest.skip("this machine has a camera at /dev/video0")
    start = time.monotonic()
    res = run_live("--camera", "0", "--mic", "default", "--bundle", str(random_bundle), timeout=10)
    assert time.monotonic() - start < 10
    assert res.returncode != 0
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "--demo" in lines[0], res.stderr


@pytest.mark.integration
def test_missing_microphone_is_one_sentence(random_bundle):
    sd = pytest.importorskip("sounddevice")
    if any(d["max_input_channels"] > 0 for d in sd.query_devices()):
        pytest.skip("this machine has an input device")
    res = run_live("--camera", "none", "--mic", "default", "--bundle", str(random_bundle), timeout=10)
    assert res.returncode == 2 and res.stderr.count("\n") == 1 and "no microphone" in res.stderr


@pytest.fixture(scope="module")
def tiny_video(tmp_path_factory) -> Path:
    """A valid 3 s video written with PyAV (no third-party media): long enough for a prediction."""
    import av
    import numpy as np

    path = tmp_path_factory.mktemp("media") / "tiny.mp4"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("mpeg4", rate=10)
        stream.width = stream.height = 64
        for i in range(30):
            frame = av.VideoFrame.from_ndarray(np.full((64, 64, 3), 40 + 5 * i, np.uint8), format="rgb24")
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return path


@pytest.mark.parametrize("case", ["missing", "directory", "empty", "corrupt", "jsonl", "config", "no_sensor"])
@pytest.mark.integration
def test_bad_inputs_get_one_sentence_and_exit_2(random_bundle, tiny_video, tmp_path, case):
    args = ["--bundle", str(random_bundle)]
    media = tmp_path / "clip.mp4"
    if case == "missing":
        args += ["--camera", str(media)]
    elif case == "directory":
        args += ["--camera", str(tmp_path)]
    elif case == "empty":
        media.write_bytes(b"")
        args += ["--camera", str(media)]
    elif case == "corrupt":
        media.write_bytes(os.urandom(4096))
        args += ["--camera", str(media)]
    elif case == "jsonl":
        args += ["--camera", str(tiny_video), "--jsonl", str(tmp_path / "no" / "such" / "dir" / "x.jsonl")]
    elif case == "config":
        (tmp_path / "r.yaml").write_text("capture:\n  frame_ring: many\n")
        args += ["--camera", "0", "--config", str(tmp_path / "r.yaml")]
    res = run_live(*args, timeout=30)
    expected = {"missing": "does not exist", "directory": "is a directory", "empty": "is empty",
                "corrupt": "cannot be read", "jsonl": "cannot write the JSONL file", "config": "frame_ring must be int",
                "no_sensor": "--demo"}[case]
    assert expected in res.stderr
    assert res.returncode == 2
    assert res.stderr.startswith("error: ") and res.stderr.count("\n") == 1, res.stderr
    assert "Traceback" not in res.stderr


@pytest.mark.integration
def test_display_without_a_display_warns_and_runs_on(random_bundle, tiny_video):
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    res = subprocess.run([sys.executable, str(REPO / "run_live.py"), "--camera", str(tiny_video), "--mic", "none",
                          "--bundle", str(random_bundle), "--fast", "--display"], cwd=REPO, capture_output=True,
                         text=True, timeout=60, env=env)
    assert res.returncode == 0, res.stderr
    assert "running without the overlay" in res.stderr and "Traceback" not in res.stderr
