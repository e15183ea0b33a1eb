"""Stream: what a wearer experiences. Test-split sessions through the real live pipeline, per sensor condition.

N MovingDigits-AV sessions from the test split (unseen speaker and images; several actions each, with idle
gaps long enough to hold idle windows), rendered at the levels the bundle was trained with, are played through
the live pipeline as fast as the CPU allows (stamped with media time, so every sampling decision is the one a
real-time run makes) under each condition:

  all            every sensor works
  camera_off     no camera (V and F missing)          mic_off        no microphone (A missing)
  flow_0.5       flow always at half resolution       flow_0.25      flow always at quarter resolution
  flow_dropped   flow shed from the first video tick (the shedder's last step)
  random_faults  the soak's injector: one random camera or microphone fault at a time, 1-3 s long, 3-6 s apart

Per condition: segments; segment verb / noun / action accuracy (the majority over the predictions whose 2 s
window covers at least half of the segment, as the demo scores); action events per idle minute that overlap
no action (idle = outside [start, end + window / 2] of every action); the median time from an action's start
to the first prediction of the right action (within the scored span; segments never right counted in
`never_correct`). --json prints {"conditions": [{name, segments, verb, noun, action, false_events_per_idle_min,
time_to_correct_ms_p50, ...}]}; --png draws one session's timeline per condition.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from edge.bundle import Bundle, load_bundle
from edge.errors import ConfigError
from edge.live.config import DEFAULT_PATH, RuntimeConfig, load_runtime_config
from edge.live.arrays import ArrayAudio, ArrayVideo
from edge.live.faults import Fault, FaultInjector
from edge.live.pipeline import run_session
from edge.live.sensors import Sensor
from edge.moving_digits import DEFAULT_SPLITS, NOUNS, VERBS, Segment, Session, load_sources, render_session
from edge.moving_digits.config import session_levels

ACTIONS_PER_SESSION = 6
GAP_S = (1.5, 4.0)


@dataclass(frozen=True)
class Condition:
    name: str
    camera: bool = True
    mic: bool = True
    flow_scale: float | None = 1.0      # None: flow dropped
    faults: bool = False


CONDITIONS = (Condition("all"), Condition("camera_off", camera=False), Condition("mic_off", mic=False),
              Condition("flow_0.5", flow_scale=0.5), Condition("flow_0.25", flow_scale=0.25),
              Condition("flow_dropped", flow_scale=None), Condition("random_faults", faults=True))


def runtime_for(cfg: RuntimeConfig, condition: Condition) -> RuntimeConfig:
    """The runtime settings that hold flow at the condition's resolution: one shedding step, a budget that
    never sheds (or, for dropped flow, one that sheds at the first video tick and never recovers)."""
    if condition.flow_scale is None:
        shed = dataclasses.replace(cfg.shedding, flow_scales=(1.0,), budget_ms=1e-9, shed_after=1,
                                   recover_after=10 ** 9)
    else:
        shed = dataclasses.replace(cfg.shedding, flow_scales=(condition.flow_scale,), budget_ms=1e9)
    return dataclasses.replace(cfg, shedding=shed)


def scripted_faults(duration_s: float, seed: int) -> dict[str, list[Fault]]:
    """The soak's random camera / microphone faults over one session (CPU bursts left out: this runs flat out)."""
    from edge.bench.soak import FAULTS, plan_faults

    out: dict[str, list[Fault]] = {"video": [], "audio": []}
    for p in plan_faults(duration_s, seed):
        where, kind, _ = FAULTS[p.name]
        if where != "cpu":
            out[where].append(Fault(p.start_s, p.end_s, kind))
    return out


def play(bundle: Bundle, cfg: RuntimeConfig, session: Session, condition: Condition, seed: int) -> list[dict]:
    """One session through the live pipeline under `condition`: its records."""
    faults = scripted_faults(session.duration_s, seed) if condition.faults else {"video": [], "audio": []}
    video = audio = None
    if condition.camera:
        video = FaultInjector(ArrayVideo(session.frames, session.fps, realtime=False, name="stream camera"),
                              faults["video"], audio=False)
    if condition.mic:
        audio = FaultInjector(ArrayAudio(session.audio, session.sample_rate, realtime=False,
                                         block_s=cfg.capture.mic_block_s, name="stream microphone"),
                              faults["audio"], audio=True)
    records: list[dict] = []
    run_session(bundle, runtime_for(cfg, condition), Sensor(video), Sensor(audio), [records.append], realtime=False)
    return records


def spans(segments: list[Segment], window_s: float) -> list[tuple[float, float]]:
    """Where each action's predictions are due: from its start to half a window after its end."""
    return [(s.start_s, s.end_s + window_s / 2) for s in segments]


def idle_seconds(segments: list[Segment], duration_s: float, window_s: float) -> float:
    covered, last = 0.0, 0.0
    for lo, hi in sorted(spans(segments, window_s)):
        lo, hi = max(lo, last), min(hi, duration_s)
        covered += max(0.0, hi - lo)
        last = max(last, hi)
    return max(0.0, duration_s - covered)


def score_session(segments: list[Segment], records: list[dict], window_s: float, duration_s: float) -> dict:
    """Per-segment hits, false events and times to the first correct prediction of one played session."""
    from edge.live.demo import score_segments

    rows = score_segments(segments, records, window_s, {})["rows"]
    predictions = [r for r in records if r["type"] == "prediction" and r["verb"] is not None]
    times = []
    for seg in segments:
        right = [r["t"] for r in predictions if seg.start_s <= r["t"] <= seg.end_s + window_s / 2
                 and (r["verb"], r["noun"]) == (VERBS[seg.verb], NOUNS[seg.noun])]
        times.append(1000.0 * (right[0] - seg.start_s) if right else None)
    due = spans(segments, window_s)
    events = [r for r in records if r["type"] == "event"]
    false = [e for e in events if not any(e["start"] < hi and e["end"] > lo for lo, hi in due)]
    return {"rows": rows, "times_ms": times, "events": len(events), "false_events": len(false),
            "idle_s": idle_seconds(segments, duration_s, window_s)}


def summarize(name: str, scored: list[dict]) -> dict:
    rows = [r for s in scored for r in s["rows"]]
    times = [t for s in scored for t in s["times_ms"]]
    reached = [t for t in times if t is not None]
    idle_min = sum(s["idle_s"] for s in scored) / 60.0
    n = len(rows)

    def pct(pick: Callable[[dict], bool]) -> float:
        return round(100.0 * sum(pick(r) for r in rows) / n, 1) if n else 0.0

    false = sum(s["false_events"] for s in scored)
    return {"name": name, "segments": n, "verb": pct(lambda r: r["verb_ok"]), "noun": pct(lambda r: r["noun_ok"]),
            "action": pct(lambda r: r["verb_ok"] and r["noun_ok"]),
            "false_events_per_idle_min": round(false / idle_min, 2) if idle_min > 0 else None,
            "time_to_correct_ms_p50": round(float(np.median(reached)), 1) if reached else None,
            "never_correct": len(times) - len(reached), "false_events": false,
            "events": sum(s["events"] for s in scored), "idle_min": round(idle_min, 2)}


def plot(timelines: dict[str, tuple[Session, list[dict]]], window_s: float, path: Path) -> None:
    """One panel per condition: truth (action per segment), predictions (right / wrong / none), modalities used."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(timelines), 1, figsize=(14, 1.9 * len(timelines)), sharex=True, squeeze=False)
    for ax, (name, (session, records)) in zip(axes[:, 0], timelines.items()):
        for seg in session.segments:
            ax.axvspan(seg.start_s, seg.end_s, ymin=0.72, ymax=0.98, color="tab:blue", alpha=0.35)
            ax.text((seg.start_s + seg.end_s) / 2, 4.55, f"{VERBS[seg.verb]} {NOUNS[seg.noun]}", ha="center",
                    va="center", fontsize=7)
        truth = {(seg.start_s, seg.end_s + window_s / 2): (VERBS[seg.verb], NOUNS[seg.noun])
                 for seg in session.segments}
        preds = [r for r in records if r["type"] == "prediction"]
        for r in preds:
            if r["verb"] is None:
                continue
            due = [a for (lo, hi), a in truth.items() if lo <= r["t"] <= hi]
            color = "0.6" if not due else ("tab:green" if (r["verb"], r["noun"]) in due else "tab:red")
            ax.plot(r["t"], 3.5, "|", color=color, markersize=9)
        for row, m in enumerate(("V", "F", "A")):
            used = [r["t"] for r in preds if m in r["modalities"]]
            ax.plot(used, [2 - row] * len(used), ".", color="k", markersize=2)
        ax.set_yticks([0, 1, 2, 3.5, 4.55], ["A", "F", "V", "pred", "truth"])
        ax.set_ylim(-0.6, 5.1)
        ax.set_title(f"{name} (prediction: green right, red wrong, grey outside any action)", fontsize=8,
                     loc="left")
    axes[-1, 0].set_xlabel("stream time (s)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def benchmark(bundles: list[Bundle], cfg: RuntimeConfig, sessions: int, seed: int, data_root: Path | None,
              conditions: tuple[Condition, ...] = CONDITIONS, progress: Callable[[str], None] = print) -> list[dict]:
    """Render `sessions` test-split sessions once and play each under every condition through every bundle (side by
    side: the same sessions, faults and order); per bundle, per-condition figures and the first session's records
    per condition (for the timeline). Sessions are rendered at the first bundle's training levels."""
    pre = bundles[0].preprocess
    split = DEFAULT_SPLITS["test"]
    sources = load_sources(data_root, speakers=list(split.speakers), images=split.images,
                           sample_rate=pre.audio_sample_rate)
    levels, levels_from = session_levels(bundles[0])
    scored = [{c.name: [] for c in conditions} for _ in bundles]
    timelines: list[dict[str, tuple[Session, list[dict]]]] = [{} for _ in bundles]
    start = time.perf_counter()
    for k in range(sessions):
        session = render_session(sources, seed * 1000 + k, ACTIONS_PER_SESSION, levels, gap_s=GAP_S,
                                 sample_rate=pre.audio_sample_rate)
        for condition in conditions:
            for b, bundle in enumerate(bundles):
                records = play(bundle, cfg, session, condition, seed * 1000 + k)
                scored[b][condition.name].append(score_session(session.segments, records, bundle.preprocess.window_s,
                                                               session.duration_s))
                if k == 0:
                    timelines[b][condition.name] = (session, records)
        progress(f"stream: session {k + 1}/{sessions} played under {len(conditions)} conditions by "
                 f"{len(bundles)} bundle(s) ({time.perf_counter() - start:.0f} s)")
    wall = round(time.perf_counter() - start, 1)
    return [{"bundle": str(bundle.path), "precision": bundle.precision, "sessions": sessions, "seed": seed,
             "source": sources.source, "levels": levels_from, "actions_per_session": ACTIONS_PER_SESSION,
             "gap_s": list(GAP_S), "conditions": [summarize(c.name, scored[b][c.name]) for c in conditions],
             "wall_s": wall, "_timelines": timelines[b]} for b, bundle in enumerate(bundles)]


def format_table(results: list[dict]) -> str:
    """One row per condition, each bundle's figures side by side (the first bundle's name in the header)."""
    first = results[0]
    names = " vs ".join(f"{Path(r['bundle']).name} ({r['precision']})" for r in results)
    lines = [f"stream benchmark: {names}, {first['sessions']} sessions x {first['actions_per_session']} actions, "
             f"{first['source']} source, seed {first['seed']} (several bundles: figures side by side, a / b)",
             "| condition | segments | verb % | noun % | action % | false events / idle min | time to correct p50 ms "
             "| never right |", "|---|---|---|---|---|---|---|---|"]
    keys = ("verb", "noun", "action", "false_events_per_idle_min", "time_to_correct_ms_p50", "never_correct")
    for i, c in enumerate(first["conditions"]):
        cells = [" / ".join(str(r["conditions"][i][k]) for r in results) for k in keys]
        lines.append(f"| {c['name']} | {c['segments']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from edge.assets import default_bundle

    parser.add_argument("--sessions", type=int, default=20, help="test-split sessions (default 20)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-root", type=Path, help="real MNIST + FSDD (else the procedural stand-in)")
    parser.add_argument("--bundle", type=Path, nargs="+", default=None,
                        help="model bundle(s), played side by side (default: the shipped int8 and fp32 students)")
    parser.add_argument("--config", type=Path, default=DEFAULT_PATH, help="runtime config")
    parser.add_argument("--conditions", nargs="+", choices=[c.name for c in CONDITIONS],
                        help="only these conditions (default: all seven)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    parser.add_argument("--png", type=Path, help="timeline of the first session under every condition")
    parser.set_defaults(default_bundles=lambda: [default_bundle("int8"), default_bundle("fp32")])


def run(args: argparse.Namespace) -> int:
    import sys

    if args.sessions < 1:
        raise ConfigError(f"--sessions must be at least 1, got {args.sessions}.")
    if args.data_root is not None and not args.data_root.is_dir():
        raise ConfigError(f"data root {args.data_root} does not exist or is not a folder.")
    paths = list(dict.fromkeys(args.bundle or args.default_bundles()))
    bundles = [load_bundle(p, threads=1) for p in paths]
    cfg = load_runtime_config(args.config)
    conditions = tuple(c for c in CONDITIONS if not args.conditions or c.name in args.conditions)
    results = benchmark(bundles, cfg, args.sessions, args.seed, args.data_root, conditions,
                        progress=lambda msg: print(msg, file=sys.stderr, flush=True))
    timelines = [r.pop("_timelines") for r in results]
    if args.png is not None:
        plot(timelines[0], bundles[0].preprocess.window_s, args.png)
    print(json.dumps(results[0] if len(results) == 1 else {"runs": results}) if args.json else format_table(results))
    if args.png is not None and not args.json:
        print(f"timeline: {args.png} (of {paths[0]})")
    return 0
