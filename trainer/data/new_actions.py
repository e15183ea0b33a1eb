"""A `recordings` folder of the five own actions (edge/moving_digits/own_actions.py: new motions, symbols and
sounds the shipped bundle never saw), rendered straight to files: what `python -m edge.bench own-actions` records
from the devices, without the devices, for measuring fine-tuning offline.

Takes are written as `python -m edge.record` writes them: sessions (`media/*.mkv`) and one CSV row per take
(`media,start,end,verb,noun`) per split, the take running `margin_s` before and after the action. Split s draws
its voices and images from the own actions' split s (held-out splits share none with train).

    python -m trainer.data.new_actions --out DIR [--train 10 --val 3 --test 3] [--seed 0]
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import numpy as np

from edge.moving_digits.own_actions import OWN_ACTIONS, plan_own_session
from edge.moving_digits.session import Session, write_session


def _render(split: str, seed: int, actions: list[int], levels, duration_s: float) -> Session:
    """A session of own actions `actions` in this order, idle gaps of 0.4-1.0 s around them."""
    gaps = [float(g) for g in np.random.default_rng([seed, 1]).uniform(0.4, 1.0, len(actions) + 1)]
    plan = plan_own_session(split, seed, actions, gaps, levels, duration_s=duration_s)
    return Session(plan.frames(range(plan.n_frames)), plan.audio(), plan.fps, plan.sample_rate, plan.segments,
                   f"own actions ({split})", seed)


def write_new_actions(out: Path, takes: dict[str, int], *, levels=None, seed: int = 0, per_session: int = 5,
                      duration_s: float = 2.0, margin_s: float = 0.25) -> Path:
    """Render `takes[split]` takes of each own action per split into the recordings folder `out`."""
    from trainer.config import load_config
    from trainer.data.sources import resolve_source

    levels = levels or resolve_source(None).levels(load_config().data)   # the bundle's training levels
    out.mkdir(parents=True, exist_ok=True)
    for s_index, (split, n) in enumerate(takes.items()):
        rng = np.random.default_rng([seed, s_index])
        todo = [a for a in range(len(OWN_ACTIONS)) for _ in range(n)]
        rng.shuffle(todo)
        rows = []
        for k in range(0, len(todo), per_session):
            session = _render(split, int(rng.integers(2 ** 31)), todo[k:k + per_session], levels, duration_s)
            media = Path("media") / f"{split}-{k // per_session:03d}.mkv"
            write_session(session, out / media)
            for seg in session.segments:
                verb, noun = OWN_ACTIONS[seg.verb]
                rows.append({"media": media.as_posix(), "start": round(max(0.0, seg.start_s - margin_s), 3),
                             "end": round(min(session.duration_s, seg.end_s + margin_s), 3), "verb": verb,
                             "noun": noun})
        with open(out / f"{split}.csv", "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=["media", "start", "end", "verb", "noun"])
            writer.writeheader()
            writer.writerows(rows)
    (out / "labels.json").write_text(json.dumps({"verb": [v for v, _ in OWN_ACTIONS],
                                                 "noun": [n for _, n in OWN_ACTIONS]}))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m trainer.data.new_actions", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, type=Path)
    for split, n in (("train", 10), ("val", 3), ("test", 3)):
        ap.add_argument(f"--{split}", type=int, default=n, help=f"takes per action in {split} (default {n})")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    write_new_actions(args.out, {"train": args.train, "val": args.val, "test": args.test}, seed=args.seed)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
