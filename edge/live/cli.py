"""The live recognizer's command line (`karmma-live`, `python -m edge.live`, `run_live.py`).

Exit codes: 0 a run that made predictions; 2 a bad input (one sentence); 3 a run that made no usable
prediction (one sentence naming the cause); 4 the JSONL could not be written to the end (e.g. a full disk);
130 Ctrl-C before the recognizer started.
"""
from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path

from edge.bundle import Bundle, load_bundle
from edge.errors import EdgeError, UsageError
from edge.assets import default_bundle
from edge.live.config import DEFAULT_PATH, load_runtime_config
from edge.live.console import warn
from edge.live.demo import RECORDING, run_demo
from edge.live.metrics import format_summary
from edge.live.pipeline import exit_status, recognizer_for, run_session
from edge.live.sinks import OverlaySink, standard_sinks
from edge.live.sensors import camera_source, mic_source, open_sensor
from edge.live.sources import SourceError
from edge.live.web import close_view, start_view


def positive_seconds(text: str) -> float:
    """argparse type: a finite number of seconds above 0 (nan and inf are refused, not ignored)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a finite number of seconds above 0, got {text!r}")
    return value


def build_parser(prog: str = "karmma-live") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description="Live egocentric action recognition "
                                "(camera + microphone) that keeps predicting when a sensor drops out.")
    p.add_argument("--camera", help="camera index, device path, stream URL, media file, or none")
    p.add_argument("--mic", help="microphone name, index or default, a media file, or none")
    p.add_argument("--demo", action="store_true", help="run on the built-in MovingDigits demo stream, scored")
    p.add_argument("--data-root", help="real recordings for --demo (default: the procedural source)")
    p.add_argument("--bundle", help="model bundle folder (default: the shipped int8 student karmma_s_int8, else the fp32 karmma_s)")
    p.add_argument("--config", default=str(DEFAULT_PATH), help="runtime settings YAML")
    p.add_argument("--jsonl", help="write every prediction, event and the summary as JSON lines")
    p.add_argument("--duration", type=positive_seconds, help="stop after this many seconds of stream")
    p.add_argument("--display", action="store_true", help="show an overlay window (needs a display)")
    pace = p.add_mutually_exclusive_group()
    pace.add_argument("--realtime", dest="realtime", action="store_true", default=True,
                      help="files play at their own speed (default)")
    pace.add_argument("--fast", dest="realtime", action="store_false", help="files run as fast as the CPU allows")
    p.add_argument("--seed", type=int, default=0, help="demo stream seed")
    p.add_argument("--serve", metavar="[HOST:]PORT", help="serve a live web view (default host 127.0.0.1)")
    p.add_argument("--serve-token", metavar="TOKEN", help="access token for --serve (off loopback: generated "
                   "and printed when not given)")
    return p


def _load_bundle(path: str | None) -> Bundle:
    return load_bundle(Path(path) if path else default_bundle(), threads=1)


def refuse_output_over_input(jsonl: str, inputs: dict[str, str | Path | None]) -> None:
    """--jsonl must not name a file the run reads (a camera or microphone file, the config, a bundle file): opening
    it for writing would destroy that input before the run starts."""
    if not Path(jsonl).exists():
        return
    for what, path in inputs.items():
        if path is not None and Path(path).is_file() and os.path.samefile(jsonl, path):
            raise UsageError(f"--jsonl {jsonl} is the run's {what}; write the JSONL to another file.")


def run(args: argparse.Namespace) -> int:
    cfg = load_runtime_config(args.config)
    if args.jsonl is not None:
        bundle_dir = Path(args.bundle) if args.bundle else default_bundle()
        refuse_output_over_input(args.jsonl, {"--camera file": args.camera, "--mic file": args.mic,
                                              "--config file": args.config, "demo recording": RECORDING,
                                              **{f"bundle file {f.name}": f for f in sorted(bundle_dir.glob("*"))}})
    if args.demo:
        if args.camera or args.mic:
            raise UsageError("--demo brings its own stream; leave out --camera and --mic.")
        return run_demo(args, cfg, _load_bundle(args.bundle))
    if args.camera is None and args.mic is None:
        raise UsageError("give a sensor with --camera and/or --mic (e.g. --camera 0 --mic default), or run "
                         "`karmma-live --demo` for the built-in demo stream.")
    view = start_view(args.serve, args.serve_token)  # binds now: a port in use stops the run before it starts
    bundle = _load_bundle(args.bundle)
    video = open_sensor(camera_source(args.camera or "none", args.realtime), warn)
    try:
        audio = open_sensor(mic_source(args.mic or "none", bundle.preprocess.audio_sample_rate,
                                       cfg.capture.mic_block_s, args.realtime), warn)
    except SourceError:
        if video.source is not None:
            video.source.close()
        raise
    core = recognizer_for(bundle, cfg, video, audio)
    sinks = standard_sinks(args.jsonl, sys.stderr.isatty(), cfg, core)
    overlay = None
    if args.display and _display_available():
        overlay = OverlaySink(core)
        sinks.append(overlay)
    if view is not None:
        sinks.append(view.sink(core))
    try:
        outcome = run_session(bundle, cfg, video, audio, sinks, realtime=args.realtime, duration_s=args.duration,
                              core=core, signals=True, on_start=overlay.bind if overlay else None)
    finally:
        close_view(view)
    print(format_summary(outcome.summary), flush=True)
    return exit_status(outcome)


def _display_available() -> bool:
    if os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"):
        return True
    warn("--display needs a graphical display (DISPLAY is not set); running without the overlay.")
    return False


def main(argv: list[str] | None = None, prog: str = "karmma-live") -> int:
    """Parse, run, and turn every bad input into one sentence and exit code 2."""
    args = build_parser(prog).parse_args(argv)
    try:
        return run(args)
    except EdgeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # stdout closed early (e.g. piped into `head`): the run itself is done
        sys.stdout = open(os.devnull, "w")
        return 0
    except KeyboardInterrupt:  # Ctrl-C before the session started (while loading): nothing to flush
        print("interrupted before the recognizer started.", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
