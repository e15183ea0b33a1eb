"""End to end: replay a media file (video + audio) through the real threaded live pipeline and measure it.

Real time (default): the file's video and audio are paced at their own speed by the capture threads, as a
camera and microphone would deliver them; --fast runs them as fast as the CPU allows (the maximum sustainable
prediction rate). Reports capture-to-prediction latency p50/p95/p99 (newest input's capture to prediction),
predictions per second of wall time, drops (frames and audio overwritten before use, skipped ticks), the
process CPU time over wall time (100 % = one core busy) and the process's peak resident memory.
--json prints one object with these keys.
"""
from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

from edge.bundle import load_bundle
from edge.errors import EdgeError
from edge.live.cli import camera_source, default_bundle, mic_source
from edge.live.config import DEFAULT_PATH, load_runtime_config
from edge.live.pipeline import Pipeline, Sensor
from edge.live.sources import NoAudioStream, Source




def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--file", type=Path, required=True, help="media file with video (and audio) to replay")
    parser.add_argument("--bundle", type=Path, default=None,
                        help="model bundle (default: the live default, assets/bundles/karmma_s_int8 else karmma_s)")
    parser.add_argument("--config", type=Path, default=DEFAULT_PATH, help="runtime settings YAML")
    parser.add_argument("--fast", action="store_true", help="as fast as the CPU allows instead of real time")
    parser.add_argument("--duration", type=float, default=None, help="stop after this many seconds of stream")
    parser.add_argument("--json", action="store_true", help="print the result as one JSON object")


def _sensor(source: Source | None) -> Sensor:
    if source is None:
        return Sensor(None, "off")
    try:
        source.open()
    except NoAudioStream:
        return Sensor(None, "no audio stream")
    return Sensor(source)


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


def measure(file: Path, bundle_path: Path, config: Path, *, fast: bool, duration: float | None) -> dict:
    """Run the live pipeline on `file` once and return the e2e figures."""
    if not file.is_file():
        raise EdgeError(f"media file {file} does not exist.")
    bundle = load_bundle(bundle_path, threads=1)
    cfg = load_runtime_config(config)
    realtime = not fast
    video = _sensor(camera_source(str(file), realtime))
    audio = _sensor(mic_source(str(file), bundle.preprocess.audio_sample_rate, cfg.capture.mic_block_s, realtime))
    pipeline = Pipeline(bundle, cfg, video, audio, realtime=realtime, duration_s=duration)
    wall0, cpu0 = time.monotonic(), time.process_time()
    summary = pipeline.run()
    wall, cpu = time.monotonic() - wall0, time.process_time() - cpu0
    c2p = summary["capture_to_prediction_ms"]
    counters = summary["counters"]
    drops = {"frames_overwritten": summary["frame_ring"]["dropped"], "audio_overwritten": summary["audio_ring_dropped"],
             "late_ticks": counters.get("late_ticks", 0)}
    predictions = counters.get("predictions", 0)
    return {
        "file": str(file), "bundle": str(bundle_path), "precision": bundle.precision,
        "mode": "fast" if fast else "realtime", "audio": audio.source is not None,
        "capture_to_prediction_ms": {k: c2p.get(k) for k in ("p50", "p95", "p99")},
        "predictions": predictions, "predictions_per_s": round(predictions / wall, 2) if wall > 0 else 0.0,
        "drops": sum(drops.values()), "drops_by_kind": drops,
        "cpu_percent": round(100.0 * cpu / wall, 1) if wall > 0 else 0.0,
        "peak_rss_mb": peak_rss_mb(),
        "wall_s": round(wall, 2), "modality_fraction": summary["modality_fraction"],
        "stages_ms": {name: {k: s.get(k) for k in ("p50", "p95", "p99")} for name, s in summary["stages_ms"].items()},
        "torch_imported": "torch" in sys.modules,
    }


def run(args: argparse.Namespace) -> int:
    if args.duration is not None and args.duration <= 0:
        raise EdgeError(f"--duration must be positive, got {args.duration}.")
    result = measure(args.file, args.bundle or default_bundle(), args.config, fast=args.fast, duration=args.duration)
    if args.json:
        print(json.dumps(result, indent=1))
        return 0
    c2p = result["capture_to_prediction_ms"]
    print(f"{result['file']} ({result['mode']}, {'video + audio' if result['audio'] else 'video only'}), "
          f"{result['bundle']} ({result['precision']})")
    if c2p["p50"] is not None:
        print(f"capture-to-prediction ms: p50 {c2p['p50']:.1f}  p95 {c2p['p95']:.1f}  p99 {c2p['p99']:.1f}")
    print(f"{result['predictions']} predictions in {result['wall_s']:.1f} s = {result['predictions_per_s']:.2f}/s; "
          f"drops {result['drops']} ({', '.join(f'{k} {v}' for k, v in result['drops_by_kind'].items())})")
    print(f"CPU {result['cpu_percent']:.1f} % of one core; peak RSS {result['peak_rss_mb']:.0f} MB; "
          f"torch imported: {result['torch_imported']}")
    for name, s in result["stages_ms"].items():
        if s["p50"] is not None:
            print(f"  {name:<16} p50 {s['p50']:7.2f}  p95 {s['p95']:7.2f}  p99 {s['p99']:7.2f} ms")
    return 0
