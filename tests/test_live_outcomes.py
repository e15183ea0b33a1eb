"""How a run ends: a full disk, a run that made nothing usable, Ctrl-C at any moment, a bad --duration."""
# Tier: unit, except the tests marked integration (run_live.py in a subprocess; a 3 s real-time session).
from __future__ import annotations

import signal
import subprocess
import sys
import time

import cv2
import numpy as np
import pytest

from edge.bundle import load_bundle
from edge.live.config import RuntimeConfig
from edge.live.pipeline import recognizer_for, run_session
from edge.live.arrays import ArrayVideo
from edge.live.sensors import Sensor
from edge.live.sources import SourceLost
from tests.conftest import REPO
from tests.live_helpers import wait_for_a_prediction
from tests.media_helpers import write_video


def run_live(*args: str, timeout: float = 90) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "run_live.py"), *args], cwd=REPO, capture_output=True,
                          text=True, timeout=timeout)


@pytest.fixture(scope="module")
def pancake(data_root) -> str:
    return str(data_root / "clips" / "flipping_a_pancake.mkv")


@pytest.mark.integration
def test_a_full_disk_is_one_warning_predictions_go_on_and_the_exit_code_says_the_jsonl_is_incomplete(
        random_bundle, pancake):
    res = run_live("--camera", pancake, "--mic", pancake, "--bundle", str(random_bundle), "--fast",
                   "--duration", "3", "--jsonl", "/dev/full")
    assert res.returncode == 4, res.stderr
    lines = res.stderr.splitlines()
    assert len(lines) == 2 and "Traceback" not in res.stderr, lines
    assert lines[0] == ("warning: cannot write to the JSONL file /dev/full any more (No space left on device); "
                        "predictions go on, but the file ends at its last whole line.")
    assert lines[1].startswith("error: the JSONL file is incomplete")
    assert "prediction records" in res.stdout and "capture-to-prediction" in res.stdout  # the summary is printed


def _one_error(res: subprocess.CompletedProcess, needle: str) -> None:
    assert res.returncode == 3, (res.returncode, res.stderr)
    lines = res.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: no usable prediction was made: "), lines
    assert needle in lines[0] and lines[0].endswith("."), lines[0]


@pytest.mark.integration
def test_a_still_image_as_the_camera_names_its_single_frame(random_bundle, tmp_path):
    png = tmp_path / "still.png"
    cv2.imwrite(str(png), np.random.default_rng(0).integers(30, 220, (48, 64, 3), np.uint8))
    _one_error(run_live("--camera", str(png), "--mic", "none", "--bundle", str(random_bundle), "--fast"),
               "delivers a single frame, below the 4 per second the sampler needs")


@pytest.mark.integration
def test_a_1_fps_video_names_its_frame_rate(random_bundle, tmp_path):
    clip = tmp_path / "slow.mkv"
    write_video(clip, 6, 1, audio=False, level=lambda k: 60 + 20 * k)
    _one_error(run_live("--camera", str(clip), "--mic", "none", "--bundle", str(random_bundle), "--fast"),
               "delivers 1 frames per second, below the 4 per second the sampler needs")


@pytest.mark.integration
def test_audio_clipped_throughout_is_named(random_bundle, tmp_path):
    import av

    path = tmp_path / "clipped.wav"
    square = np.sign(np.sin(2 * np.pi * 220 * np.arange(3 * 16000) / 16000)).astype(np.float32)
    with av.open(str(path), "w") as c:
        stream = c.add_stream("pcm_f32le", rate=16000)
        stream.layout = "mono"
        for i in range(0, square.size, 1600):
            frame = av.AudioFrame.from_ndarray(square[None, i:i + 1600], format="flt", layout="mono")
            frame.sample_rate = 16000
            for packet in stream.encode(frame):
                c.mux(packet)
        for packet in stream.encode():
            c.mux(packet)
    _one_error(run_live("--camera", "none", "--mic", str(path), "--bundle", str(random_bundle), "--fast"),
               "is clipped throughout")


class SlowVideo(ArrayVideo):
    """Frames that take 20x their own duration to produce (1.5 per second of a 30 fps stream), as a decoder far
    slower than real time would."""

    def read(self):
        time.sleep(20.0 / self.fps)
        return super().read()


@pytest.mark.integration
def test_a_source_slower_than_real_time_is_named(random_bundle):
    bundle = load_bundle(random_bundle)
    frames = np.random.default_rng(0).integers(30, 220, (8, 48, 64, 3), np.uint8)
    video, audio = Sensor(SlowVideo(frames, 30.0, loop=True, name="slow video")), Sensor(None, "off")
    core = recognizer_for(bundle, RuntimeConfig(), video, audio)
    outcome = run_session(bundle, RuntimeConfig(), video, audio, realtime=True, duration_s=3.0, core=core)
    assert outcome.diagnosis is not None and "slow video decodes slower than real time" in outcome.diagnosis
    assert outcome.summary["counters"]["camera_late_skipped"] > 0  # and the pacer's skips are counted


@pytest.mark.parametrize("value", ["nan", "inf", "-1", "0", "soon"])
@pytest.mark.integration
def test_a_duration_that_is_not_a_finite_positive_number_is_refused(random_bundle, value):
    res = run_live("--camera", "none", "--mic", "none", "--duration", value)
    assert res.returncode == 2 and "--duration" in res.stderr and "Traceback" not in res.stderr


@pytest.mark.integration
def test_a_second_ctrl_c_during_the_clean_stop_still_exits_0(random_bundle, pancake, tmp_path):
    out = tmp_path / "c.jsonl"
    proc = subprocess.Popen([sys.executable, str(REPO / "run_live.py"), "--camera", pancake, "--mic", pancake,
                             "--bundle", str(random_bundle), "--jsonl", str(out)], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for_a_prediction(out)
    while proc.poll() is None:  # Ctrl-C, then keep pressing it through the stop and the interpreter's exit
        proc.send_signal(signal.SIGINT)
        time.sleep(0.02)
    stdout, stderr = proc.communicate(timeout=10)
    assert proc.returncode == 0, stderr
    assert "Traceback" not in stderr and "capture-to-prediction" in stdout


@pytest.mark.integration
def test_ctrl_c_during_start_up_is_one_sentence(random_bundle, pancake):
    proc = subprocess.Popen([sys.executable, str(REPO / "run_live.py"), "--camera", pancake, "--mic", "none",
                             "--bundle", str(random_bundle)], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    time.sleep(0.5)  # Python is up (its Ctrl-C handler installed), numpy / OpenCV / onnxruntime still loading
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=30)
    assert "Traceback" not in stderr
    if proc.returncode != 0:  # a fast machine may have started the session already: then it stops cleanly
        assert proc.returncode == 130 and stderr.strip() == "interrupted before the recognizer started."


def test_black_video_and_no_microphone_name_the_reason_v_was_missing(random_bundle):
    bundle = load_bundle(random_bundle)
    black = np.zeros((24, 32, 32, 3), np.uint8)
    video, audio = Sensor(ArrayVideo(black, 8.0, realtime=False)), Sensor(None, "off")
    outcome = run_session(bundle, RuntimeConfig(), video, audio, realtime=False)
    assert outcome.diagnosis == "no usable prediction was made: video (V) was black throughout."


def test_after_a_full_disk_the_jsonl_ends_at_its_last_whole_line(tmp_path, capsys):
    """Half a record reaches the disk, then ENOSPC: the file is cut back to the last whole line (os.ftruncate), as
    the warning says, and nothing is written after it."""
    import errno
    import json

    from edge.live import sinks

    path = tmp_path / "x.jsonl"
    sink = sinks.JsonlSink(str(path))
    for i in range(3):
        sink({"type": "prediction", "i": i})

    class FullDisk:                          # the file as a full disk leaves it: one partial write, then ENOSPC
        def __init__(self, fh) -> None:
            self.fh, self.calls = fh, 0

        def write(self, data: bytes) -> int:
            self.calls += 1
            if self.calls == 1:
                return self.fh.write(data[:7])
            raise OSError(errno.ENOSPC, "No space left on device")

        def fileno(self) -> int:
            return self.fh.fileno()

        def close(self) -> None:
            self.fh.close()

    sink._fh = FullDisk(sink._fh)
    sink({"type": "prediction", "i": 3})
    sink.close({"type": "summary"})
    text = path.read_text()
    assert text.endswith("\n") and [json.loads(line)["i"] for line in text.splitlines()] == [0, 1, 2]
    assert not sink.complete and "ends at its last whole line" in capsys.readouterr().err


@pytest.mark.parametrize("which", ["--camera", "--mic", "--config"])
@pytest.mark.integration
def test_the_jsonl_is_never_written_over_an_input(random_bundle, tmp_path, which):
    video, sound = tmp_path / "v.mp4", tmp_path / "a.mp4"
    write_video(video, 60, 15, audio=True)
    write_video(sound, 60, 15, audio=True)
    cfg = tmp_path / "runtime.yaml"
    cfg.write_text("status_interval_s: 0.5\n")
    before = {p: p.read_bytes() for p in (video, sound, cfg)}
    target = {"--camera": video, "--mic": sound, "--config": cfg}[which]
    res = run_live("--camera", str(video), "--mic", str(sound), "--config", str(cfg), "--bundle", str(random_bundle),
                   "--fast", "--jsonl", str(target))
    assert res.returncode == 2 and res.stderr.count("\n") == 1 and "write the JSONL to another file" in res.stderr
    assert all(p.read_bytes() == data for p, data in before.items())      # inputs untouched


@pytest.mark.parametrize("duration", ["1e-300", "0.1"])
@pytest.mark.parametrize("sensor", ["--camera", "--mic"])
@pytest.mark.integration
def test_a_run_too_short_for_the_window_says_so_whichever_sensor(random_bundle, pancake, duration, sensor):
    other = "--mic" if sensor == "--camera" else "--camera"
    res = run_live(sensor, pancake, other, "none", "--bundle", str(random_bundle), "--fast", "--duration", duration)
    _one_error(res, "before the model's 2 s token window filled")


class FailingAfterOneFrame(ArrayVideo):
    """A file source that delivers one frame, then reopens fine and fails every read: media time stands still, so
    no item ever comes for a --fast run to check its stop at."""

    def read(self):
        if self._i:
            raise SourceLost(f"{self.name} failed.")
        return super().read()


def test_a_fast_run_stops_when_asked_even_while_a_source_fails_every_read(random_bundle):
    import threading
    video = Sensor(FailingAfterOneFrame(np.zeros((4, 48, 64, 3), np.uint8), 8.0, realtime=False))
    outcomes = []

    def stop_soon(session) -> None:
        threading.Timer(0.3, session.stop, kwargs={"interrupted": True}).start()

    run = threading.Thread(target=lambda: outcomes.append(run_session(
        load_bundle(random_bundle), RuntimeConfig(), video, Sensor(None, "off"), realtime=False,
        on_start=stop_soon)), daemon=True)
    run.start()
    run.join(timeout=30)
    assert not run.is_alive() and outcomes[0].interrupted
    assert outcomes[0].summary["counters"]["camera_reconnects"] == 1
