"""`python -m calibration quantize --bundle DIR [--dataset NAME] [--data-root R] [--out DIR]`: fp32 bundle ->
int8 bundle + report.

Clips are the val and test splits of --dataset: by default the trainer's MovingDigits-AV (the same
rendered-clip cache and data settings as `python -m trainer benchmark`), or any dataset the trainer reads
(`--dataset recordings --data-root R`: your own takes, for a fine-tuned bundle). The first --calib-clips val
clips calibrate the int8 ranges (their inputs only, no labels), the whole val split chooses the format and fits
the temperatures, and the test split measures retention and ECE.
The bundle is written only when it meets the targets (or with --write-anyway); exit 1 when it does not.
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

from edge.errors import EdgeError


def _parser() -> argparse.ArgumentParser:
    from trainer.__main__ import DEFAULT_CACHE, add_dataset_args

    ap = argparse.ArgumentParser(prog="python -m calibration", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True)
    q = sub.add_parser("quantize", help="int8 static quantization, accuracy retention and temperature scaling")
    q.add_argument("--bundle", required=True, type=Path, help="fp32 bundle folder")
    q.add_argument("--out", type=Path, help="int8 bundle folder (default: the bundle's path + '_int8')")
    add_dataset_args(q)
    q.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help=f"rendered-clip cache (default {DEFAULT_CACHE})")
    q.add_argument("--config", type=Path, help="trainer YAML whose data section (counts, seed, levels) renders clips")
    q.add_argument("--calib-clips", type=int, default=128, help="val clips used as calibration data (default 128)")
    q.add_argument("--encoder-inputs", type=int, default=512,
                   help="calibration inputs per encoder, drawn from those clips' frames / windows (default 512)")
    q.add_argument("--masks-per-clip", type=int, default=4,
                   help="random missing-modality masks per calibration clip for the fusion (default 4)")
    q.add_argument("--max-action-loss", type=float, default=1.0, help="points of action accuracy int8 may lose")
    q.add_argument("--max-size-ratio", type=float, default=0.30, help="int8 / fp32 file size allowed")
    q.add_argument("--timing-repetitions", type=int, default=300, help="timed calls per quantization variant")
    q.add_argument("--method", choices=("minmax", "percentile"), default="minmax",
                   help="activation ranges: min/max of the calibration inputs, or their 99.999th percentile")
    q.add_argument("--seed", type=int, default=0)
    q.add_argument("--report", type=Path, help="report path stem: writes STEM.json and STEM.md "
                                               "(default runs/calibration/<out folder name>)")
    q.add_argument("--write-anyway", action="store_true", help="write the int8 bundle even when it misses a target")
    return ap


def _quantize(args: argparse.Namespace) -> int:
    from calibration.data import dataset_splits
    from calibration.pipeline import Splits
    from edge.bundle import load_bundle
    from trainer.__main__ import dataset_spec
    from trainer.config import load_config
    from trainer.data.sources import load_clips, resolve_source
    from trainer.data.registry import MOVING_DIGITS

    if args.calib_clips < 1 or args.encoder_inputs < 1 or args.masks_per_clip < 1:
        raise EdgeError("--calib-clips, --encoder-inputs and --masks-per-clip must be at least 1.")
    options = dataset_spec(args).options
    if args.dataset == MOVING_DIGITS and options:   # as the trainer: it renders its clips, reads no media
        raise EdgeError(f"--dataset {MOVING_DIGITS} takes no media options "
                        f"({', '.join('--' + k.replace('_', '-') for k in options)}); its clip counts are the "
                        "config's data.n_val / data.n_test.")
    bundle = load_bundle(args.bundle)
    pre = bundle.preprocess
    out = args.out or args.bundle.with_name(args.bundle.name + "_int8")
    cfg = load_config(args.config)
    if args.dataset != MOVING_DIGITS:
        val, test = dataset_splits(args, bundle, cfg)
        info = {"dataset": args.dataset, **val.source, "calibration_split": "val"}
        return _run(args, out, Splits(calib=val.take(slice(0, args.calib_clips)), val=val, test=test), info,
                    f"val samples 0..{min(args.calib_clips, len(val)) - 1} of {len(val)}")
    source = resolve_source(args.data_root)
    if cfg.data.n_val < args.calib_clips:
        raise EdgeError(f"--calib-clips {args.calib_clips} is more than the {cfg.data.n_val} val clips.")
    info = {"dataset": "MovingDigits-AV", "data_source": source.describe(),
            "data": source.identity(), "data_seed": cfg.data.seed,
            "levels": source.levels_dict(cfg.data), "calibration_split": "val", **{
                f"{s}_split": source.split_info(s) for s in ("val", "test")}}
    val = replace(load_clips(source, "val", cfg.data.n_val, cfg.data, pre, args.cache), source=info)
    test = replace(load_clips(source, "test", cfg.data.n_test, cfg.data, pre, args.cache), source=info)
    k = args.calib_clips
    return _run(args, out, Splits(calib=val.take(slice(0, k)), val=val, test=test), info,
                f"val clips 0..{k - 1} of {cfg.data.n_val}")


def _run(args: argparse.Namespace, out: Path, splits, info: dict, calibration_clips: str) -> int:
    """Calibrate on `splits`, write the report; 0 when the int8 bundle meets the targets, else 1."""
    from calibration.pipeline import Targets, calibrate
    from calibration.report import markdown

    info["calibration_clips"] = calibration_clips
    report = calibrate(args.bundle, splits, out, encoder_inputs=args.encoder_inputs,
                       masks_per_clip=args.masks_per_clip, seed=args.seed, timing_repetitions=args.timing_repetitions,
                       targets=Targets(args.max_action_loss, args.max_size_ratio), source=info,
                       write_anyway=args.write_anyway, method=args.method, log=lambda msg: print(msg, flush=True))
    stem = args.report or Path("runs/calibration") / out.name
    stem.parent.mkdir(parents=True, exist_ok=True)
    stem.with_suffix(".json").write_text(json.dumps(report, indent=1))
    text = markdown(report)
    stem.with_suffix(".md").write_text(text)
    print(text)
    print(f"report: {stem.with_suffix('.json')} and {stem.with_suffix('.md')}")
    met = all(report["targets"]["met"].values())
    if not met:
        what = f"wrote it anyway to {out}" if report["written"] else "the bundle was not written"
        print(f"the int8 model misses a target; {what}.", file=sys.stderr)
    return 0 if met else 1


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return _quantize(args)
    except EdgeError as exc:
        print(f"calibration: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
