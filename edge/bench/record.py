"""Recording: `python -m edge.record` on a real network camera and a real microphone for N seconds; frames and samples lost.

The camera is a real clip (flipping_a_pancake.mkv from the data root) scaled to --size and served as MJPEG over
HTTP at 30 fps by edge/bench/mjpeg.py in its own process (read by OpenCV, as `--camera URL`); the microphone is
a private PulseAudio server (a null sink whose monitor is the default source, a real recording looped into it
with paplay), recorded through PortAudio's `default` at --rate. The recorder runs guided takes on the timer
(--yes) for --seconds, in its own process, as a user would run it. Afterwards the session file is decoded and
compared with what the recorder received: frames captured / written / dropped, gaps between frames, audio samples
captured / written / dropped, silence filled in, the microphone's own overflows, and how the audio sample count
tracks the wall clock. Needs `pulseaudio pulseaudio-utils libasound2-plugins`. --json prints one object.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from edge.bench import data_root
from edge.bench.pulse import PulseServer
from edge.errors import EdgeError

REPO = Path(__file__).resolve().parents[2]
PLAN = """take_seconds: 4
countdown: 1
pause: 1
splits: {train: 8, val: 1, test: 1}
actions:
  - {verb: flip, noun: pancake, takes: 100}
  - {verb: pour, noun: batter, takes: 100}
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--seconds", type=float, default=300.0, help="recording length (default 300)")
    p.add_argument("--size", default="640x480", help="camera frame size WxH (default 640x480)")
    p.add_argument("--rate", type=int, default=16000, help="microphone sample rate (default 16000)")
    p.add_argument("--data-root", type=Path, help="data root with clips/ (default $KARMMA_DATA_ROOT or ../shared/data)")
    p.add_argument("--keep", type=Path, help="record into this folder and keep it (default: a temp folder)")
    p.add_argument("--json", action="store_true", help="print one JSON object")


def _scaled_clip(src: Path, dst: Path, size: tuple[int, int], n: int = 300) -> None:
    import av
    import cv2

    with av.open(str(src)) as c, av.open(str(dst), "w") as o:
        vs = o.add_stream("mjpeg", rate=30)
        vs.width, vs.height, vs.pix_fmt = size[0], size[1], "yuvj420p"
        for k, f in enumerate(c.decode(video=0)):
            if k >= n:
                break
            img = cv2.resize(f.to_ndarray(format="rgb24"), size, interpolation=cv2.INTER_LINEAR)
            vf = av.VideoFrame.from_ndarray(img, format="rgb24")
            vf.pts = k
            for p in vs.encode(vf):
                o.mux(p)
        for p in vs.encode():
            o.mux(p)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(args: argparse.Namespace) -> int:
    if shutil.which("paplay") is None:
        raise EdgeError("paplay is not installed (apt-get install pulseaudio pulseaudio-utils libasound2-plugins).")
    root = data_root(args.data_root)
    clip, wav = root / "clips/flipping_a_pancake.mkv", root / "clips/ucf101_apply_eye_makeup.wav"
    for f in (clip, wav):
        if not f.is_file():
            raise EdgeError(f"{f} is missing; pass --data-root with the real clips.")
    try:
        w, h = (int(v) for v in args.size.lower().split("x"))
    except ValueError:
        raise EdgeError(f"--size takes WxH (e.g. 640x480), got {args.size!r}.") from None
    work = Path(tempfile.mkdtemp(prefix="bench-record-"))
    out = args.keep or work / "rec"
    pulse = PulseServer(work / "pulse")
    env = pulse.env
    procs: list[subprocess.Popen] = []
    quiet = dict(stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _scaled_clip(clip, work / "camera.mkv", (w, h))
        port = _free_port()
        cam = subprocess.Popen([sys.executable, "-m", "edge.bench.mjpeg", str(work / "camera.mkv"), "--port",
                                str(port)], cwd=REPO, stdout=subprocess.PIPE, text=True)
        procs.append(cam)
        url = cam.stdout.readline().strip()
        pulse.start()
        procs.append(subprocess.Popen(["sh", "-c", f"while true; do paplay --device=virt '{wav}' || sleep 0.05; "
                                                   "done"], env=env, **quiet))
        (work / "plan.yaml").write_text(PLAN)
        stats = work / "stats.json"
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t = time.monotonic()
        rec = subprocess.run([sys.executable, "-m", "edge.record", "--camera", url, "--mic", "default",
                              "--rate", str(args.rate), "--fps", "30", "--plan", str(work / "plan.yaml"), "--out",
                              str(out), "--yes", "--duration", str(args.seconds), "--stats-json", str(stats)],
                             cwd=REPO, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                             timeout=args.seconds + 120)
        wall = time.monotonic() - t
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if rec.returncode != 0:
            raise EdgeError(f"the recorder failed (exit {rec.returncode}): {rec.stderr.strip()[-500:]}")
        s = json.loads(stats.read_text())
        result = {"seconds": args.seconds, "size": f"{w}x{h}", "rate": args.rate, "wall_s": round(wall, 1),
                  "recorder_cpu_s": round((after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime), 1),
                  "load_average": os.getloadavg()[0], "recorder": s, "file": _inspect(Path(s["media"]), args.rate),
                  "csv_rows": {sp: max(0, len((out / f"{sp}.csv").read_text().splitlines()) - 1)
                               if (out / f"{sp}.csv").exists() else 0 for sp in ("train", "val", "test")}}
    finally:
        for p in procs:
            p.kill()
            p.wait()
        pulse.close()
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        s, f = result["recorder"], result["file"]
        print(f"recorded {s['seconds']:.1f} s at {result['size']}, {args.rate} Hz; recorder CPU "
              f"{result['recorder_cpu_s']} s ({100 * result['recorder_cpu_s'] / max(s['seconds'], 1e-9):.0f} % of one core)")
        print(f"video: {s['frames_captured']} frames captured, {s['frames_written']} written, {s['frames_dropped']} "
              f"dropped; in the file {f['frames']} frames, {f['fps']:.2f} fps, frame interval p50/max "
              f"{f['interval_ms_p50']:.1f}/{f['interval_ms_max']:.1f} ms, {f['intervals_over_50ms']} over 50 ms")
        print(f"audio: {s['samples_captured']} samples captured, {s['samples_written']} written, "
              f"{s['samples_dropped']} dropped, {s['audio_lead_in']} silence before the microphone's first sample, "
              f"{s['silence_filled']} silence filled, {s['samples_trimmed']} trimmed, "
              f"{s['mic_dropped_blocks']} microphone overflows; in the file {f['samples']} samples = "
              f"{f['audio_s']:.3f} s against {f['video_s']:.3f} s of video")
        print(f"takes: {s['takes_kept']} kept, {s['takes_lost']} lost and asked again; stalls {s['stalls']}")
    return 0


def _inspect(path: Path, rate: int) -> dict:
    import av

    with av.open(str(path)) as c:
        v = c.streams.video[0]
        pts = np.array([float(p.pts * v.time_base) for p in c.demux(v) if p.pts is not None])
    with av.open(str(path)) as c:
        samples = sum(f.samples for f in c.decode(c.streams.audio[0]))
    d = np.diff(np.sort(pts)) * 1000
    span = float(pts.max() - pts.min()) if pts.size > 1 else 0.0
    return {"frames": int(pts.size), "video_s": round(span + 1 / 30, 3),
            "fps": (pts.size - 1) / span if span else 0.0, "interval_ms_p50": float(np.median(d)) if d.size else 0,
            "interval_ms_max": float(d.max()) if d.size else 0, "intervals_over_50ms": int((d > 50).sum()),
            "samples": int(samples), "audio_s": round(samples / rate, 3), "bytes": path.stat().st_size}
