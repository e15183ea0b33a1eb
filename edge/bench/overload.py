"""Overload: the real-time live pipeline while competing busy processes take the CPU; load shedding, latency, buffers.

A real clip (default: flipping_a_pancake.mkv from the data root, looped; else the procedural demo stream) plays
in real time through the threaded pipeline in three phases: idle, loaded (--busy processes that each keep a
core busy), and after. Per phase: capture-to-prediction p50/p95/p99, per-video-tick processing time (what the
shedder compares with its budget), predictions per second, the share of predictions at each flow resolution
(1.0, 0.5, 0.25, dropped) and resident memory at the phase's end; when each shedding level was first reached
after the load started and when full resolution came back after it. Buffers: every ring's fixed capacity, the
drops they counted instead of growing, and ticks skipped because the loop fell behind.
The run states its configuration: the runtime config file, where flow runs (flow.size, backend) against what
the bundle was trained with, and the shedding ladder. --config assets/configs/runtime_flow360_torch.yaml is
the heavier configuration in which flow dominates a tick. --budget-ms overrides the config's budget (it can
show the ladder on a machine the load does not overload). --json prints one object.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import threading
import time
from pathlib import Path

import numpy as np

from edge.bench.soak import Planned, Recorder, Scheduler
from edge.bundle import load_bundle
from edge.errors import EdgeError
from edge.assets import default_bundle, default_data_root
from edge.live.config import DEFAULT_PATH, SheddingConfig, load_runtime_config
from edge.live.pipeline import recognizer_for, run_session
from edge.live.shedding import LoadShedder
from edge.live.arrays import ArrayAudio, ArrayVideo
from edge.live.media import read_audio, read_video
from edge.live.sensors import Sensor
from edge.live.sources import NoAudioStream

DEFAULT_CLIP = "clips/flipping_a_pancake.mkv"


def load_clip(path: Path, rate: int) -> tuple[np.ndarray, float, np.ndarray]:
    """All video frames (RGB), their frame rate, and the mono audio at `rate` (empty without an audio stream)."""
    frames, fps = read_video(path)
    if fps is None:
        raise EdgeError(f"{path} has fewer than two video frames; overload needs a real clip.")
    try:
        samples = read_audio(path, rate)
    except NoAudioStream:
        samples = np.zeros(0, np.float32)
    return np.stack(frames), fps, samples


def _level(scale: float) -> str:
    return "dropped" if np.isnan(scale) else str(float(scale))


def ladder(cfg: SheddingConfig) -> list[str]:
    """The shedding levels by name, in the order the shedder steps through them: each flow scale, then dropped."""
    return [str(float(s)) for s in cfg.flow_scales] + ["dropped"]


def _ms(values: np.ndarray) -> dict:
    return {"n": int(values.size), "p50": round(float(np.percentile(values, 50)), 2),
            "p95": round(float(np.percentile(values, 95)), 2)} if values.size else {}


def phase_report(rec: Recorder, t0: float, t1: float, tick_ms: np.ndarray, tick_scale: np.ndarray,
                 names: list[str]) -> dict:
    sel = (rec.t[:rec.n] >= t0) & (rec.t[:rec.n] < t1)
    lat = rec.latency[:rec.n][sel]
    lat = lat[np.isfinite(lat)]
    levels = [_level(s) for s in rec.flow_scale[:rec.n][sel & rec.predicted[:rec.n]]]
    shares = {lv: round(levels.count(lv) / len(levels), 3) for lv in names} if levels else {}
    tick_levels = np.array([_level(s) for s in tick_scale])
    p = np.percentile(lat, [50, 95, 99]) if lat.size else [np.nan] * 3
    made = int((sel & rec.predicted[:rec.n]).sum())
    return {"seconds": round(t1 - t0, 1), "predictions_per_s": round(made / (t1 - t0), 2),
            "capture_to_prediction_ms": {"p50": round(float(p[0]), 1), "p95": round(float(p[1]), 1),
                                         "p99": round(float(p[2]), 1)},
            "tick_ms": _ms(tick_ms),
            "tick_ms_by_flow_level": {lv: _ms(tick_ms[tick_levels == lv]) for lv in names if (tick_levels == lv).any()},
            "flow_levels": shares}


def first_reached(rec: Recorder, start: float, end: float, names: list[str]) -> dict:
    """Seconds after the load started until each shedding level first appeared, and until full flow resolution
    was back after the load ended."""
    t = rec.t[:rec.n]
    levels = np.array([_level(s) for s in rec.flow_scale[:rec.n]])
    out = {}
    for lv in names[1:]:
        hit = np.flatnonzero((t >= start) & (levels == lv))
        out[lv] = round(float(t[hit[0]] - start), 2) if hit.size else None
    back = np.flatnonzero((t >= end) & (levels == names[0]))
    out["full_resolution_back_after_load_s"] = round(float(t[back[0]] - end), 2) if back.size else None
    return out


class RecordingShedder(LoadShedder):
    """The pipeline's shedder, also keeping each video tick's processing time (its input), the flow scale that
    tick ran at (NaN: flow dropped), and a timestamp."""

    def __init__(self, cfg: SheddingConfig, capacity: int) -> None:
        super().__init__(cfg)
        self.t, self.ms, self.scale, self.n = np.zeros(capacity), np.zeros(capacity), np.zeros(capacity), 0

    def update(self, elapsed_ms: float, flow_ms: float = 0.0) -> None:
        if self.n < self.t.size:
            scale = self.flow_scale
            self.t[self.n], self.ms[self.n] = time.monotonic(), elapsed_ms
            self.scale[self.n] = np.nan if scale is None else scale
            self.n += 1
        super().update(elapsed_ms, flow_ms)

    def between(self, t0: float, t1: float) -> tuple[np.ndarray, np.ndarray]:
        sel = (self.t[:self.n] >= t0) & (self.t[:self.n] < t1)
        return self.ms[:self.n][sel], self.scale[:self.n][sel]


def overload(bundle_path: Path, config: Path, clip: Path | None, busy: int, phase_s: tuple[float, float, float],
             budget_ms: float | None) -> dict:
    bundle = load_bundle(bundle_path, threads=1)
    cfg = load_runtime_config(config)
    if budget_ms is not None:
        cfg = dataclasses.replace(cfg, shedding=dataclasses.replace(cfg.shedding, budget_ms=budget_ms))
    rate = bundle.preprocess.audio_sample_rate
    if clip is not None:
        frames, fps, samples = load_clip(clip, rate)
        stream = str(clip)
    else:
        from edge.moving_digits import DEFAULT_SPLITS, load_config, load_sources, render_session

        split = DEFAULT_SPLITS["test"]
        session = render_session(load_sources(None, speakers=list(split.speakers), images=split.images,
                                              sample_rate=rate), 0, 8, load_config().levels, sample_rate=rate)
        frames, fps, samples, stream = session.frames, session.fps, session.audio, "procedural demo stream"
    camera = ArrayVideo(frames, fps, name="camera", loop=True)
    audio = Sensor(ArrayAudio(samples, rate, block_s=cfg.capture.mic_block_s, name="microphone", loop=True)) \
        if samples.size else Sensor(None, "no audio stream")
    idle_s, load_s, after_s = phase_s
    total = idle_s + load_s + after_s
    period = 0.5 / bundle.preprocess.sample_fps
    capacity = int(total / period * 1.2) + 1000
    recorder = Recorder(capacity)
    video = Sensor(camera)
    shedder = RecordingShedder(cfg.shedding, capacity)
    core = recognizer_for(bundle, cfg, video, audio, shedder=shedder)
    stop = threading.Event()
    scheduler = Scheduler(lambda: camera.pacer.origin, [Planned("load", idle_s, idle_s + load_s)],
                          stop, rss_every_s=1.0, processes=busy)
    scheduler.start()
    try:
        summary = run_session(bundle, cfg, video, audio, [recorder], duration_s=total, core=core,
                              signals=True).summary
    finally:
        stop.set()
        scheduler.join(timeout=5.0)
    zero = camera.pacer.origin
    if zero is None or recorder.n == 0:
        raise EdgeError("the pipeline made no prediction; nothing to report.")
    names = ladder(cfg.shedding)
    bounds = {"idle": (0.0, idle_s), "loaded": (idle_s, idle_s + load_s), "after": (idle_s + load_s, total)}
    phases = {}
    for name, (a, b) in bounds.items():
        phases[name] = phase_report(recorder, zero + a, zero + b, *shedder.between(zero + a, zero + b), names)
        rss = [mb for s, mb in scheduler.rss if a <= s < b]
        phases[name]["rss_mb_end"] = rss[-1] if rss else None
    counters = summary["counters"]
    trained, size = bundle.preprocess.flow, bundle.preprocess.frame_size
    side = core.student.flow_side
    return {
        "stream": stream, "bundle": str(bundle_path), "busy_processes": busy,
        "config": {"path": str(config), "flow_size": f"{side}x{side}",
                   "flow_backend": core.student.flow_backend.name,
                   "trained_flow": f"{trained.backend} at {size}x{size}",
                   "budget_ms": cfg.shedding.budget_ms, "budget_overridden": budget_ms is not None,
                   "flow_scales": list(cfg.shedding.flow_scales), "shed_after": cfg.shedding.shed_after,
                   "recover_after": cfg.shedding.recover_after},
        "phases_s": {k: round(b - a, 1) for k, (a, b) in bounds.items()},
        "phases": phases,
        "shedding": {"escalations": summary["shedding"]["escalations"],
                     "first_reached_s": first_reached(recorder, zero + idle_s, zero + idle_s + load_s, names)},
        "late_ticks": counters.get("late_ticks", 0),
        "buffers": {"frame_ring_slots": cfg.capture.frame_ring, "frame_ring_frame": "as captured (references)",
                    "audio_ring_s": cfg.capture.audio_ring_s,
                    "token_rings": bundle.manifest["tokens"], "frame_ring": summary["frame_ring"],
                    "audio_ring_dropped": summary["audio_ring_dropped"],
                    "rss_mb": {"start": scheduler.rss[0][1] if scheduler.rss else None,
                               "max": max((mb for _, mb in scheduler.rss), default=None),
                               "end": scheduler.rss[-1][1] if scheduler.rss else None}},
        "stages_ms": {k: {q: v.get(q) for q in ("p50", "p95", "p99")} for k, v in summary["stages_ms"].items()},
    }


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--file", type=Path, default=None,
                        help=f"clip to loop (default: {DEFAULT_CLIP} under the data root, else the demo stream)")
    parser.add_argument("--data-root", type=Path, default=None, help="data root (default: $KARMMA_DATA_ROOT or "
                        "../shared/data)")
    parser.add_argument("--bundle", type=Path, default=None,
                        help="model bundle (default: the live default, assets/bundles/karmma_s_int8 else karmma_s)")
    parser.add_argument("--config", type=Path, default=DEFAULT_PATH, help="runtime settings YAML")
    parser.add_argument("--busy", type=int, default=2, help="competing busy processes in the loaded phase")
    parser.add_argument("--idle", type=float, default=10.0, help="seconds before the load")
    parser.add_argument("--load", type=float, default=30.0, help="seconds under load")
    parser.add_argument("--after", type=float, default=10.0, help="seconds after the load")
    parser.add_argument("--budget-ms", type=float, default=None, help="override the per-prediction budget")
    parser.add_argument("--json", action="store_true", help="print the report as one JSON object")


def run(args: argparse.Namespace) -> int:
    if min(args.idle, args.load, args.after) <= 0 or args.busy < 0:
        raise EdgeError("--idle, --load and --after must be positive and --busy not negative.")
    if args.budget_ms is not None and args.budget_ms <= 0:
        raise EdgeError(f"--budget-ms must be positive, got {args.budget_ms}.")
    clip = args.file
    if clip is None:
        root = args.data_root or default_data_root()    # none: a rendered session
        clip = root / DEFAULT_CLIP if root is not None and (root / DEFAULT_CLIP).is_file() else None
    elif not clip.is_file():
        raise EdgeError(f"media file {clip} does not exist.")
    r = overload(args.bundle or default_bundle(), args.config, clip, args.busy, (args.idle, args.load, args.after),
                 args.budget_ms)
    if args.json:
        print(json.dumps(r, indent=1))
        return 0
    c = r["config"]
    print(f"overload: {r['stream']} looped in real time; {r['busy_processes']} busy processes during "
          f"{r['phases_s']['loaded']:g} s")
    print(f"config: {c['path']}; flow {c['flow_size']} ({c['flow_backend']}; the bundle was trained on "
          f"{c['trained_flow']}); budget {c['budget_ms']:g} ms per video tick"
          f"{' (overridden by --budget-ms)' if c['budget_overridden'] else ''}; flow scales {c['flow_scales']} then "
          f"dropped, one step after {c['shed_after']} ticks over budget, back after {c['recover_after']} under half")
    print(f"{'phase':<8}{'c2p p50':>9}{'p95':>7}{'p99':>7}{'tick p50':>10}{'p95':>7}{'pred/s':>8}{'RSS MB':>8}"
          f"  flow levels: share of predictions (video tick p50/p95 ms at that level)")
    for name, ph in r["phases"].items():
        q, tk = ph["capture_to_prediction_ms"], ph["tick_ms"]
        ticks = ph["tick_ms_by_flow_level"]
        levels = ", ".join(f"{k} {v:.0%}" + (f" ({ticks[k]['p50']:.1f}/{ticks[k]['p95']:.1f})" if k in ticks else "")
                           for k, v in ph["flow_levels"].items() if v)
        print(f"{name:<8}{q['p50']:>9.1f}{q['p95']:>7.1f}{q['p99']:>7.1f}{tk.get('p50', float('nan')):>10.2f}"
              f"{tk.get('p95', float('nan')):>7.2f}{ph['predictions_per_s']:>8.2f}{ph['rss_mb_end'] or 0:>8.1f}"
              f"  {levels}")
    sh = r["shedding"]
    print(f"shedding: {sh['escalations']} escalations; after the load started: " + ", ".join(
        f"{k} at {v} s" if v is not None else f"{k} never" for k, v in sh["first_reached_s"].items()))
    b = r["buffers"]
    print(f"buffers: frame ring {b['frame_ring_slots']} x {b['frame_ring_frame']} (overwritten unread "
          f"{b['frame_ring']['dropped']}, not sampled {b['frame_ring']['skipped']}), audio ring "
          f"{b['audio_ring_s']:g} s (dropped {b['audio_ring_dropped']}), token rings {b['token_rings']}; "
          f"late ticks {r['late_ticks']}; RSS {b['rss_mb']['start']} -> {b['rss_mb']['end']} MB "
          f"(max {b['rss_mb']['max']})")
    return 0
