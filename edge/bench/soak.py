"""Soak: the real-time live pipeline on a looping demo stream for N minutes, with faults injected at random.

One fault at a time (seeded random kind, 1-3 s long, 3-6 s apart): camera loss, frozen, black, wrong-size and
wrong-channel frames; microphone loss, silence, clipping, NaN and Inf audio; CPU bursts (two busy processes).
Per fault type: how long until the health monitor marked the affected modality missing (from the fault's
start), how long until predictions used it again (from the fault's end), and predictions lost (ticks in the
fault and its recovery without a prediction). Overall: crashes, uncaught exceptions in any thread, sensors
that gave up, resident memory at start and end, and p99 capture-to-prediction latency per minute.
Targets: 0 crashes, 0 uncaught exceptions, memory growth under 5 %, every fault noticed within 0.5 s and
recovered within 2 s of its end. --json prints one object.
"""
from __future__ import annotations

import argparse
import json
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import psutil

from edge.bundle import load_bundle
from edge.errors import EdgeError
from edge.assets import default_bundle
from edge.live.config import DEFAULT_PATH, load_runtime_config
from edge.live.health import ENDED
from edge.live.pipeline import recognizer_for, run_session
from edge.live.arrays import ArrayAudio, ArrayVideo
from edge.live.faults import Fault, FaultInjector
from edge.live.sensors import Sensor
from edge.bench.busy import start_busy, stop_busy

# soak fault -> (injected into: video | audio | cpu, FaultInjector kind, modality it must make missing or None)
FAULTS = {
    "camera_loss": ("video", "lost", "V"),
    "frozen_frames": ("video", "frozen", "V"),
    "black_frames": ("video", "black", "V"),
    "wrong_size_frames": ("video", "wrong_shape", None),   # converted to the model's size and used
    "wrong_channel_frames": ("video", "wrong_channels", "V"),
    "mic_loss": ("audio", "lost", "A"),
    "silence": ("audio", "silence", "A"),
    "clipping": ("audio", "clip", "A"),
    "nan_audio": ("audio", "nan", "A"),
    "inf_audio": ("audio", "inf", "A"),
    "cpu_burst": ("cpu", "", None),
}
BIT = {"V": 1, "F": 2, "A": 4}
SHED = 8             # flow dropped by load shedding in that prediction: F is not expected back
WARMUP_S = 8.0
NOTICE_S, RECOVER_S, RSS_GROWTH = 0.5, 2.0, 0.05
BURST_PROCESSES = 2


@dataclass(frozen=True)
class Planned:
    name: str
    start_s: float
    end_s: float


def plan_faults(total_s: float, seed: int) -> list[Planned]:
    """Non-overlapping faults of random kind: 1-3 s long, 3-6 s apart, from WARMUP_S to 5 s before the end."""
    rng = np.random.default_rng(seed)
    names = list(FAULTS)
    out, t = [], WARMUP_S
    while True:
        length = float(rng.uniform(1.0, 3.0))
        if t + length > total_s - 5.0:
            return out
        out.append(Planned(names[int(rng.integers(len(names)))], t, t + length))
        t += length + float(rng.uniform(3.0, 6.0))


class Recorder:
    """Every prediction tick in preallocated arrays (memory stays flat): time, modalities used, latency, flow
    resolution (NaN: flow shed)."""

    def __init__(self, capacity: int) -> None:
        self.t = np.zeros(capacity)
        self.mask = np.zeros(capacity, np.int8)
        self.predicted = np.zeros(capacity, bool)
        self.latency = np.full(capacity, np.nan)
        self.flow_scale = np.full(capacity, np.nan)
        self.n = 0

    def __call__(self, record: dict) -> None:
        if record["type"] != "prediction" or self.n >= self.t.size:
            return
        i = self.n
        self.t[i] = time.monotonic()
        self.mask[i] = sum(BIT[m] for m in record["modalities"]) + (SHED if record["flow_scale"] is None else 0)
        self.predicted[i] = record["verb"] is not None
        if record["latency_ms"] is not None:
            self.latency[i] = record["latency_ms"]
        if record["flow_scale"] is not None:
            self.flow_scale[i] = record["flow_scale"]
        self.n += 1


def assess(fault: Planned, start: float, end: float, rec: Recorder, period: float) -> dict:
    """Notice and recovery times (s) and predictions lost for one fault at monotonic [start, end)."""
    t, mask, predicted = rec.t[:rec.n], rec.mask[:rec.n], rec.predicted[:rec.n]
    modality = FAULTS[fault.name][2]
    notice = recover = None
    if modality is not None:
        want = BIT[modality]
        usable = (mask & want) == want
        if modality == "V":  # V's recovery also needs F back, unless load shedding dropped flow
            usable_back = usable & (((mask & BIT["F"]) != 0) | ((mask & SHED) != 0))
        else:
            usable_back = usable
        missing = np.flatnonzero((t >= start) & (t < end + NOTICE_S) & ~usable)
        if missing.size:
            notice = float(t[missing[0]] - start)
            back = np.flatnonzero((t >= end) & usable_back)
            recover = float(t[back[0]] - end) if back.size else float("inf")
    window_end = end + (recover if recover is not None and np.isfinite(recover) else 0.0)
    inside = (t >= start) & (t < window_end)
    # One new token per modality arrives every 2 ticks (a tick with no new token in use emits nothing by
    # design), and ticks run when their data arrives, so predictions come every `slot` give or take a frame
    # interval; a gap of more than 1.5 slots between two predictions (or the fault's bounds) lost the slots in it.
    slot = 2 * period
    gaps = np.diff(np.concatenate([[start], t[inside & predicted], [window_end]]))
    lost = int(sum(round(g / slot) - 1 for g in gaps if g > 1.5 * slot))
    lat = rec.latency[:rec.n][inside]
    lat = lat[np.isfinite(lat)]
    return {"fault": fault.name, "start_s": round(fault.start_s, 2), "length_s": round(fault.end_s - fault.start_s, 2),
            "notice_s": None if notice is None else round(notice, 3),
            "recover_s": None if recover is None else round(recover, 3), "predictions_lost": lost,
            "p99_latency_ms": round(float(np.percentile(lat, 99)), 1) if lat.size else None}


def _stats(values: list[float]) -> dict:
    if not values:
        return {"n": 0}
    v = np.asarray(values)
    return {"n": int(v.size), "p50": round(float(np.median(v)), 3), "max": round(float(v.max()), 3)}


def summarize(rows: list[dict]) -> dict:
    """Per fault type: count, noticed, notice and recovery times, predictions lost."""
    out = {}
    for name in FAULTS:
        mine = [r for r in rows if r["fault"] == name]
        if not mine:
            continue
        noticed = [r for r in mine if r["notice_s"] is not None]
        out[name] = {"count": len(mine), "noticed": len(noticed), "expects_missing": FAULTS[name][2],
                     "notice_s": _stats([r["notice_s"] for r in noticed]),
                     "recover_s": _stats([r["recover_s"] for r in noticed]),
                     "predictions_lost": sum(r["predictions_lost"] for r in mine),
                     "p99_latency_ms": max((r["p99_latency_ms"] or 0.0) for r in mine)}
    return out


def rss_mb() -> float:
    return round(psutil.Process().memory_info().rss / 2 ** 20, 1)


class Scheduler(threading.Thread):
    """Runs CPU bursts (`processes` busy processes each) on the stream clock and samples resident memory every
    `rss_every_s`; `zero()` is the monotonic time of stream time 0 (None until the stream starts)."""

    def __init__(self, zero: Callable[[], float | None], bursts: list[Planned], stop: threading.Event,
                 rss_every_s: float = 10.0, processes: int = BURST_PROCESSES) -> None:
        super().__init__(name="soak-scheduler", daemon=True)
        self.zero, self.bursts, self.stop, self.rss_every_s = zero, bursts, stop, rss_every_s
        self.processes = processes
        self.rss: list[tuple[float, float]] = []

    def run(self) -> None:
        while self.zero() is None:
            if self.stop.wait(0.01):
                return
        zero = self.zero()
        events = sorted([(b.start_s, "start") for b in self.bursts] + [(b.end_s, "stop") for b in self.bursts])
        next_rss, procs = 0.0, []
        try:
            while not self.stop.is_set():
                now = time.monotonic() - zero
                while events and events[0][0] <= now:
                    _, what = events.pop(0)
                    if what == "start":
                        procs = start_busy(self.processes)
                    else:
                        stop_busy(procs)
                        procs = []
                if now >= next_rss:
                    self.rss.append((round(now, 1), rss_mb()))
                    next_rss += self.rss_every_s
                self.stop.wait(0.01)
        finally:
            stop_busy(procs)


def soak(bundle_path: Path, config: Path, minutes: float, seed: int, data_root: Path | None) -> dict:
    """Run the soak and return its report."""
    from edge.moving_digits import DEFAULT_SPLITS, load_config, load_sources, render_session

    bundle = load_bundle(bundle_path, threads=1)
    cfg = load_runtime_config(config)
    rate = bundle.preprocess.audio_sample_rate
    split = DEFAULT_SPLITS["test"]
    sources = load_sources(data_root, speakers=list(split.speakers), images=split.images, sample_rate=rate)
    session = render_session(sources, seed, 8, load_config().levels, sample_rate=rate)
    total_s = minutes * 60.0
    plan = plan_faults(total_s, seed)
    scripted = {"video": [], "audio": []}
    for p in plan:
        where, kind, _ = FAULTS[p.name]
        if where != "cpu":
            scripted[where].append(Fault(p.start_s, p.end_s, kind))
    camera = ArrayVideo(session.frames, session.fps, name="soak camera", loop=True)
    mic = ArrayAudio(session.audio, session.sample_rate, block_s=cfg.capture.mic_block_s, name="soak microphone",
                     loop=True)
    period = 0.5 / bundle.preprocess.sample_fps
    recorder = Recorder(int(total_s / period * 1.2) + 1000)
    video = Sensor(FaultInjector(camera, scripted["video"], audio=False))
    audio = Sensor(FaultInjector(mic, scripted["audio"], audio=True))
    core = recognizer_for(bundle, cfg, video, audio)
    stop = threading.Event()
    uncaught: list[str] = []
    previous_hook = threading.excepthook

    def hook(args: threading.ExceptHookArgs) -> None:
        uncaught.append(f"{args.thread.name if args.thread else '?'}: {args.exc_type.__name__}: {args.exc_value}")
        previous_hook(args)

    threading.excepthook = hook
    scheduler = Scheduler(lambda: camera.pacer.origin, [p for p in plan if FAULTS[p.name][0] == "cpu"],
                          stop)
    scheduler.start()
    crashes, summary = [], None
    try:
        summary = run_session(bundle, cfg, video, audio, [recorder], duration_s=total_s, core=core,
                              signals=True).summary
    except Exception as exc:  # a crash is what the soak is looking for: record it, do not die
        crashes.append(f"{type(exc).__name__}: {exc}")
    finally:
        stop.set()
        scheduler.join(timeout=5.0)
        threading.excepthook = previous_hook
    zero = {"video": camera.pacer.origin, "audio": mic.pacer.origin, "cpu": camera.pacer.origin}
    rows = []
    for p in plan:
        origin = zero[FAULTS[p.name][0]]
        if origin is None or origin + p.end_s > recorder.t[max(0, recorder.n - 1)]:
            continue  # not reached (the run was stopped early)
        rows.append(assess(p, origin + p.start_s, origin + p.end_s, recorder, period))
    t = recorder.t[:recorder.n] - (camera.pacer.origin or 0.0)
    lat = recorder.latency[:recorder.n]
    per_minute = []
    for minute in range(int(np.ceil(t[-1] / 60.0)) if recorder.n else 0):
        sel = (t >= 60 * minute) & (t < 60 * (minute + 1)) & np.isfinite(lat)
        per_minute.append(round(float(np.percentile(lat[sel], 99)), 1) if sel.any() else None)
    rss = scheduler.rss
    rss_start = next((mb for s, mb in rss if s >= WARMUP_S), rss[0][1] if rss else None)
    rss_end = rss[-1][1] if rss else None
    by_type = summarize(rows)
    late = [r for r in rows if r["notice_s"] is not None and (r["notice_s"] > NOTICE_S or r["recover_s"] > RECOVER_S)]
    unnoticed = [r for r in rows if FAULTS[r["fault"]][2] is not None and r["notice_s"] is None]
    growth = (rss_end - rss_start) / rss_start if rss_start and rss_end else None
    ended = [m for m, state in core.states.items() if state == ENDED]
    return {
        "minutes": minutes, "seed": seed, "stream": f"MovingDigits-AV session ({session.source} source), looped",
        "bundle": str(bundle_path), "faults_injected": len(rows), "by_fault": by_type,
        "crashes": len(crashes), "crash_messages": crashes, "uncaught_exceptions": len(uncaught),
        "uncaught_messages": uncaught[:10], "sensors_ended": ended,
        "rss_mb": {"start": rss_start, "end": rss_end, "max": max((mb for _, mb in rss), default=None),
                   "growth_percent": None if growth is None else round(100 * growth, 2), "samples": rss},
        "p99_latency_ms_per_minute": per_minute,
        "predictions": int(recorder.predicted[:recorder.n].sum()), "ticks": recorder.n,
        "counters": summary["counters"] if summary else {},
        "shedding": summary["shedding"] if summary else {},
        "targets_met": {"no_crash": not crashes and not uncaught and not ended,
                        "memory_growth_under_5_percent": growth is not None and growth < RSS_GROWTH,
                        "every_fault_noticed_within_0.5s_recovered_within_2s": not late and not unnoticed},
        "late_or_unnoticed": (late + unnoticed)[:20],
    }


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--minutes", type=float, default=30.0, help="how long to soak (default 30)")
    parser.add_argument("--seed", type=int, default=0, help="seeds the demo stream and the fault schedule")
    parser.add_argument("--bundle", type=Path, default=None,
                        help="model bundle (default: the live default, assets/bundles/karmma_s_int8 else karmma_s)")
    parser.add_argument("--config", type=Path, default=DEFAULT_PATH, help="runtime settings YAML")
    parser.add_argument("--data-root", type=Path, default=None,
                        help="real MNIST/FSDD recordings for the stream (default: the procedural source)")
    parser.add_argument("--json", action="store_true", help="print the report as one JSON object")


def _fmt(s: dict) -> str:
    return f"p50 {s['p50']:.2f} max {s['max']:.2f}" if s.get("n") else "-"


def run(args: argparse.Namespace) -> int:
    if args.minutes <= 0:
        raise EdgeError(f"--minutes must be positive, got {args.minutes}.")
    report = soak(args.bundle or default_bundle(), args.config, args.minutes, args.seed, args.data_root)
    if args.json:
        print(json.dumps(report, indent=1))
    else:
        print(f"soak: {report['minutes']:g} min, {report['stream']}, {report['faults_injected']} faults, "
              f"{report['predictions']} predictions in {report['ticks']} ticks")
        print(f"{'fault':<22}{'n':>4}{'noticed':>9}  {'notice s':<22}{'recover s':<22}{'lost':>6}")
        for name, s in report["by_fault"].items():
            print(f"{name:<22}{s['count']:>4}{s['noticed']:>9}  {_fmt(s['notice_s']):<22}{_fmt(s['recover_s']):<22}"
                  f"{s['predictions_lost']:>6}")
        rss = report["rss_mb"]
        print(f"crashes {report['crashes']}, uncaught exceptions {report['uncaught_exceptions']}, sensors ended "
              f"{report['sensors_ended'] or 'none'}; RSS {rss['start']} -> {rss['end']} MB ({rss['growth_percent']} %)")
        print("p99 capture-to-prediction ms per minute: " + ", ".join(str(v) for v in report["p99_latency_ms_per_minute"]))
        print("targets: " + ", ".join(f"{k} {'yes' if v else 'NO'}" for k, v in report["targets_met"].items()))
    return 1 if report["crashes"] or report["uncaught_exceptions"] else 0
