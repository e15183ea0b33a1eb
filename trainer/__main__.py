"""python -m trainer benchmark | evaluate  (see README, "Trainer and results")."""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from edge.errors import EdgeError
from trainer.config import CONFIG_DIR

DEFAULT_CACHE = Path(os.environ.get("KARMMA_CACHE", Path.home() / ".cache" / "karmma"))


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m trainer", description=__doc__)
    sub = ap.add_subparsers(dest="command", required=True)

    b = sub.add_parser("benchmark", help="train teacher + Baseline, Baseline w/ delta, KARMMA_S; evaluate; export")
    b.add_argument("--data-root", help="MNIST + FSDD root (default $KARMMA_DATA_ROOT or ../shared/data; "
                                       "procedural source when absent)")
    b.add_argument("--out", required=True, type=Path, help="output folder (results, checkpoints, bundles)")
    b.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help=f"rendered-clip cache (default {DEFAULT_CACHE})")
    b.add_argument("--config", type=Path, help="trainer YAML (default assets/configs/trainer.yaml, "
                                               "trainer_smoke.yaml with --smoke)")
    b.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE", help="override a config value")
    b.add_argument("--seeds", type=int, default=1, help="student seeds (mean and spread reported when > 1)")
    b.add_argument("--smoke", action="store_true", help="tiny run (< 1 minute) that exercises every stage")
    b.add_argument("--eval-split", default="test", choices=("test", "val"),
                   help="split the table is computed on (tune on val, never on test)")
    b.add_argument("--threads", type=int, default=1,
                   help="torch threads (default 1: on a shared CPU, more threads oversubscribe and run slower)")

    e = sub.add_parser("evaluate", help="score an exported bundle with ONNX Runtime")
    e.add_argument("--bundle", required=True, type=Path)
    e.add_argument("--data-root")
    e.add_argument("--split", default="test", help="split name from moving_digits.yaml (default test)")
    e.add_argument("--speakers", nargs="+", help="FSDD speakers to evaluate on (overrides the split's)")
    e.add_argument("--images", help="MNIST image range START:STOP (overrides the split's)")
    e.add_argument("--n-clips", type=int, default=1000)
    e.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    e.add_argument("--config", type=Path, help="trainer YAML whose data section (seed, levels) renders the clips")
    e.add_argument("--json", type=Path, help="also write the scores here")
    e.add_argument("--threads", type=int, default=1, help="ONNX Runtime threads")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "benchmark":
            return _benchmark(args)
        return _evaluate(args)
    except EdgeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _benchmark(args: argparse.Namespace) -> int:
    from trainer.benchmark import run_benchmark
    from trainer.config import load_config
    from trainer.data_access import resolve_source

    if args.seeds < 1:
        print("error: --seeds must be at least 1.", file=sys.stderr)
        return 2
    import torch

    torch.set_num_threads(max(1, args.threads))
    config = args.config or CONFIG_DIR / ("trainer_smoke.yaml" if args.smoke else "trainer.yaml")
    cfg = load_config(config, args.set)
    results = run_benchmark(cfg, resolve_source(args.data_root), args.out, args.cache, seeds=args.seeds,
                            eval_split=args.eval_split)
    print((args.out / "results.md").read_text())
    print(f"wrote {args.out / 'results.json'}, results.md, drop_curve.png and bundles/ "
          f"({results['wall_time_s'] / 60:.1f} min)")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from edge.bundle import load_bundle
    from trainer.config import load_config
    from trainer.data_access import load_clips, resolve_source
    from trainer.evaluation import bundle_callables, drop_curve, subset_table
    from trainer.extractors import encode_all
    from trainer.models import MODALITIES

    bundle = load_bundle(args.bundle, threads=max(1, args.threads))
    cfg = load_config(args.config)
    source = resolve_source(args.data_root)
    clips = load_clips(source, args.split, args.n_clips, cfg.data, bundle.preprocess, args.cache,
                       speakers=args.speakers, images=args.images)
    encode, fuse = bundle_callables(bundle)
    tokens = {m: encode_all(lambda x, m=m: encode(m, x), getattr(clips, m), cfg.batch_size, f"{m} tokens")
              for m in MODALITIES}
    table = subset_table(fuse, tokens, clips.verb, clips.noun)
    curve = drop_curve(fuse, tokens, clips.verb, clips.noun, tuple(cfg.eval.drop_ps), cfg.eval.drop_repeats)
    split = source.split(args.split, args.speakers, args.images)
    print(f"{bundle.manifest['name']} ({bundle.precision}) on {source.describe()}, split {split.name}: "
          f"speakers {','.join(split.speakers)}, images {split.images[0]}:{split.images[1]}, {len(clips)} clips")
    print("subset   verb   noun  action")
    for subset, acc in table.items():
        print(f"{subset:<6} {acc['verb']:6.1f} {acc['noun']:6.1f} {acc['action']:7.1f}")
    print("random drop p: " + "  ".join(f"{p:.1f}:{a:.1f}" for p, a in curve.items()))
    if args.json:
        args.json.write_text(json.dumps({"bundle": str(args.bundle), "source": source.describe(),
                                         "split": {"speakers": list(split.speakers), "images": list(split.images)},
                                         "n_clips": len(clips), "table": table,
                                         "drop_curve": [{"p": p, "action": a} for p, a in curve.items()]}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
