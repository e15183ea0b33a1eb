"""End to end: the real threaded live pipeline on a media file or on synthetic raw frames, measured.

--file: the file's video and audio are paced at their own speed by the capture threads, as a camera and
microphone would deliver them (--fast: as fast as the CPU allows, the maximum sustainable prediction rate);
--fps N first transcodes its video to N frames per second (a slower camera; the audio is copied as it is).
--synthetic WxH@FPS: raw RGB frames of that size from memory (no decoding: the pipeline's own cost apart
from a codec's) at that frame rate, with the pancake clip's audio, both looped, in real time; give --duration.
Reports capture-to-prediction latency p50/p95/p99 (newest input's capture to prediction), prediction records
per tick due, predictions per second of wall time, drops (frames the sampler wanted but lost, audio overwritten
unread, skipped ticks), the process CPU time over wall time (100 % = one core busy) and its peak resident
memory. --json prints one object with these keys.
"""
from __future__ import annotations

import argparse
import json
import re
import resource
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import numpy as np

from edge.bench import data_root
from edge.bundle import load_bundle
from edge.errors import EdgeError
from edge.assets import default_bundle
from edge.live.cli import positive_seconds
from edge.live.config import DEFAULT_PATH, load_runtime_config
from edge.live.pipeline import run_session
from edge.live.arrays import ArrayAudio, ArrayVideo
from edge.live.media import MediaVideo, read_audio
from edge.live.sensors import Sensor, camera_source, mic_source, open_sensor

PANCAKE = "clips/flipping_a_pancake.mkv"
SYNTHETIC_FRAMES = 5  # distinct frames cycled (a prime: sampled frames always differ, so none looks frozen)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--file", type=Path, help="media file with video (and audio) to replay")
    what.add_argument("--synthetic", metavar="WxH@FPS",
                      help="raw frames of this size and rate from memory, with the pancake clip's audio")
    parser.add_argument("--fps", type=float, default=None,
                        help="with --file: transcode its video to this frame rate first (e.g. 12)")
    parser.add_argument("--data-root", type=Path, default=None,
                        help="where the pancake clip is for --synthetic (default: $KARMMA_DATA_ROOT or ../shared/data)")
    parser.add_argument("--bundle", type=Path, default=None,
                        help="model bundle (default: the live default, assets/bundles/karmma_s_int8 else karmma_s)")
    parser.add_argument("--config", type=Path, default=DEFAULT_PATH, help="runtime settings YAML")
    parser.add_argument("--fast", action="store_true", help="as fast as the CPU allows instead of real time")
    parser.add_argument("--duration", type=positive_seconds, default=None,
                        help="stop after this many seconds of stream")
    parser.add_argument("--json", action="store_true", help="print the result as one JSON object")


def peak_rss_mb() -> float:
    """This process's peak resident memory: VmHWM on Linux (ru_maxrss there would carry over a parent's peak
    across exec), ru_maxrss elsewhere."""
    status = Path("/proc/self/status")
    if status.is_file():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024.0, 1)
    scale = 1024.0 * 1024.0 if sys.platform == "darwin" else 1024.0  # bytes on macOS, KiB elsewhere
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / scale, 1)


def parse_synthetic(spec: str) -> tuple[int, int, float]:
    """'1920x1080@30' -> (1920, 1080, 30.0); one sentence when it is not that shape."""
    m = re.fullmatch(r"(\d+)x(\d+)@(\d+(?:\.\d+)?)", spec.strip())
    if not m or min(int(m[1]), int(m[2])) < 16 or float(m[3]) <= 0:
        raise EdgeError(f"--synthetic wants WIDTHxHEIGHT@FPS with sides of at least 16 px, e.g. 1920x1080@30, "
                        f"got {spec!r}.")
    return int(m[1]), int(m[2]), float(m[3])


def synthetic_frames(width: int, height: int, n: int = SYNTHETIC_FRAMES) -> np.ndarray:
    """n textured RGB frames, each the last shifted by a few pixels (moving, never black or saturated)."""
    rng = np.random.default_rng(0)
    tile = rng.integers(40, 216, (height // 8 + 2, width // 8 + 2, 3), np.uint8)
    base = np.kron(tile, np.ones((8, 8, 1), np.uint8))
    return np.stack([base[2 * i:2 * i + height, 3 * i:3 * i + width] for i in range(n)])


def transcode(src: Path, fps: float, dst: Path) -> Path:
    """`src` with its video at `fps` (H.264; each output frame the latest source frame at its time) and its
    audio stream copied unchanged."""
    import av

    with av.open(str(src)) as inp, av.open(str(dst), "w") as out:
        vin = inp.streams.video[0]
        rate = Fraction(fps).limit_denominator(1000)
        vout = out.add_stream("libx264", rate=rate)
        vout.width, vout.height, vout.pix_fmt = vin.codec_context.width, vin.codec_context.height, "yuv420p"
        ain = inp.streams.audio[0] if inp.streams.audio else None
        aout = out.add_stream_from_template(ain) if ain is not None else None
        k = 0
        for packet in inp.demux(*[s for s in (vin, ain) if s is not None]):
            if packet.stream is ain:
                if packet.dts is not None:
                    packet.stream = aout
                    out.mux(packet)
                continue
            for frame in packet.decode():
                while frame.time is not None and frame.time >= k / fps:
                    picture = frame.reformat(format="yuv420p")
                    picture.pts, picture.time_base = k, 1 / rate
                    out.mux(vout.encode(picture))
                    k += 1
        out.mux(vout.encode(None))
    return dst


def transcode_apart(src: Path, fps: float, dst: Path) -> Path:
    """`transcode` in a child process, so its buffers never count in this process's peak memory (the run's). The
    file is opened here first, so one that cannot be read is one sentence, not the child's traceback."""
    import multiprocessing

    probe = MediaVideo(src, realtime=False)
    probe.open()
    probe.close()
    child = multiprocessing.get_context("spawn").Process(target=transcode, args=(src, fps, dst), name="transcode")
    child.start()
    child.join()
    if child.exitcode != 0 or not dst.is_file():
        raise EdgeError(f"could not transcode {src} to {fps:g} fps (the transcoding process exited {child.exitcode}).")
    return dst


def _sensors(args: argparse.Namespace, rate: int, block_s: float, tmp: Path) -> tuple[Sensor, Sensor, str]:
    realtime = not args.fast
    if args.file is not None:
        if not args.file.is_file():
            raise EdgeError(f"media file {args.file} does not exist.")
        path = args.file if args.fps is None else transcode_apart(args.file, args.fps, tmp / f"at_{args.fps:g}fps.mkv")
        stream = str(args.file) + ("" if args.fps is None else f" at {args.fps:g} fps")
        return (open_sensor(camera_source(str(path), realtime)),
                open_sensor(mic_source(str(path), rate, block_s, realtime)), stream)
    width, height, fps = parse_synthetic(args.synthetic)
    if args.duration is None:
        raise EdgeError("--synthetic loops for ever; give --duration S.")
    clip = data_root(args.data_root) / PANCAKE
    if not clip.is_file():
        raise EdgeError(f"--synthetic takes its audio from {clip}, which does not exist; pass --data-root.")
    video = ArrayVideo(synthetic_frames(width, height), fps, realtime=realtime, loop=True,
                       name=f"synthetic {width}x{height}@{fps:g}")
    audio = ArrayAudio(read_audio(clip, rate), rate, realtime=realtime, block_s=block_s, name="pancake audio",
                       loop=True)
    return Sensor(video), Sensor(audio), args.synthetic


def measure(args: argparse.Namespace) -> dict:
    """Run the live pipeline once as the arguments say and return the e2e figures."""
    bundle_path = args.bundle or default_bundle()
    bundle = load_bundle(bundle_path, threads=1)
    cfg = load_runtime_config(args.config)
    with tempfile.TemporaryDirectory() as tmp:
        video, audio, stream = _sensors(args, bundle.preprocess.audio_sample_rate, cfg.capture.mic_block_s,
                                        Path(tmp))
        wall0, cpu0 = time.monotonic(), time.process_time()
        outcome = run_session(bundle, cfg, video, audio, realtime=not args.fast, duration_s=args.duration)
        wall, cpu = time.monotonic() - wall0, time.process_time() - cpu0
    summary = outcome.summary
    c2p = summary["capture_to_prediction_ms"]
    counters = summary["counters"]
    drops = {"frames_dropped": summary["frame_ring"]["dropped"], "audio_dropped": summary["audio_ring_dropped"],
             "late_ticks": counters.get("late_ticks", 0)}
    predictions = counters.get("predictions", 0)
    pre = bundle.preprocess
    stream_s = args.duration if args.duration is not None else None
    ticks_due = None if stream_s is None else int(stream_s * (pre.sample_fps * (video.source is not None)
                                                              + (audio.source is not None) / pre.audio_hop_s))
    return {
        "stream": stream, "bundle": str(bundle_path), "precision": bundle.precision,
        "mode": "fast" if args.fast else "realtime", "audio": audio.source is not None,
        "capture_to_prediction_ms": {k: c2p.get(k) for k in ("p50", "p95", "p99")},
        "sensor_loss_to_prediction_ms": {k: summary["sensor_loss_to_prediction_ms"].get(k) for k in ("n", "p50", "max")},
        "health_change_predictions": counters.get("health_change_predictions", 0),
        "predictions": predictions, "prediction_records": counters.get("prediction_records", 0),
        "ticks_due": ticks_due, "predictions_per_s": round(predictions / wall, 2) if wall > 0 else 0.0,
        "drops": sum(drops.values()), "drops_by_kind": drops,
        "frames_skipped_late": counters.get("camera_late_skipped", 0),
        "cpu_percent": round(100.0 * cpu / wall, 1) if wall > 0 else 0.0,
        "peak_rss_mb": peak_rss_mb(),
        "wall_s": round(wall, 2), "modality_fraction": summary["modality_fraction"],
        "stages_ms": {name: {k: s.get(k) for k in ("p50", "p95", "p99")} for name, s in summary["stages_ms"].items()},
        "torch_imported": "torch" in sys.modules, "diagnosis": outcome.diagnosis, "counters": counters,
    }


def run(args: argparse.Namespace) -> int:
    if args.fps is not None and (args.file is None or not 0 < args.fps <= 240):
        raise EdgeError("--fps goes with --file and wants a frame rate in (0, 240].")
    result = measure(args)
    if args.json:
        print(json.dumps(result, indent=1))
        return 0
    c2p = result["capture_to_prediction_ms"]
    print(f"{result['stream']} ({result['mode']}, {'video + audio' if result['audio'] else 'video only'}), "
          f"{result['bundle']} ({result['precision']})")
    if c2p["p50"] is not None:
        print(f"capture-to-prediction ms: p50 {c2p['p50']:.1f}  p95 {c2p['p95']:.1f}  p99 {c2p['p99']:.1f}")
    due = f" of {result['ticks_due']} ticks due" if result["ticks_due"] else ""
    print(f"{result['predictions']} predictions ({result['prediction_records']} records{due}) in "
          f"{result['wall_s']:.1f} s = {result['predictions_per_s']:.2f}/s; drops {result['drops']} "
          f"({', '.join(f'{k} {v}' for k, v in result['drops_by_kind'].items())})")
    print(f"CPU {result['cpu_percent']:.1f} % of one core; peak RSS {result['peak_rss_mb']:.0f} MB; "
          f"torch imported: {result['torch_imported']}")
    for name, s in result["stages_ms"].items():
        if s["p50"] is not None:
            print(f"  {name:<16} p50 {s['p50']:7.2f}  p95 {s['p95']:7.2f}  p99 {s['p99']:7.2f} ms")
    if result["diagnosis"]:
        print(f"edge.bench e2e: {result['diagnosis']}", file=sys.stderr)
    return 0
