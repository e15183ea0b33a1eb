"""A `recordings` folder of five actions the shipped bundle never learned by name, rendered from MovingDigits-AV:
the fine-tuning tests' and measurement's stand-in for `python -m edge.record` takes.

Each action is one (motion, digit) pair renamed (push-left + 2 -> "swipe phone", ...): every action has its own
verb and its own noun, so each of V, F and A alone can tell the action (F the motion, V and A the digit).
The encoders have seen these motions and digits, under other labels: this measures what fine-tuning does with
a new label set, not how it transfers to motions never rendered. Takes are written as `python -m edge.record`
writes them: sessions (`media/*.mkv`) and one CSV row per take (`media,start,end,verb,noun`) per split, the
take running `margin_s` before and after the action. Split s draws voices and images from MovingDigits split s.

    python -m trainer.data.new_actions --out DIR [--data-root ROOT] [--train 10 --val 3 --test 3]
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import numpy as np

from edge.moving_digits.render import VERBS
from edge.moving_digits.session import Session, plan_session, write_session
from edge.moving_digits.sources import load_sources

# (motion, digit) -> (new verb, new noun)
ACTIONS = (("push-left", 2, "swipe", "phone"), ("lift", 5, "raise", "cup"), ("rotate-cw", 7, "twist", "lid"),
           ("shake", 0, "wave", "hand"), ("lower", 9, "drop", "book"))


def _render(sources, rng: np.random.Generator, actions: list[tuple[int, int]], levels, duration_s: float) -> Session:
    """A session of `actions` (motion, digit) in this order, idle gaps of 0.4-1.0 s around them."""
    gaps = [float(g) for g in rng.uniform(0.4, 1.0, len(actions) + 1)]
    plan = plan_session(sources, rng, actions, gaps, levels, duration_s=duration_s)
    return Session(plan.frames(range(plan.n_frames)), plan.audio(), plan.fps, plan.sample_rate, plan.segments,
                   sources.source)


def write_new_actions(out: Path, takes: dict[str, int], *, data_root: Path | None = None, levels=None,
                      seed: int = 0, per_session: int = 5, duration_s: float = 2.0, margin_s: float = 0.25,
                      actions: tuple = ACTIONS) -> Path:
    """Render `takes[split]` takes of each of `actions` per split into the recordings folder `out`."""
    from trainer.config import load_config
    from trainer.data_access import resolve_source

    source = resolve_source(data_root)
    levels = levels or source.levels(load_config().data)
    out.mkdir(parents=True, exist_ok=True)
    verb_of = {(VERBS.index(m), d): (v, n) for m, d, v, n in actions}
    for s_index, (split, n) in enumerate(takes.items()):
        rng = np.random.default_rng([seed, s_index])
        part = source.split(split if split in source.config.splits else "train")
        sources = load_sources(source.root, list(part.speakers), part.images)
        todo = [key for key in verb_of for _ in range(n)]
        rng.shuffle(todo)
        rows = []
        for k in range(0, len(todo), per_session):
            session = _render(sources, rng, todo[k:k + per_session], levels, duration_s)
            media = Path("media") / f"{split}-{k // per_session:03d}.mkv"
            write_session(session, out / media)
            for seg in session.segments:
                verb, noun = verb_of[(seg.verb, seg.noun)]
                rows.append({"media": media.as_posix(), "start": round(max(0.0, seg.start_s - margin_s), 3),
                             "end": round(min(session.duration_s, seg.end_s + margin_s), 3), "verb": verb,
                             "noun": noun})
        with open(out / f"{split}.csv", "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=["media", "start", "end", "verb", "noun"])
            writer.writeheader()
            writer.writerows(rows)
    (out / "labels.json").write_text(json.dumps({"verb": [a[2] for a in actions], "noun": [a[3] for a in actions]}))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m trainer.data.new_actions", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--data-root", type=Path, help="MNIST + FSDD root (default ../shared/data, else procedural)")
    for split, n in (("train", 10), ("val", 3), ("test", 3)):
        ap.add_argument(f"--{split}", type=int, default=n, help=f"takes per action in {split} (default {n})")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    write_new_actions(args.out, {"train": args.train, "val": args.val, "test": args.test}, data_root=args.data_root,
                      seed=args.seed)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
