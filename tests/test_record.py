"""edge.record: guided recording into the recordings dataset (plan errors, fast and real-time sessions from
generated media files, Ctrl-C, resume, a lost sensor, a full disk, free mode, audio/video sync)."""
# Tier: unit, except the tests marked integration (edge.record in a subprocess, a tmpfs mount, real-time sessions).
from __future__ import annotations

import csv
import errno
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import av
import numpy as np
import pytest

from edge.record.__main__ import main
from edge.record.folder import OutputFolder
from edge.record.plan import assign_splits, load_plan
from edge.record.recorder import Recorder
from edge.record.sensors import Fault, FaultInjector, MediaAudio, MediaVideo

REPO = Path(__file__).resolve().parent.parent


def make_clip(path: Path, seconds: float, *, fps: int = 30, size=(160, 120), rate: int = 16000,
              event_s: float | None = None) -> Path:
    """Dark frames and quiet noise; with event_s a white flash (2 frames) and a click (10 ms) at that instant."""
    w, h = size
    n = int(round(seconds * fps))
    with av.open(str(path), "w", format="matroska") as c:
        vs = c.add_stream("mjpeg", rate=fps)
        vs.width, vs.height, vs.pix_fmt = w, h, "yuvj420p"
        a = c.add_stream("pcm_s16le", rate=rate)
        a.layout = "mono"
        flash = int(round(event_s * fps)) if event_s is not None else -1
        for k in range(n):
            level = 255 if flash <= k < flash + 2 else 20 + (k % 10)
            f = av.VideoFrame.from_ndarray(np.full((h, w, 3), level, np.uint8), format="rgb24")
            f.pts = k
            for p in vs.encode(f):
                c.mux(p)
        for p in vs.encode():
            c.mux(p)
        rng = np.random.default_rng(0)
        x = rng.normal(0, 0.003, int(round(seconds * rate))).astype(np.float32)
        if event_s is not None:
            i = int(round(event_s * rate))
            x[i:i + rate // 100] = 0.9
        pcm = (x * 32767).astype(np.int16)
        for i in range(0, pcm.size, 1024):
            fr = av.AudioFrame.from_ndarray(pcm[None, i:i + 1024], format="s16", layout="mono")
            fr.sample_rate, fr.pts = rate, i
            for p in a.encode(fr):
                c.mux(p)
        for p in a.encode():
            c.mux(p)
    return path


def write_plan(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


PLAN = """take_seconds: 0.5
countdown: 0.2
pause: 0.1
splits: {train: 2, val: 1}
actions:
  - {verb: open, noun: fridge, takes: 3}
  - {verb: close, noun: fridge, takes: 2, splits: [test, train]}
"""


def rows(out: Path) -> dict[str, list[dict]]:
    res = {}
    for split in ("train", "val", "test"):
        p = out / f"{split}.csv"
        res[split] = list(csv.DictReader(p.open())) if p.exists() else []
    return res

def kept_rows_within_the_video(out: Path) -> tuple[list[dict], Path]:
    """The CSV rows kept in `out` (at least one), each ending before the last frame of the session's file."""
    kept = [x for v in rows(out).values() for x in v]
    assert kept
    media = next((out / "media").glob("*.mkv"))
    with av.open(str(media)) as c:
        v = c.streams.video[0]
        last = max(float(f.pts * v.time_base) for f in c.decode(v))
    assert max(float(x["end"]) for x in kept) <= last
    return kept, media


def probe(path: Path) -> tuple[int, int, float, float]:
    """(frames, audio samples, video start, audio start) of a recorded session file."""
    with av.open(str(path)) as c:
        v, a = c.streams.video[0], c.streams.audio[0]
        starts = (float(v.start_time * v.time_base), float(a.start_time * a.time_base))
        frames = sum(1 for _ in c.decode(v))
    with av.open(str(path)) as c:
        samples = sum(f.samples for f in c.decode(c.streams.audio[0]))
    return frames, samples, *starts


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    return make_clip(tmp_path_factory.mktemp("clips") / "clip.mkv", 6.0)


# ---- plans ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("text,says", [
    ("actions: [{verb: open, noun: fridge, takes: 2}]\ncolour: red\n", "unknown key(s) ['colour']"),
    ("actions: [{verb: open, noun: fridge, takes: 2, speed: 3}]\n", "unknown key(s) ['speed']"),
    ("actions: [{noun: fridge, takes: 2}]\n", "action 1 has no verb"),
    ("actions: [{verb: open, noun: '', takes: 2}]\n", "action 1 has no noun"),
    ("actions: [{verb: open, noun: fridge, takes: 0}]\n", "takes must be a whole number of at least 1"),
    ("actions: [{verb: open, noun: fridge}]\n", "needs takes"),
    ("actions: []\n", "needs a non-empty actions list"),
    ("actions: [{verb: open, noun: fridge, takes: 2, splits: {train: 1, dev: 1}}]\n", "unknown split(s) ['dev']"),
    ("take_seconds: 0\nactions: [{verb: open, noun: fridge, takes: 2}]\n", "take_seconds must be more than 0"),
    ("actions: [{verb: open, noun: fridge, takes: 2}, {verb: open, noun: fridge, takes: 1}]\n", "listed twice"),
    ("actions: [oops\n", "is not valid YAML"),
])
def test_a_bad_plan_is_one_sentence_and_exit_2(tmp_path, capsys, text, says):
    plan = write_plan(tmp_path / "plan.yaml", text)
    assert main(["--camera", "none", "--mic", "none", "--plan", str(plan), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and says in err and err.count("\n") == 0, err


def test_missing_plan_unwritable_folder_and_missing_device_exit_2(tmp_path, capsys, clip):
    plan = write_plan(tmp_path / "plan.yaml", PLAN)
    cases = [
        (["--plan", str(tmp_path / "nope.yaml"), "--out", str(tmp_path / "o"), "--camera", str(clip)],
         "plan " + str(tmp_path / "nope.yaml") + " does not exist"),
        (["--plan", str(plan), "--out", str(plan / "sub"), "--camera", str(clip)], "cannot write to the output folder"),
        (["--plan", str(plan), "--out", str(plan), "--camera", str(clip)], "is a file, not a folder"),
        (["--plan", str(plan), "--out", str(tmp_path / "o"), "--camera", str(tmp_path / "gone.mkv")],
         "does not exist"),
        (["--plan", str(plan), "--out", str(tmp_path / "o"), "--camera", "/dev/video9"], "could not be opened"),
        (["--plan", str(plan), "--out", str(tmp_path / "o")], "give a sensor"),
        (["--plan", str(plan), "--out", str(tmp_path / "o"), "--mic", "7"], "microphone"),
    ]
    for argv, says in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and says in err and err.count("\n") == 0, err
        assert "run_live.py --demo" not in err


def test_splits_are_deterministic_and_proportional():
    assert assign_splits({"train": 8, "val": 1, "test": 1}, 10).count("train") == 8
    s = assign_splits({"train": 8, "val": 1, "test": 1}, 10)
    assert s.count("val") == 1 and s.count("test") == 1 and s == assign_splits({"train": 8, "val": 1, "test": 1}, 10)
    assert assign_splits({"train": 1}, 3) == ("train",) * 3


# ---- sessions -----------------------------------------------------------------------------------------------------
def test_fast_session_writes_every_frame_and_sample_and_rows_the_trainer_reads(tmp_path, clip, capsys):
    plan = write_plan(tmp_path / "plan.yaml", PLAN)
    out = tmp_path / "rec"
    stats = tmp_path / "s.json"
    assert main(["--camera", str(clip), "--mic", str(clip), "--plan", str(plan), "--out", str(out), "--yes",
                 "--fast", "--stats-json", str(stats)]) == 0
    s = json.loads(stats.read_text())
    assert s["takes_kept"] == 5 and s["takes_lost"] == 0
    media = Path(s["media"])
    frames, samples, v0, a0 = probe(media)
    assert frames == s["frames_written"] == s["frames_captured"]
    assert samples == s["samples_written"] == s["samples_captured"]
    assert s["frames_dropped"] == s["samples_dropped"] == s["silence_filled"] == s["samples_trimmed"] == 0
    assert v0 == 0 and a0 == 0
    r = rows(out)
    assert [x["verb"] for x in r["train"]] == ["open", "open", "close"]
    assert len(r["val"]) == 1 and [x["verb"] for x in r["test"]] == ["close"]
    for x in r["train"] + r["val"] + r["test"]:
        assert x["media"] == f"media/{media.name}"
        assert abs(float(x["end"]) - float(x["start"]) - 0.5) < 0.05
    from trainer.data.recordings import Recordings  # tests may import trainer; edge never does

    ds = Recordings(tmp_path, "train", annotations=out)
    assert len(ds) == 3 and ds.skips.total == 0
    sample = ds[0]
    assert all(sample["present"].values())
    assert json.loads((out / "labels.json").read_text()) == {"verb": ["open", "close"], "noun": ["fridge"]}


def test_resume_records_only_the_takes_left(tmp_path):
    clip = make_clip(tmp_path / "short.mkv", 2.2)
    plan = write_plan(tmp_path / "plan.yaml", PLAN)
    out = tmp_path / "rec"
    args = ["--camera", str(clip), "--mic", str(clip), "--plan", str(plan), "--out", str(out), "--yes", "--fast"]
    assert main(args) == 0
    first = sum(len(v) for v in rows(out).values())
    assert 1 <= first < 5  # the clip ends before the plan does
    while sum(len(v) for v in rows(out).values()) < 5:
        assert main(args) == 0
    r = rows(out)
    assert [x["verb"] for x in r["train"]] == ["open", "open", "close"]
    assert [x["verb"] for x in r["val"]] == ["open"] and [x["verb"] for x in r["test"]] == ["close"]
    sessions = sorted((out / "media").glob("*.mkv"))
    assert len(sessions) >= 2
    assert main(args) == 0  # complete: nothing opened, no new file
    assert sorted((out / "media").glob("*.mkv")) == sessions


@pytest.mark.parametrize("realtime", [False, pytest.param(True, marks=pytest.mark.integration)],
                         ids=["fast", "realtime"])
def test_a_take_with_a_lost_camera_is_marked_and_asked_again(tmp_path, clip, realtime):
    plan = load_plan(write_plan(tmp_path / "plan.yaml", PLAN))
    folder = OutputFolder(tmp_path / "rec")
    video = FaultInjector(MediaVideo(clip, realtime=realtime), [Fault(1.0, 1.3, "lost")], audio=False)
    audio = MediaAudio(clip, 16000, realtime=realtime)
    video.open()
    audio.open()
    log = []

    class Out:
        def write(self, s):
            log.append(s)

        def flush(self):
            pass

    rec = Recorder(plan, folder, video, audio, realtime=realtime, out=Out())
    s = rec.run()
    assert s["takes_kept"] == 5 and s["takes_lost"] == 1 and s["sensor_losses"]["camera"] == 1
    text = "".join(log)
    assert "take lost" in text and "again" in text
    records = [json.loads(x) for x in rec.log_path.read_text().splitlines()]
    lost = [x for x in records if x["status"] == "lost"]
    assert len(lost) == 1 and "camera" in lost[0]["why"]
    retried = [x for x in records if (x["verb"], x["take"]) == (lost[0]["verb"], lost[0]["take"])]
    assert [x["status"] for x in retried] == ["lost", "recorded"] and retried[1]["attempt"] == 2
    kept = [x for v in rows(folder.root).values() for x in v]
    assert len(kept) == 5
    for x in kept:  # no kept take overlaps the outage (camera pts 1.0-1.3 s; file time ~ media time here)
        assert float(x["end"]) <= 1.0 or float(x["start"]) >= 1.3


def test_full_disk_is_one_sentence_and_keeps_what_was_recorded(tmp_path, clip, capsys, monkeypatch):
    from edge.record import writer as writer_mod

    real_mux = writer_mod.SessionWriter._mux
    calls = {"n": 0}

    def mux(self, packets):
        packets = list(packets)
        if packets and self._vs is not None and packets[0].stream is self._vs:
            calls["n"] += 1
            if calls["n"] > 100:  # ~3.3 s of video, then the disk is full
                raise writer_mod._fail(OSError(errno.ENOSPC, "No space left on device"), self.path)
        real_mux(self, packets)

    monkeypatch.setattr(writer_mod.SessionWriter, "_mux", mux)
    plan = write_plan(tmp_path / "plan.yaml", PLAN)
    out = tmp_path / "rec"
    code = main(["--camera", str(clip), "--mic", str(clip), "--plan", str(plan), "--out", str(out), "--yes", "--fast"])
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert code == 1 and err.count("\n") == 0 and "is full" in err and "is kept" in err, err
    kept = [x for v in rows(out).values() for x in v]
    assert 1 <= len(kept) < 5
    media = next((out / "media").glob("*.mkv"))
    with av.open(str(media)) as c:  # the file is readable and holds every kept take
        v = c.streams.video[0]
        last = max(float(f.pts * v.time_base) for f in c.decode(v))
    assert max(float(x["end"]) for x in kept) <= last + 0.05


@pytest.mark.integration
def test_sigint_keeps_finished_takes_and_a_valid_file(tmp_path, clip):
    plan = write_plan(tmp_path / "plan.yaml", PLAN.replace("take_seconds: 0.5", "take_seconds: 0.6"))
    out = tmp_path / "rec"
    proc = subprocess.Popen([sys.executable, "-m", "edge.record", "--camera", str(clip), "--mic", str(clip),
                             "--plan", str(plan), "--out", str(out), "--yes"], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (out / "train.csv").exists():
        time.sleep(0.05)
    time.sleep(0.3)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 0, stderr
    assert "run the same command again to resume" in stdout
    kept = [x for v in rows(out).values() for x in v]
    assert 1 <= len(kept) < 5
    media = next((out / "media").glob("*.mkv"))
    frames, samples, _, _ = probe(media)
    assert frames > 0 and abs(samples / 16000 - frames / 30) < 0.6
    assert max(float(x["end"]) for x in kept) <= frames / 30 + 0.05


@pytest.mark.integration
def test_free_mode_marks_segments_with_keys(tmp_path, clip):
    plan = write_plan(tmp_path / "plan.yaml", PLAN)
    out = tmp_path / "rec"
    proc = subprocess.Popen([sys.executable, "-m", "edge.record", "--camera", str(clip), "--mic", str(clip),
                             "--plan", str(plan), "--out", str(out), "--free"], cwd=REPO, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    proc.stdout.readline()  # the key help: recording has begun

    def key(k, wait):
        proc.stdin.write(k + "\n")
        proc.stdin.flush()
        time.sleep(wait)

    time.sleep(1.0)
    key("1", 0.8)   # open fridge ...
    key("2", 0.6)   # ... ends, close fridge starts
    key("s", 0.3)   # close fridge ends
    key("q", 0)
    stdout, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 0, stderr
    r = rows(out)
    assert [x["verb"] for x in r["train"]] == ["open"] and [x["verb"] for x in r["test"]] == ["close"]
    o, c = r["train"][0], r["test"][0]
    assert abs(float(o["end"]) - float(o["start"]) - 0.8) < 0.15
    assert abs(float(c["end"]) - float(c["start"]) - 0.6) < 0.15
    assert abs(float(c["start"]) - float(o["end"])) < 0.01


def find_events(path: Path) -> tuple[float, float]:
    """(time of the first white frame, time of the first loud sample), each from its stream's start."""
    with av.open(str(path)) as c:
        v = c.streams.video[0]
        base = float(v.start_time * v.time_base)
        t_flash = next(float(f.pts * v.time_base) - base for f in c.decode(v)
                       if f.to_ndarray(format="gray").mean() > 128)
    with av.open(str(path)) as c:
        a = c.streams.audio[0]
        x = np.concatenate([f.to_ndarray().reshape(-1) for f in c.decode(a)]).astype(np.float32) / 32767
    return t_flash, int(np.argmax(np.abs(x) > 0.5)) / a.rate


@pytest.mark.integration
def test_flash_and_click_stay_within_40_ms_when_recorded_in_real_time(tmp_path):
    src = make_clip(tmp_path / "flash.mkv", 3.0, event_s=1.7)
    t_v, t_a = find_events(src)
    assert abs(t_v - t_a) < 0.002  # the source itself is in sync
    plan = write_plan(tmp_path / "plan.yaml", "take_seconds: 2\ncountdown: 0\npause: 0\n"
                                              "actions: [{verb: flash, noun: light, takes: 1}]\n")
    out = tmp_path / "rec"
    stats = tmp_path / "s.json"
    assert main(["--camera", str(src), "--mic", str(src), "--plan", str(plan), "--out", str(out), "--yes",
                 "--stats-json", str(stats)]) == 0
    t_v, t_a = find_events(Path(json.loads(stats.read_text())["media"]))
    assert abs(t_v - t_a) <= 0.040, (t_v, t_a)


@pytest.mark.integration
def test_the_recorder_needs_no_torch_or_trainer():
    code = ("import sys; sys.modules['torch'] = None\n"
            "import edge.record.__main__, edge.record.recorder, edge.record.writer, edge.record.plan\n"
            "assert not any(m.split('.')[0] in ('torch', 'trainer', 'calibration') for m in sys.modules "
            "if sys.modules[m])\n")
    r = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr


@pytest.mark.integration
def test_a_killed_recorder_leaves_a_readable_file_holding_every_listed_take(tmp_path, clip):
    plan = write_plan(tmp_path / "plan.yaml", PLAN)
    out = tmp_path / "rec"
    proc = subprocess.Popen([sys.executable, "-m", "edge.record", "--camera", str(clip), "--mic", str(clip),
                             "--plan", str(plan), "--out", str(out), "--yes"], cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (out / "train.csv").exists():
        time.sleep(0.02)
    proc.kill()  # SIGKILL: no handler, no trailer, no index
    proc.wait()
    kept, media = kept_rows_within_the_video(out)
    with av.open(str(media)) as c:
        samples = sum(f.samples for f in c.decode(c.streams.audio[0]))
    assert max(float(x["end"]) for x in kept) <= samples / 16000


@pytest.mark.integration
def test_guided_takes_wait_for_enter(tmp_path, clip):
    plan = write_plan(tmp_path / "plan.yaml", "take_seconds: 0.4\ncountdown: 0\npause: 0\n"
                                              "actions: [{verb: open, noun: fridge, takes: 2}]\n")
    out = tmp_path / "rec"
    proc = subprocess.Popen([sys.executable, "-m", "edge.record", "--camera", str(clip), "--mic", str(clip),
                             "--plan", str(plan), "--out", str(out)], cwd=REPO, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines = []
    for _ in range(2):
        while "press Enter" not in (line := proc.stdout.readline()):
            assert line, proc.stderr.read()
            lines.append(line)
        t = time.monotonic()
        time.sleep(0.5)
        proc.stdin.write("\n")
        proc.stdin.flush()
    stdout, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 0, stderr
    r = rows(out)["train"]
    assert len(r) == 2
    # the second take began only after its Enter: 0.5 s after the prompt, not at once
    assert float(r[1]["start"]) - float(r[0]["end"]) >= 0.45


@pytest.mark.parametrize("camera,mic", [("none", "clip"), ("clip", "none")])
def test_one_sensor_sessions(tmp_path, clip, camera, mic):
    plan = write_plan(tmp_path / "plan.yaml", PLAN)
    stats = tmp_path / "s.json"
    args = ["--camera", str(clip) if camera == "clip" else "none", "--mic", str(clip) if mic == "clip" else "none",
            "--plan", str(plan), "--out", str(tmp_path / "rec"), "--yes", "--fast", "--stats-json", str(stats)]
    assert main(args) == 0
    s = json.loads(stats.read_text())
    assert s["takes_kept"] == 5
    with av.open(s["media"]) as c:
        assert bool(c.streams.video) == (camera == "clip") and bool(c.streams.audio) == (mic == "clip")
        if mic == "clip":
            assert sum(f.samples for f in c.decode(c.streams.audio[0])) == s["samples_written"] == s["samples_captured"] > 0
        else:
            assert sum(1 for _ in c.decode(c.streams.video[0])) == s["frames_written"] == s["frames_captured"] > 0


@pytest.fixture
def tiny_disk(tmp_path):
    """A 512 KB tmpfs (needs root; skipped otherwise)."""
    mnt = tmp_path / "tiny"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(mnt)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({r.stderr.strip() or r.returncode}); the ENOSPC test covers it")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


@pytest.mark.integration
def test_a_really_full_disk_keeps_the_finished_takes(tmp_path, clip, tiny_disk, capsys):
    plan = write_plan(tmp_path / "plan.yaml", PLAN.replace("takes: 3", "takes: 30"))
    out = tiny_disk / "rec"
    code = main(["--camera", str(clip), "--mic", str(clip), "--plan", str(plan), "--out", str(out), "--yes", "--fast"])
    err = capsys.readouterr().err.strip()
    assert code == 1 and err.count("\n") == 0 and f"the disk holding {out}" in err and "is full" in err, err
    kept, _ = kept_rows_within_the_video(out)
    log = [json.loads(x) for x in next((out / "media").glob("*.log.jsonl")).read_text().splitlines()]
    finished = [x for x in log if x["status"] == "recorded"]
    assert len(kept) >= len(finished) - 1  # at most the last finished take had its media still in the muxer
    assert not (out / ".space-reserve").exists()


@pytest.mark.parametrize("clock", [1.0, 1.005], ids=["steady", "mic-0.5%-slow"])
def test_audio_follows_the_capture_clock_despite_jitter_and_drift(tmp_path, clock):
    """40 s of 30 fps video and 20 ms audio blocks whose stamps arrive 0-40 ms late; with a microphone whose
    clock runs 0.5 % slow (200 ms over 40 s) the audio is pulled back and ends with the video."""
    from edge.record.writer import SessionWriter

    rng = np.random.default_rng(1)
    w = SessionWriter(tmp_path / "s.mkv", video=True, audio_rate=16000, fps=30)
    frame = np.zeros((48, 64, 3), np.uint8)
    block, n_blocks = 320, int(40 / 0.02 / clock)
    events = [(k / 30, "V") for k in range(1200)]
    events += [((i + 1) * 0.02 * clock + rng.uniform(0, 0.04), "A") for i in range(n_blocks)]
    for t, kind in sorted(events):
        if kind == "V":
            w.add_video(t, frame)
        else:
            w.add_audio(t, np.full(block, 0.1, np.float32))
    w.close()
    audio_s = w.samples / 16000
    assert abs(audio_s - 40.0) < 0.12, (audio_s, w.drift_fixes, w.padded, w.trimmed)
    if clock == 1.0:
        assert w.drift_fixes == w.padded == w.trimmed == 0
    else:
        assert w.drift_fixes >= 1 and w.padded > 0
