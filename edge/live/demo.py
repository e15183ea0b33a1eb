"""`run_live.py --demo`: the live pipeline on a MovingDigits-AV session with scripted sensor dropouts, scored.

With --data-root the session is rendered from the test split (real MNIST + FSDD recordings); without it, the
shipped demo recording plays (`assets/demo/session.mkv`: the seed-0 session rendered that way, with its
ground truth beside it and the sources' licences in assets/demo/LICENSE), else the procedural stand-in. It is
rendered at the nuisance levels the bundle's clips were rendered with (its manifest's
extra.data.levels): the shipped students were trained and tested on the trainer's levels (larger cards,
cleaner speech), and at moving_digits.yaml's harder defaults they lose about 40 points of action accuracy even
offline. The camera is lost for a few seconds, later the microphone, and the run is scored per ground-truth
segment: the majority action over the predictions whose 2 s window mostly covers it.
"""
from __future__ import annotations

import argparse
import collections
import sys
from dataclasses import dataclass, replace
from pathlib import Path

from edge.bundle import Bundle
from edge.live.config import RuntimeConfig
from edge.live.console import warn
from edge.live.metrics import format_summary
from edge.live.pipeline import exit_status, recognizer_for, run_session
from edge.live.sinks import standard_sinks
from edge.live.arrays import ArrayAudio, ArrayVideo
from edge.live.faults import Fault, FaultInjector
from edge.live.media import MediaAudio, MediaVideo
from edge.live.sensors import open_sensor
from edge.live.web import close_view, start_view
from edge.assets import ASSETS
from edge.errors import UsageError
from edge.moving_digits import DEFAULT_SPLITS, NOUNS, VERBS, Segment, load_sources, render_session
from edge.moving_digits.config import session_levels
from edge.moving_digits.session import Session, SessionMeta, read_session_meta, write_session

N_ACTIONS = 8
DROPOUT_S = 3.0
RECORDING = ASSETS / "demo" / "session.mkv"      # python -m edge.live.demo --write-recording --data-root DATA writes it


def dropouts(duration_s: float) -> dict[str, Fault]:
    """Camera lost around 30 % of the stream, microphone lost around 65 %."""
    return {"camera": Fault(0.3 * duration_s, 0.3 * duration_s + DROPOUT_S, "lost"),
            "mic": Fault(0.65 * duration_s, 0.65 * duration_s + DROPOUT_S, "lost")}


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


def render_demo_session(bundle: Bundle, data_root: Path | None, seed: int) -> tuple[Session, str]:
    """The seed's session of the test split at the bundle's training levels; and those levels' origin, in words."""
    split = DEFAULT_SPLITS["test"]
    sources = load_sources(data_root, speakers=list(split.speakers), images=split.images,
                           sample_rate=bundle.preprocess.audio_sample_rate)
    levels, levels_from = session_levels(bundle)
    return render_session(sources, seed, N_ACTIONS, levels, sample_rate=bundle.preprocess.audio_sample_rate), levels_from


@dataclass
class DemoStreams:
    """What the demo plays: its camera and microphone (before the dropouts) and the session's ground truth."""

    video: object
    audio: object
    meta: SessionMeta


def demo_streams(args: argparse.Namespace, bundle: Bundle, cfg: RuntimeConfig) -> tuple[DemoStreams, str]:
    """Rendered from --data-root (held in memory); else the shipped recording (seed 0 only), decoded as it plays
    so the demo holds a frame, not the whole session; else the procedural stand-in. And the levels' origin."""
    if args.data_root or not RECORDING.is_file():
        session, levels_from = render_demo_session(bundle, Path(args.data_root) if args.data_root else None, args.seed)
        video = ArrayVideo(session.frames, session.fps, realtime=args.realtime, name="demo camera")
        audio = ArrayAudio(session.audio, session.sample_rate, realtime=args.realtime,
                           block_s=cfg.capture.mic_block_s, name="demo microphone")
        meta = SessionMeta(session.segments, session.duration_s, session.source, session.seed)
        return DemoStreams(video, audio, meta), levels_from
    if args.seed != 0:
        raise UsageError(f"the shipped demo recording is the seed-0 session; pass --data-root (MNIST + FSDD) to "
                         f"render seed {args.seed}.")
    meta = read_session_meta(RECORDING)
    video = MediaVideo(RECORDING, realtime=args.realtime)
    audio = MediaAudio(RECORDING, bundle.preprocess.audio_sample_rate, realtime=args.realtime)   # resampled if need be
    video.name, audio.name = "demo camera", "demo microphone"
    meta = replace(meta, source=f"{meta.source} recording")
    return DemoStreams(video, audio, meta), "the shipped recording, at the shipped student's training levels"


def run_demo(args: argparse.Namespace, cfg: RuntimeConfig, bundle: Bundle) -> int:
    streams, levels_from = demo_streams(args, bundle, cfg)
    session = streams.meta
    view = start_view(args.serve, args.serve_token)
    if list(bundle.labels["verb"]) != list(VERBS) or list(bundle.labels["noun"]) != list(NOUNS):
        warn(f"bundle {bundle.path} was not trained on MovingDigits labels; its accuracy here is meaningless.")
    faults = dropouts(session.duration_s)
    print(f"demo: {session.duration_s:.1f} s MovingDigits-AV session ({session.source} source, seed {session.seed}, "
          f"{len(session.segments)} actions, {levels_from}); "
          f"camera off {faults['camera'].start_s:.1f}-{faults['camera'].end_s:.1f} s, "
          f"microphone off {faults['mic'].start_s:.1f}-{faults['mic'].end_s:.1f} s", flush=True)
    video = FaultInjector(streams.video, [faults["camera"]], audio=False)
    audio = FaultInjector(streams.audio, [faults["mic"]], audio=True)
    records: list[dict] = []
    video, audio = open_sensor(video), open_sensor(audio)
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
    if not score["segments"]:
        print("segment accuracy: nothing to score (the run stopped before any action's windows were complete; "
              "leave out --duration or make it longer)", flush=True)
        return exit_status(outcome)
    print(f"segment accuracy ({score['segments']} segments, {session.source} source): action "
          f"{score['action_accuracy']:.0%}, verb {score['verb_accuracy']:.0%}, noun {score['noun_accuracy']:.0%}; "
          f"{sum(r['verb_ok'] and r['noun_ok'] for r in clean)}/{len(clean)} actions right outside the dropouts, "
          f"{sum(r['verb_ok'] and r['noun_ok'] for r in score['rows'] if r['dropout'])}/"
          f"{score['segments'] - len(clean)} during them", flush=True)
    if session.source == "procedural":
        print("(procedural source: a smoke demo, not a benchmark result)")
    return exit_status(outcome)


def write_recording(bundle: Bundle, data_root: Path, out: Path = RECORDING) -> Path:
    """Render the seed-0 demo session from real MNIST + FSDD at `bundle`'s training levels into `out` (H.264 at
    CRF 23 and FLAC: about 0.8 MB for 28.5 s) with its ground-truth sidecar."""
    session, _ = render_demo_session(bundle, data_root, 0)
    if session.source != "real":
        raise UsageError(f"{data_root} holds no MNIST + FSDD; the demo recording is rendered from the real sources.")
    write_session(session, out, crf=23, audio_codec="flac")
    return out


def main(argv: list[str] | None = None) -> int:
    """python -m edge.live.demo --write-recording --data-root ../shared/data [--bundle DIR] [--out PATH]"""
    from edge.assets import default_bundle
    from edge.bundle import load_bundle
    from edge.errors import EdgeError

    ap = argparse.ArgumentParser(prog="python -m edge.live.demo", description="write the shipped demo recording")
    ap.add_argument("--write-recording", action="store_true", required=True)
    ap.add_argument("--data-root", type=Path, required=True, help="MNIST + FSDD root (e.g. ../shared/data)")
    ap.add_argument("--bundle", type=Path, help="whose training levels to render at (default: the shipped student)")
    ap.add_argument("--out", type=Path, default=RECORDING, help=f"default {RECORDING}")
    args = ap.parse_args(argv)
    try:
        out = write_recording(load_bundle(args.bundle or default_bundle()), args.data_root, args.out)
    except EdgeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB) and {out.with_suffix('.json')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
