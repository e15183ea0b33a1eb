"""`run_live.py`: the live recognizer's command line. Every bad input ends in one sentence and exit code 2."""
from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path

from edge.bundle import Bundle, load_bundle
from edge.errors import EdgeError
from edge.live.config import DEFAULT_PATH, load_runtime_config
from edge.live.metrics import format_summary
from edge.live.pipeline import Pipeline, Sensor, warn
from edge.live.sources import (MediaAudio, MediaVideo, MicSource, NoAudioStream, OpenCVCamera, Source,
                               SourceError)
from edge.live.web import close_view, start_view

REPO = Path(__file__).resolve().parents[2]
BUNDLES = REPO / "assets" / "bundles"
DEFAULT_BUNDLES = ("karmma_s_int8", "karmma_s")
TRAIN_COMMAND = "python -m trainer benchmark --out assets"


class UsageError(EdgeError):
    """A command line that cannot run (one sentence)."""


def default_bundle() -> Path:
    """The shipped bundle: the int8 one when calibration produced it, else the fp32 one."""
    for name in DEFAULT_BUNDLES:
        if (BUNDLES / name / "bundle.yaml").is_file():
            return BUNDLES / name
    raise UsageError(f"no model bundle is shipped in {BUNDLES} yet; produce one with `{TRAIN_COMMAND}` "
                     "(it writes assets/bundles/karmma_s) or pass --bundle DIR.")


def camera_source(spec: str, realtime: bool) -> Source | None:
    """none | an index | a device path or stream URL (OpenCV) | a media file (PyAV)."""
    if spec == "none":
        return None
    if spec.isdigit():
        return OpenCVCamera(int(spec))
    if "://" in spec or spec.startswith("/dev/"):
        return OpenCVCamera(spec)
    return MediaVideo(spec, realtime=realtime)


def mic_source(spec: str, rate: int, block_s: float, realtime: bool) -> Source | None:
    """none | default | an index | a device name (sounddevice) | a media file (PyAV)."""
    if spec == "none":
        return None
    if spec == "default":
        return MicSource("default", rate, block_s)
    if spec.isdigit():
        return MicSource(int(spec), rate, block_s)
    if Path(spec).exists() or os.sep in spec or Path(spec).suffix:
        return MediaAudio(spec, rate, realtime=realtime)
    return MicSource(spec, rate, block_s)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="run_live.py", description="Live egocentric action recognition "
                                "(camera + microphone) that keeps predicting when a sensor drops out.")
    p.add_argument("--camera", help="camera index, device path, stream URL, media file, or none")
    p.add_argument("--mic", help="microphone name, index or default, a media file, or none")
    p.add_argument("--demo", action="store_true", help="run on the built-in MovingDigits demo stream, scored")
    p.add_argument("--data-root", help="real recordings for --demo (default: the procedural source)")
    p.add_argument("--bundle", help="model bundle folder (default: assets/bundles/karmma_s_int8, else karmma_s)")
    p.add_argument("--config", default=str(DEFAULT_PATH), help="runtime settings YAML")
    p.add_argument("--jsonl", help="write every prediction, event and the summary as JSON lines")
    p.add_argument("--duration", type=float, help="stop after this many seconds of stream")
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


def _open(source: Source | None) -> Sensor:
    if source is None:
        return Sensor(None, "off")
    try:
        source.open()
    except NoAudioStream as exc:
        warn(str(exc))
        return Sensor(None, "no audio stream")
    return Sensor(source)


def open_jsonl(path: str | None):
    if path is None:
        return None
    try:
        return open(path, "w")
    except OSError as exc:
        raise UsageError(f"cannot write the JSONL file {path} ({exc.strerror}).") from None


def _load_bundle(path: str | None) -> Bundle:
    return load_bundle(Path(path) if path else default_bundle(), threads=1)


def run(args: argparse.Namespace) -> int:
    if args.duration is not None and args.duration <= 0:
        raise UsageError(f"--duration must be positive, got {args.duration}.")
    cfg = load_runtime_config(args.config)
    if args.demo:
        if args.camera or args.mic:
            raise UsageError("--demo brings its own stream; leave out --camera and --mic.")
        from edge.live.demo import run_demo

        return run_demo(args, cfg, _load_bundle(args.bundle))
    if args.camera is None and args.mic is None:
        raise UsageError("give a sensor with --camera and/or --mic (e.g. --camera 0 --mic default), or run "
                         "`python run_live.py --demo` for the built-in demo stream.")
    view = start_view(args.serve, args.serve_token)  # binds now: a port in use stops the run before it starts
    bundle = _load_bundle(args.bundle)
    video = _open(camera_source(args.camera or "none", args.realtime))
    try:
        audio = _open(mic_source(args.mic or "none", bundle.preprocess.audio_sample_rate,
                                 cfg.capture.mic_block_s, args.realtime))
    except SourceError:
        if video.source is not None:
            video.source.close()
        raise
    display = args.display and _display_available()
    jsonl = open_jsonl(args.jsonl)
    pipeline = Pipeline(bundle, cfg, video, audio, realtime=args.realtime, duration_s=args.duration, jsonl=jsonl,
                        status=sys.stderr.isatty(), display=display)
    if view is not None:
        view.follow(pipeline)
    install_stop_handlers(pipeline.stop)
    try:
        summary = pipeline.run()
    finally:
        if jsonl is not None:
            jsonl.close()
        close_view(view)
    print(format_summary(summary), flush=True)
    return 0


def _display_available() -> bool:
    if os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"):
        return True
    warn("--display needs a graphical display (DISPLAY is not set); running without the overlay.")
    return False


def install_stop_handlers(stop) -> None:
    """Ctrl-C and SIGTERM ask the pipeline to stop; it then flushes the JSONL and the summary."""
    def handler(signum, frame):
        stop()

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return run(args)
    except EdgeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # stdout closed early (e.g. piped into `head`): the run itself is done
        sys.stdout = open(os.devnull, "w")
        return 0
    except KeyboardInterrupt:  # Ctrl-C before the pipeline started (while loading): nothing to flush
        print("interrupted before the recognizer started.", file=sys.stderr)
        return 130
