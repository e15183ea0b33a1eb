"""`run_live.py --demo`: the live pipeline on a MovingDigits-AV session with scripted sensor dropouts, scored.

The session is rendered from the test split (real MNIST + FSDD recordings with --data-root, else the
procedural stand-in) at the nuisance levels the bundle's clips were rendered with (its manifest's
extra.data.levels): the shipped students were trained and tested on trainer.yaml's overrides (larger cards,
cleaner speech), and at moving_digits.yaml's harder defaults they lose about 40 points of action accuracy even
offline. The camera is lost for a few seconds, later the microphone, and the run is scored per ground-truth
segment: the majority action over the predictions whose 2 s window mostly covers it.
"""
from __future__ import annotations

import argparse
import collections
import sys
from pathlib import Path

from edge.bundle import Bundle
from edge.live.config import RuntimeConfig
from edge.live.console import warn
from edge.live.metrics import format_summary
from edge.live.pipeline import exit_status, recognizer_for, run_session
from edge.live.sinks import standard_sinks
from edge.live.arrays import ArrayAudio, ArrayVideo
from edge.live.faults import Fault, FaultInjector
from edge.live.sensors import Sensor
from edge.live.web import close_view, start_view
from edge.moving_digits import (DEFAULT_SPLITS, NOUNS, VERBS, NuisanceLevels, Segment, load_config, load_sources,
                                 render_session)

N_ACTIONS = 8
DROPOUT_S = 3.0


def dropouts(duration_s: float) -> dict[str, Fault]:
    """Camera lost around 30 % of the stream, microphone lost around 65 %."""
    return {"camera": Fault(0.3 * duration_s, 0.3 * duration_s + DROPOUT_S, "lost"),
            "mic": Fault(0.65 * duration_s, 0.65 * duration_s + DROPOUT_S, "lost")}


def session_levels(bundle: Bundle) -> tuple[NuisanceLevels, str]:
    """The nuisance levels the bundle's clips were rendered with (manifest extra.data.levels over the
    moving_digits.yaml defaults), else moving_digits.yaml's; and where they came from, in words."""
    base = load_config().levels
    extra = bundle.manifest.get("extra")
    data = extra.get("data") if isinstance(extra, dict) else None
    recorded = data.get("levels") if isinstance(data, dict) else None
    if not isinstance(recorded, dict):
        return base, "moving_digits.yaml levels (the bundle records none)"
    return NuisanceLevels.from_dict({**base.to_dict(), **recorded}), "the bundle's training levels"


def score_segments(segments: list[Segment], records: list[dict], window_s: float,
                   faults: dict[str, Fault]) -> dict:
    """Per segment, the majority (verb, noun) of predictions at t in [start + window/2, end + window/2]
    (windows covering at least half of it); segments the run stopped before (--duration) are left out.
    A segment is "during" a dropout when the fault overlaps any of those windows, [start - window/2, end + window/2]:
    a camera back just before a segment still leaves its first windows without video."""
    times = [r["t"] for r in records if r["type"] == "prediction"]
    until = max(times) if times else 0.0
    rows = []
    for seg in segments:
        lo, hi = seg.start_s + window_s / 2, seg.end_s + window_s / 2
        if hi > until + 0.5 * window_s:
            continue
        votes = collections.Counter((r["verb"], r["noun"]) for r in records
                                    if r["type"] == "prediction" and r["verb"] is not None and lo <= r["t"] <= hi)
        verb, noun = votes.most_common(1)[0][0] if votes else (None, None)
        hit = [name for name, f in faults.items() if f.start_s < hi and f.end_s > lo - window_s]
        rows.append({"start": seg.start_s, "end": seg.end_s, "truth": [VERBS[seg.verb], NOUNS[seg.noun]],
                     "predicted": [verb, noun], "dropout": hit,
                     "verb_ok": verb == VERBS[seg.verb], "noun_ok": noun == NOUNS[seg.noun]})
    n = len(rows)

    def acc(pick) -> float:
        return round(sum(pick(r) for r in rows) / n, 3) if n else 0.0

    return {"type": "demo", "segments": n, "action_accuracy": acc(lambda r: r["verb_ok"] and r["noun_ok"]),
            "verb_accuracy": acc(lambda r: r["verb_ok"]), "noun_accuracy": acc(lambda r: r["noun_ok"]),
            "rows": rows}


def run_demo(args: argparse.Namespace, cfg: RuntimeConfig, bundle: Bundle) -> int:
    view = start_view(args.serve, args.serve_token)
    split = DEFAULT_SPLITS["test"]
    data_root = Path(args.data_root) if args.data_root else None
    sources = load_sources(data_root, speakers=list(split.speakers), images=split.images,
                           sample_rate=bundle.preprocess.audio_sample_rate)
    levels, levels_from = session_levels(bundle)
    session = render_session(sources, args.seed, N_ACTIONS, levels, sample_rate=bundle.preprocess.audio_sample_rate)
    if list(bundle.labels["verb"]) != list(VERBS) or list(bundle.labels["noun"]) != list(NOUNS):
        warn(f"bundle {bundle.path} was not trained on MovingDigits labels; its accuracy here is meaningless.")
    faults = dropouts(session.duration_s)
    print(f"demo: {session.duration_s:.1f} s MovingDigits-AV session ({session.source} source, seed {args.seed}, "
          f"{len(session.segments)} actions, {levels_from}); "
          f"camera off {faults['camera'].start_s:.1f}-{faults['camera'].end_s:.1f} s, "
          f"microphone off {faults['mic'].start_s:.1f}-{faults['mic'].end_s:.1f} s", flush=True)
    video = FaultInjector(ArrayVideo(session.frames, session.fps, realtime=args.realtime, name="demo camera"),
                          [faults["camera"]], audio=False)
    audio = FaultInjector(ArrayAudio(session.audio, session.sample_rate, realtime=args.realtime,
                                     block_s=cfg.capture.mic_block_s, name="demo microphone"),
                          [faults["mic"]], audio=True)
    records: list[dict] = []
    video, audio = Sensor(video), Sensor(audio)
    core = recognizer_for(bundle, cfg, video, audio)
    sinks = standard_sinks(args.jsonl, sys.stderr.isatty(), cfg, core)
    jsonl = sinks[0] if args.jsonl else None
    if view is not None:
        sinks.append(view.sink(core))
    try:
        outcome = run_session(bundle, cfg, video, audio, [*sinks, records.append], realtime=args.realtime,
                              duration_s=args.duration, core=core, signals=True)
    finally:
        close_view(view)
    score = score_segments(session.segments, records, bundle.preprocess.window_s, faults)
    score["source"] = session.source
    if jsonl is not None:
        jsonl.append(score)
    print(format_summary(outcome.summary))
    clean = [r for r in score["rows"] if not r["dropout"]]
    print(f"segment accuracy ({score['segments']} segments, {session.source} source): action "
          f"{score['action_accuracy']:.0%}, verb {score['verb_accuracy']:.0%}, noun {score['noun_accuracy']:.0%}; "
          f"{sum(r['verb_ok'] and r['noun_ok'] for r in clean)}/{len(clean)} actions right outside the dropouts, "
          f"{sum(r['verb_ok'] and r['noun_ok'] for r in score['rows'] if r['dropout'])}/"
          f"{score['segments'] - len(clean)} during them", flush=True)
    if session.source == "procedural":
        print("(procedural source: a smoke demo, not a benchmark result)")
    return exit_status(outcome)
