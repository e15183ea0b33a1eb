"""Command line: render a MovingDigits-AV session to .mkv + .json, or a contact sheet of clips to .png.

    python -m edge.moving_digits session --out runs/demo.mkv [--data-root R] [--split test] [--n-actions 10]
        [--bundle assets/bundles/karmma_s]   (render at the levels that bundle was trained with)
    python -m edge.moving_digits session --own-actions --out runs/own.mkv [--split test]   (the 5 new actions)
    python -m edge.moving_digits sheet --out runs/sheet.png [--data-root R] [--split val]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

from edge.errors import EdgeError
from edge.moving_digits.config import load_config, session_levels
from edge.moving_digits.own_actions import render_own_session, write_own_session
from edge.moving_digits.render import NOUNS, VERBS, render_clip
from edge.moving_digits.session import render_session, write_session
from edge.assets import default_data_root
from edge.moving_digits.sources import load_sources
from edge.moving_digits.splits import make_split


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m edge.moving_digits", description=__doc__.splitlines()[0])
    ap.add_argument("command", choices=("session", "sheet"))
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--data-root", type=Path, default=None,
                    help="MNIST + FSDD root (default: $KARMMA_DATA_ROOT or ../shared/data; procedural without)")
    ap.add_argument("--split", default="test", help="train | val | test (default test: unseen speakers and images)")
    ap.add_argument("--speakers", nargs="+", default=None, help="override the split's FSDD speakers")
    ap.add_argument("--images", default=None, help="override the split's MNIST image range START:STOP")
    ap.add_argument("--config", type=Path, default=None,
                    help="levels/splits YAML (default assets/configs/moving_digits.yaml)")
    ap.add_argument("--bundle", type=Path, default=None,
                    help="render at the nuisance levels this bundle was trained with (as run_live.py --demo does) "
                         "instead of the config's")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--n-actions", type=int, default=10)
    ap.add_argument("--own-actions", action="store_true",
                    help="session of the 5 actions the shipped model has never seen (new motions and symbols)")
    args = ap.parse_args(argv)
    try:
        if args.data_root is not None and not args.data_root.is_dir():
            raise EdgeError(f"data root {args.data_root} does not exist.")
        cfg = load_config(args.config)
        levels, levels_from = cfg.levels, "config levels"
        if args.bundle is not None:
            from edge.bundle import load_bundle

            levels, levels_from = session_levels(load_bundle(args.bundle))
        if args.command == "session" and args.own_actions:   # synthesized symbols and sounds: no digit sources
            session = render_own_session(args.split, args.seed, args.n_actions, levels)
            json_path = write_own_session(session, args.out)
            print(f"wrote {args.out} ({session.duration_s:.1f} s, {len(session.segments)} own actions, "
                  f"{levels_from}) and {json_path}")
            return 0
        split = make_split(args.split, args.speakers, args.images, cfg.splits)
        sources = load_sources(args.data_root or default_data_root(), list(split.speakers), split.images)
        if args.command == "session":
            session = render_session(sources, args.seed, args.n_actions, levels)
            json_path = write_session(session, args.out)
            print(f"wrote {args.out} ({session.duration_s:.1f} s, {len(session.segments)} actions, "
                  f"{sources.source} source, {levels_from}) and {json_path}")
        else:
            rows = []
            for verb in range(len(VERBS)):
                rng = np.random.default_rng([args.seed, verb])
                clip = render_clip(sources, rng, verb, int(rng.integers(len(NOUNS))), levels)
                strip = np.concatenate(list(clip.frames[clip.lead_in_frames::8][:8]), axis=1)
                cv2.putText(strip, VERBS[verb], (3, 12), cv2.FONT_HERSHEY_PLAIN, 0.9, (255, 255, 255), 1, cv2.LINE_AA)
                rows.append(strip)
            args.out.parent.mkdir(parents=True, exist_ok=True)
            if not cv2.imwrite(str(args.out), cv2.cvtColor(np.concatenate(rows), cv2.COLOR_RGB2BGR)):
                raise EdgeError(f"cannot write {args.out} (is the extension .png?).")
            print(f"wrote {args.out} (one row per verb, every 8th frame, {sources.source} source)")
    except EdgeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
