"""Every bad input gets one clear sentence (and exit code 2 where the run cannot go on). The cases already covered
in tests/test_live_clips.py (missing, directory, 0-byte and corrupt camera files, unwritable --jsonl folder, a
config value of the wrong type, no sensor, camera index 0, no microphone, SIGINT/SIGTERM) are not repeated here."""
# Tier: unit, except the tests marked integration (run_live.py in a subprocess; a 2 s real-time session).
from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import threading
import time
import types
from pathlib import Path

import numpy as np
import pytest
import yaml

from edge.bundle import MANIFEST
from edge.live.arrays import ArrayVideo
from edge.live.devices import MicSource
from edge.preprocess import window_to_model_input
from tests.live_helpers import run_live_session

REPO = Path(__file__).resolve().parent.parent


def run_live(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "run_live.py"), *args], cwd=REPO, capture_output=True,
                          text=True, timeout=timeout)


def one_sentence(res: subprocess.CompletedProcess, needle: str) -> None:
    assert res.returncode == 2, res.stderr
    assert res.stderr.startswith("error: ") and res.stderr.count("\n") == 1, res.stderr
    assert needle in res.stderr, res.stderr


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> Path:
    """A valid 3 s Matroska video (PyAV, mpeg4) of changing noise."""
    import av

    path = tmp_path_factory.mktemp("media") / "ok.mkv"
    rng = np.random.default_rng(0)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("mpeg4", rate=10)
        stream.width = stream.height = 64
        for _ in range(30):
            out.mux(stream.encode(av.VideoFrame.from_ndarray(rng.integers(0, 255, (64, 64, 3), np.uint8),
                                                             format="rgb24")))
        out.mux(stream.encode(None))
    return path


@pytest.mark.parametrize("mic", ["none", "same file"])
@pytest.mark.integration
def test_truncated_file_plays_what_is_there_then_says_it_is_truncated_once(random_bundle, tmp_path, mic):
    from tests.media_helpers import write_video

    whole, cut = tmp_path / "whole.mkv", tmp_path / "cut.mkv"
    write_video(whole, 90, 30, audio=True, level=lambda k: (40 + 37 * k) % 200 + 20)
    data = whole.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    res = run_live("--camera", str(cut), "--mic", "none" if mic == "none" else str(cut),
                   "--bundle", str(random_bundle), "--fast")
    assert res.returncode == 0 and "Traceback" not in res.stderr
    lines = res.stderr.splitlines()
    assert len(lines) == 1, lines  # one warning, no blank line before it, not one per stream of the file
    assert "is truncated" in lines[0] and "of the 3.0 s it states" in lines[0], lines
    assert "prediction records" in res.stdout


@pytest.mark.integration
def test_unsupported_codec_is_one_sentence(random_bundle, video, tmp_path):
    data = video.read_bytes()
    codec_id = b"V_MPEG4/ISO/ASP"
    assert data.count(codec_id) == 1
    odd = tmp_path / "odd.mkv"
    odd.write_bytes(data.replace(codec_id, b"V_KARMMA/X/YYYY"))  # a codec no FFmpeg knows
    one_sentence(run_live("--camera", str(odd), "--mic", "none", "--bundle", str(random_bundle)), "cannot decode")


@pytest.mark.parametrize("which", ["device", "url"])
@pytest.mark.integration
def test_nonexistent_camera_device_or_stream_is_one_sentence(random_bundle, which):
    if which == "device":
        spec = next(f"/dev/video{i}" for i in range(9, 64) if not Path(f"/dev/video{i}").exists())
    else:
        with socket.socket() as s:  # a port nothing listens on
            s.bind(("127.0.0.1", 0))
            spec = f"http://127.0.0.1:{s.getsockname()[1]}/stream.mjpg"
    start = time.monotonic()
    res = run_live("--camera", spec, "--mic", "none", "--bundle", str(random_bundle), timeout=30)
    one_sentence(res, f"camera {spec} could not be opened")
    assert "--demo" in res.stderr and time.monotonic() - start < 20


@pytest.mark.parametrize("case", ["empty", "directory"])
@pytest.mark.integration
def test_bad_microphone_file_is_one_sentence(random_bundle, tmp_path, case):
    path = tmp_path / "mic.wav"
    if case == "empty":
        path.write_bytes(b"")
    else:
        path.mkdir()
    one_sentence(run_live("--camera", "none", "--mic", str(path), "--bundle", str(random_bundle)),
                 {"empty": "is empty (0 bytes)", "directory": "is a directory"}[case])


@pytest.fixture
def bundle_copy(random_bundle, tmp_path) -> Path:
    return Path(shutil.copytree(random_bundle, tmp_path / "bundle"))


def _edit_manifest(bundle: Path, edit) -> None:
    manifest = yaml.safe_load((bundle / MANIFEST).read_text())
    edit(manifest)
    (bundle / MANIFEST).write_text(yaml.safe_dump(manifest, sort_keys=False))


@pytest.mark.parametrize("case", ["missing_file", "wrong_hash", "newer_version"])
@pytest.mark.integration
def test_broken_bundle_is_one_sentence_before_any_sensor_opens(bundle_copy, video, case):
    if case == "missing_file":
        (bundle_copy / "fusion.onnx").unlink()
        needle = "fusion.onnx"
    elif case == "wrong_hash":
        with open(bundle_copy / "audio_encoder.onnx", "ab") as f:
            f.write(b"\0")
        needle = "sha256"
    else:
        _edit_manifest(bundle_copy, lambda m: m.update(format_version=m["format_version"] + 1))
        needle = "format version"
    one_sentence(run_live("--camera", str(video), "--mic", "none", "--bundle", str(bundle_copy)), needle)


@pytest.mark.integration
def test_config_with_an_unknown_key_is_one_sentence(random_bundle, video, tmp_path):
    cfg = tmp_path / "runtime.yaml"
    cfg.write_text("health:\n  stale_seconds: 1\n")
    one_sentence(run_live("--camera", str(video), "--mic", "none", "--bundle", str(random_bundle),
                          "--config", str(cfg)), "stale_seconds")


@pytest.mark.integration
def test_jsonl_path_that_is_a_directory_is_one_sentence(random_bundle, video, tmp_path):
    one_sentence(run_live("--camera", str(video), "--mic", "none", "--bundle", str(random_bundle),
                          "--jsonl", str(tmp_path)), "cannot write the JSONL file")


def _run_frames(bundle_dir: Path, frames: list[np.ndarray]) -> tuple[dict, list[dict]]:
    from edge.bundle import load_bundle

    summary, records, _ = run_live_session(load_bundle(bundle_dir), ArrayVideo(frames, 8.0, realtime=False))
    return summary, [r for r in records if r["type"] == "prediction"]


@pytest.mark.parametrize("kind", ["gray", "bgra", "uint16"])
def test_grayscale_bgra_and_16_bit_frames_are_converted_and_used(random_bundle, kind):
    rng = np.random.default_rng(1)
    frames = []
    for _ in range(40):
        rgb = rng.integers(30, 220, (48, 64, 3), np.uint8)
        frames.append({"gray": rgb[:, :, 0], "bgra": np.dstack([rgb, np.full((48, 64), 255, np.uint8)]),
                       "uint16": rgb.astype(np.uint16) * 257}[kind])
    summary, preds = _run_frames(random_bundle, frames)
    assert summary["counters"].get("bad_frames", 0) == 0
    assert preds[-1]["modalities"] == ["V", "F"]


def test_frames_with_an_impossible_channel_count_are_skipped_counted_and_v_goes_missing(random_bundle, capfd):
    rng = np.random.default_rng(2)
    good = [rng.integers(30, 220, (48, 64, 3), np.uint8) for _ in range(30)]
    bad = [rng.integers(30, 220, (48, 64, 2), np.uint8) for _ in range(20)]
    summary, preds = _run_frames(random_bundle, good + bad)
    assert summary["counters"]["bad_frames"] == 20
    assert preds[-1]["modalities"] == [] and preds[-1]["missing"]["V"] == "stale"
    err = capfd.readouterr().err
    assert err.count("frame must have 1, 3 or 4 channels, got 2") == 1  # one sentence, not one per frame


class FakeStereo48k:
    """A sounddevice stand-in for a microphone that only offers 48 kHz stereo: a 440 Hz tone, left = right."""

    RATE, TONE = 48000, 440.0

    def __init__(self) -> None:
        self.default = types.SimpleNamespace(device=(0, None))
        self.PortAudioError = RuntimeError
        self.opened: dict = {}

    def query_devices(self, index, kind):
        return {"index": 0, "name": "stereo-48k", "default_samplerate": float(self.RATE), "max_input_channels": 2}

    def check_input_settings(self, device, channels, samplerate, dtype):
        if samplerate != self.RATE or channels != 2:
            raise self.PortAudioError("Invalid sample rate / channel count")

    def InputStream(self, device, channels, samplerate, dtype, blocksize, callback):  # noqa: N802 (sounddevice's name)
        self.opened = {"channels": channels, "samplerate": samplerate}
        fake = self

        class Stream:
            active = True

            def start(self) -> None:
                self._stop = threading.Event()
                threading.Thread(target=self._run, daemon=True).start()

            def _run(self) -> None:
                n = 0
                while not self._stop.wait(blocksize / samplerate):
                    t = (n + np.arange(blocksize)) / samplerate
                    tone = (0.3 * np.sin(2 * np.pi * fake.TONE * t)).astype(np.float32)
                    callback(np.stack([tone, tone], axis=1), blocksize, None,
                             types.SimpleNamespace(input_overflow=False))
                    n += blocksize

            def abort(self) -> None:
                self._stop.set()

            def close(self) -> None:
                self._stop.set()

        return Stream()


@pytest.mark.integration
def test_a_microphone_that_only_offers_48khz_stereo_is_mixed_down_and_resampled(random_bundle, monkeypatch):
    from edge.bundle import load_bundle

    fake = FakeStereo48k()
    monkeypatch.setitem(sys.modules, "sounddevice", fake)
    bundle = load_bundle(random_bundle)
    model_rate = bundle.preprocess.audio_sample_rate
    mic = MicSource("default", model_rate)
    mic.open()
    assert fake.opened == {"channels": 2, "samplerate": 48000} and mic.rate == 48000
    _, records, core = run_live_session(bundle, None, mic, realtime=True, duration_s=2.0)
    assert [r["modalities"] for r in records if r["type"] == "prediction"][-1] == ["A"]
    ring = core.audio
    assert ring.rate == 48000  # the ring keeps the device's rate; the student resamples each window
    window, _ = ring.window(ring.last_time, 48000)
    assert window.ndim == 1  # mixed down to mono in the callback
    t = np.arange(model_rate) / model_rate
    reference = (0.3 * np.sin(2 * np.pi * FakeStereo48k.TONE * t)).astype(np.float32)
    got = window_to_model_input(window, 48000, bundle.preprocess)
    want = window_to_model_input(reference, model_rate, bundle.preprocess)
    # Same tone, so the same mel band is the loudest; had 48 kHz samples been taken for 16 kHz ones, the tone
    # would sit at a third of its frequency.
    assert np.argmax(got.mean(axis=-1)) == np.argmax(want.mean(axis=-1))
    assert np.abs(got - want).mean() < 0.1 * np.abs(want).mean() + 0.5


@pytest.mark.parametrize("layout", ["stereo", "5.1"])
def test_loud_multichannel_audio_is_averaged_not_summed_so_it_is_not_clipped(tmp_path, layout):
    import av

    from edge.live.media import MediaAudio
    from edge.stats import audio_stats

    path = tmp_path / f"loud_{layout}.wav"
    channels = 2 if layout == "stereo" else 6
    x = (0.8 * np.sin(2 * np.pi * 440 * np.arange(48000) / 48000)).astype(np.float32)
    with av.open(str(path), "w") as c:
        stream = c.add_stream("pcm_f32le", rate=48000)
        stream.layout = layout
        for i in range(0, x.size, 1024):
            block = np.repeat(x[i:i + 1024, None], channels, axis=1).reshape(1, -1)
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(block), format="flt", layout=layout)
            frame.sample_rate = 48000
            for packet in stream.encode(frame):
                c.mux(packet)
        for packet in stream.encode():
            c.mux(packet)
    source = MediaAudio(path, 16000, realtime=False)
    source.open()
    samples = np.concatenate([block for _, block in iter(source.read, None)])
    source.close()
    assert samples.size == pytest.approx(16000, abs=64)
    assert 0.75 < np.abs(samples).max() < 0.85  # the tone's own level, not 2x or 2.7x of it
    assert audio_stats(samples)[1] == 0.0       # nothing counts as clipped


@pytest.mark.parametrize("key, value, says", [
    ("sample_fps", float("inf"), "preprocess.sample_fps must be a finite number"),
    ("sample_fps", float("nan"), "preprocess.sample_fps must be a finite number"),
    ("sample_fps", 1.0e9, "preprocess.sample_fps must be a finite number from 0.1 to 60"),
    ("mean", ["abc", 0.456, 0.406], "preprocess.mean must be a finite number"),
    ("temperatures", {"VFA": -1.0}, "temperatures must map subset keys"),
    ("temperatures", {"VFA": float("nan")}, "temperatures must map subset keys"),
])
@pytest.mark.integration
def test_a_bundle_value_that_could_hang_the_loop_is_one_sentence_before_capture(bundle_copy, video, tmp_path, key,
                                                                                value, says):
    def edit(m: dict) -> None:
        if key == "temperatures":
            m["temperatures"] = value
        else:
            m["preprocess"][key] = value

    _edit_manifest(bundle_copy, edit)
    out = tmp_path / "x.jsonl"
    one_sentence(run_live("--camera", str(video), "--mic", "none", "--bundle", str(bundle_copy), "--fast",
                          "--jsonl", str(out)), says)
    assert not out.exists()                                  # refused before anything was opened or written


@pytest.mark.parametrize("yaml_text, says", [
    ("capture:\n  frame_ring: 0\n", "capture.frame_ring must be a finite number from 1"),
    ("capture:\n  frame_ring: -5\n", "capture.frame_ring"),
    ("capture:\n  audio_ring_s: .nan\n", "capture.audio_ring_s"),
    ("capture:\n  mic_block_s: 0\n", "capture.mic_block_s"),
    ("capture:\n  backoff_initial_s: -1\n", "capture.backoff_initial_s"),
    ("flow:\n  size: 100000\n", "flow.size must be a finite number from 0 to 4096"),
    ("health:\n  stale_s: .inf\n", "health.stale_s"),
    ("shedding:\n  budget_ms: .nan\n", "shedding.budget_ms"),
    ("status_interval_s: .nan\n", "status_interval_s"),
])
@pytest.mark.integration
def test_a_runtime_config_value_out_of_range_is_one_sentence_before_capture(random_bundle, video, tmp_path, yaml_text,
                                                                           says):
    cfg, out = tmp_path / "runtime.yaml", tmp_path / "x.jsonl"
    cfg.write_text(yaml_text)
    one_sentence(run_live("--camera", str(video), "--mic", "none", "--bundle", str(random_bundle), "--config",
                          str(cfg), "--jsonl", str(out)), says)
    assert not out.exists()
