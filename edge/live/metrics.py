"""Counters and bounded latency logs, the exit summary and the one-line terminal status."""
from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Iterator

import numpy as np


class LatencyLog:
    """The last `capacity` durations in ms (a ring: a long run keeps memory flat)."""

    def __init__(self, capacity: int = 65536) -> None:
        self._values = np.zeros(capacity)
        self.count = 0

    def add(self, ms: float) -> None:
        self._values[self.count % self._values.size] = ms
        self.count += 1

    def summary(self) -> dict:
        if self.count == 0:
            return {"n": 0}
        v = self._values[: min(self.count, self._values.size)]
        p50, p95, p99 = np.percentile(v, [50, 95, 99])
        return {"n": self.count, "mean": round(float(v.mean()), 3), "p50": round(float(p50), 3),
                "p95": round(float(p95), 3), "p99": round(float(p99), 3), "max": round(float(v.max()), 3)}


class Metrics:
    """Per-stage latency, capture-to-prediction latency, counters and CPU time of one run."""

    def __init__(self) -> None:
        self.stages: dict[str, LatencyLog] = {}
        self.capture_to_prediction = LatencyLog()     # predictions with a new token: capture -> prediction
        self.loss_to_prediction = LatencyLog()        # a sensor's last data -> the first prediction without it
        self.counters: dict[str, int] = {}
        self.modality_use = {"V": 0, "F": 0, "A": 0}
        self._wall0 = time.monotonic()
        self._cpu0 = time.process_time()

    @contextmanager
    def time(self, stage: str) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.stage(stage, (time.perf_counter() - t0) * 1000.0)

    def stage(self, stage: str, ms: float) -> None:
        log = self.stages.get(stage)
        if log is None:
            log = self.stages[stage] = LatencyLog()
        log.add(ms)

    def count(self, name: str, n: int = 1) -> None:
        self.counters[name] = self.counters.get(name, 0) + n

    def summary(self, **extra) -> dict:
        wall = time.monotonic() - self._wall0
        cpu = time.process_time() - self._cpu0
        predictions = self.counters.get("predictions", 0)
        return {
            "type": "summary",
            "wall_s": round(wall, 3),
            "cpu_s": round(cpu, 3),
            "cpu_percent": round(100.0 * cpu / wall, 1) if wall > 0 else 0.0,
            "capture_to_prediction_ms": self.capture_to_prediction.summary(),
            "sensor_loss_to_prediction_ms": self.loss_to_prediction.summary(),
            "stages_ms": {name: log.summary() for name, log in sorted(self.stages.items())},
            "counters": dict(sorted(self.counters.items())),
            "modality_fraction": {m: round(n / predictions, 3) if predictions else 0.0
                                  for m, n in self.modality_use.items()},
            **extra,
        }


def format_summary(summary: dict) -> str:
    """The exit summary as a few human-readable lines."""
    c2p = summary["capture_to_prediction_ms"]
    counters = summary["counters"]
    states = ", ".join(f"{counters.get(k, 0)} {k.replace('_', ' ')}" for k in ("warming_up", "no_input"))
    lines = [f"run: {summary['wall_s']:.1f} s wall, {summary['cpu_s']:.1f} s CPU ({summary['cpu_percent']:.0f} %), "
             f"{counters.get('prediction_records', 0)} prediction records ({counters.get('predictions', 0)} "
             f"with an action, {states}), {summary.get('events', 0)} events"]
    if c2p.get("n"):
        lines.append(f"capture-to-prediction ms: p50 {c2p['p50']:.1f}  p95 {c2p['p95']:.1f}  p99 {c2p['p99']:.1f}")
    loss = summary.get("sensor_loss_to_prediction_ms", {})
    if loss.get("n"):
        lines.append(f"sensor stopped -> first prediction without it, ms: p50 {loss['p50']:.0f}  max {loss['max']:.0f} "
                     f"(n={loss['n']}; from its last data, the stale_s wait included)")
    for name, s in summary["stages_ms"].items():
        if s.get("n"):
            lines.append(f"  {name:<14} p50 {s['p50']:7.2f}  p95 {s['p95']:7.2f}  p99 {s['p99']:7.2f}  (n={s['n']})")
    lines.append("modalities used: " + ", ".join(f"{m} {f:.0%}" for m, f in summary["modality_fraction"].items()))
    drops = {k: v for k, v in counters.items() if k.endswith(("dropped", "skipped", "late_ticks", "reconnects",
                                                               "bad_frames"))}
    if drops:
        lines.append("drops/faults: " + ", ".join(f"{k} {v}" for k, v in drops.items()))
    return "\n".join(lines)


def status_line(record: dict, reasons: dict[str, str | None], drops: int) -> str:
    """One terminal line: top prediction, per-modality badges, capture-to-prediction latency, drops."""
    badges = " ".join(f"{m}:{'ok' if reasons.get(m) is None else reasons[m]}" for m in ("V", "F", "A"))
    if record.get("verb") is None:
        top = record.get("state", "")
    else:
        top = f"{record['verb']} {record['noun']} {record['confidence']:.2f}"
    latency = f"{record['latency_ms']:.0f} ms" if record.get("latency_ms") is not None else "-"
    return f"{top:<32} | {badges} | {latency} | drops {drops}"
