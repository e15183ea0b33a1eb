"""`python -m edge.record`: record your own actions into a `recordings` dataset folder.

    python -m edge.record --camera 0 --mic default --plan plan.yaml --out ~/recordings
    python -m edge.record --camera 0 --mic default --plan plan.yaml --out ~/recordings --free

Every bad input (plan, output folder, sensor) is one sentence and exit code 2; a full disk mid-session is one
sentence and exit code 1 with every finished take kept; Ctrl-C keeps the finished takes (exit 0).
"""
from __future__ import annotations

import argparse
import json
import signal
import sys

from edge.errors import EdgeError


class UsageError(EdgeError):
    """A command line that cannot run."""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m edge.record", description="Record your own actions (camera + "
                                "microphone) into one media file per session and the recordings dataset's CSVs.")
    p.add_argument("--camera", default="none", help="camera index, device path, stream URL, media file, or none")
    p.add_argument("--mic", default="none", help="microphone name, index or default, a media file, or none")
    p.add_argument("--plan", required=True, help="recording plan (YAML: actions, takes, splits)")
    p.add_argument("--out", required=True, help="output folder (train.csv, val.csv, test.csv, labels.json, media/)")
    p.add_argument("--free", action="store_true", help="free-running: keys mark segments while recording")
    p.add_argument("--yes", action="store_true", help="guided takes follow each other on the timer, no Enter")
    p.add_argument("--rate", type=int, default=16000, help="microphone sample rate (default 16000)")
    p.add_argument("--fps", type=float, help="frame rate stated in the file (default: the source's, else 30)")
    p.add_argument("--quality", type=int, default=3, help="MJPEG quantizer, 2 (best) to 31 (default 3)")
    p.add_argument("--duration", type=float, help="stop after this many seconds")
    p.add_argument("--stats-json", help="write the session summary as JSON to this file")
    pace = p.add_mutually_exclusive_group()
    pace.add_argument("--realtime", dest="realtime", action="store_true", default=True,
                      help="media files play at their own speed (default)")
    pace.add_argument("--fast", dest="realtime", action="store_false",
                      help="media files as fast as the CPU allows; timers run on media time")
    return p


def _open_sources(args):
    from edge.record.sensors import NoAudioStream, make_sources

    video, audio = make_sources(args.camera, args.mic, args.rate, 0.02, args.realtime)
    if video is None and audio is None:
        raise UsageError("give a sensor to record with --camera and/or --mic (e.g. --camera 0 --mic default).")
    if not args.realtime and any(s is not None and not s.is_file for s in (video, audio)):
        raise UsageError("--fast plays media files; a live camera or microphone records in real time.")
    opened = []
    try:
        for s in (video, audio):
            if s is None:
                continue
            try:
                s.open()
            except NoAudioStream as exc:
                print(f"warning: {exc.args[0].replace('running with audio (A) missing', 'recording video only')}",
                      file=sys.stderr)
                audio = None
                continue
            opened.append(s)
    except BaseException:
        for s in opened:
            s.close()
        raise
    if video is None and audio is None:
        raise UsageError("nothing to record: the microphone's media file has no audio and there is no camera.")
    fps = args.fps or (video.rate if video is not None else None) or 30.0  # the rate the camera or file states
    return video, audio, fps


def run(args) -> int:
    from edge.record.folder import OutputFolder
    from edge.record.plan import load_plan
    from edge.record.keys import KeyReader
    from edge.record.recorder import Recorder

    if args.duration is not None and args.duration <= 0:
        raise UsageError(f"--duration must be positive, got {args.duration}.")
    if not 2 <= args.quality <= 31:
        raise UsageError(f"--quality must be from 2 to 31, got {args.quality}.")
    if args.rate <= 0:
        raise UsageError(f"--rate must be positive, got {args.rate}.")
    plan = load_plan(args.plan)
    folder = OutputFolder(args.out)
    counts = folder.counts()  # a foreign CSV is refused before any sensor opens
    if not args.free and all(counts.get((a.verb, a.noun), 0) >= a.takes for a in plan.actions):
        print(f"the plan is complete: all {plan.total_takes} takes are recorded in {folder.root}; nothing to do.")
        return 0
    video, audio, fps = _open_sources(args)
    keys = None
    if args.free or not args.yes:
        keys = KeyReader()
        keys.start()
    recorder = Recorder(plan, folder, video, audio, realtime=args.realtime, interactive=not args.yes and not args.free,
                        free=args.free, duration_s=args.duration, fps=fps, quality=args.quality, keys=keys)

    def stop(signum, frame):
        recorder.request_stop()

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    try:
        summary = recorder.run()
    finally:
        if keys is not None:
            keys.restore()
    if args.stats_json:
        with open(args.stats_json, "w") as f:
            json.dump(summary, f, indent=1)
    before = summary["takes_recorded_before"]
    kept = summary["takes_kept"]
    total = before + kept
    if recorder.failure is not None:
        print(f"error: {str(recorder.failure).rstrip('.')}: recording stopped, and every take whose media reached the disk is kept "
              f"({total} in all, {kept} in {summary['media']}); free some space and run the same command again to "
              "resume.", file=sys.stderr)
        return 1
    print(f"kept {kept} take(s) in {summary['media']} ({total} of {summary['takes_total']} planned recorded; "
          f"{summary['takes_lost']} lost and asked again); {summary['frames_written']} frames, "
          f"{summary['samples_written']} audio samples written, {summary['frames_dropped']} frames and "
          f"{summary['samples_dropped']} samples dropped.")
    if summary["interrupted"] and not args.free and total < summary["takes_total"]:
        print("interrupted: run the same command again to resume the plan.")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return run(args)
    except EdgeError as exc:
        from edge.record.sensors import without_demo_hint

        print(f"error: {without_demo_hint(str(exc))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted before recording started.", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
