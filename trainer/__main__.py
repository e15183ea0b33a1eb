"""python -m trainer benchmark | teacher | student | finetune | crossval | evaluate  (docs/RESULTS.md,
docs/DATASETS.md and docs/OWN_ACTIONS.md)."""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

from edge.errors import EdgeError
from trainer.config import CONFIG_DIR, cache_root

DEFAULT_CACHE = cache_root()


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m trainer", description=__doc__)
    sub = ap.add_subparsers(dest="command", required=True)

    for name, text in (("benchmark", "the teacher and Baseline, Baseline w/ delta, KARMMA_S x seeds; the subset table, "
                                      "drop curve, costs; results.json/.md, drop_curve.png and two bundles"),
                       ("teacher", "pre-train + freeze the extractors, cache their tokens, train the fusion (then both, with teacher.end_to_end_epochs)"),
                       ("student", "the teacher (or resume it from --out), then distil KARMMA_S; export bundles")):
        t = sub.add_parser(name, help=f"{text} on --dataset (runs under torchrun too)")
        _run_args(t, "run folder (checkpoints, token caches, results, bundles); the same --out resumes")
        t.add_argument("--cache", type=Path, default=DEFAULT_CACHE,
                       help=f"rendered MovingDigits-AV clips (default $KARMMA_CACHE or {DEFAULT_CACHE})")
        t.add_argument("--eval-split", default="test", help="split scored at the end (default test; tune on val, "
                                                            "never on test)")
        t.add_argument("--freeze-bn", action="store_true",
                       help="BatchNorm on running statistics: N processes then train exactly as one on CPU")
        t.add_argument("--device", choices=("cpu", "cuda"), help="default: cuda:LOCAL_RANK when available")
        if name == "benchmark":
            t.add_argument("--seeds", type=int, default=1, help="student seeds (mean and spread reported when > 1)")
            t.add_argument("--jobs", type=int, default=1,
                           help="trainings run side by side in this many processes of --threads each (default 1; "
                                "2 on a 2-core CPU: about half the wall time)")

    f = sub.add_parser("finetune", help="teach a bundle's student a new label set from --dataset (new heads; "
                                        "encoders and missing-modality tokens from the bundle); exports a bundle")
    _run_args(f, "run folder: checkpoints, finetune/results.json and the bundle OUT/bundle; the same --out resumes")
    f.add_argument("--from", dest="source", type=Path, metavar="BUNDLE", default=None,
                   help="fp32 bundle exported by this trainer (holds weights.pt; default: the shipped student, "
                        "assets/bundles/karmma_s)")
    f.add_argument("--eval-splits", nargs="*", default=None, metavar="SPLIT",
                   help="splits scored per modality subset (default: val and test, those that exist; none: "
                        "--eval-splits alone)")
    f.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="default cpu")
    f.add_argument("--name", help="the fine-tuned bundle's name (default: the dataset folder's name)")
    f.add_argument("--backbone", metavar="torchvision:ARCH:PATH",
                   help="a new video encoder: a torchvision network with a local state-dict file (e.g. "
                        "torchvision:mobilenet_v3_small:mobilenet.pth); same as --set finetune.backbone=...")

    c = sub.add_parser("crossval", help="the finetune learner against nearest-class-mean and 1-nearest-neighbour "
                                        "baselines on the same folds of your takes (every split file pooled)")
    _run_args(c, "work folder for the folds' checkpoints (default: a temporary folder, removed at the end)",
              out_required=False)
    c.add_argument("--from", dest="source", type=Path, metavar="BUNDLE", default=None,
                   help="fp32 bundle the learner starts from (default: the shipped student)")
    how = c.add_mutually_exclusive_group()
    how.add_argument("--folds", type=int, default=5, help="folds by take, stratified by action (default 5)")
    how.add_argument("--leave-one-out", action="store_true", help="one fold per take (or group)")
    c.add_argument("--seeds", type=int, default=1, help="learner trainings per fold, seeds 0..N-1 (default 1)")
    c.add_argument("--verbs", help="only the takes of these verbs, comma-separated (e.g. jump,run)")
    c.add_argument("--json", action="store_true", help="print the JSON report instead of the table")
    c.add_argument("--png", type=Path, help="draw the confusion matrices here")
    c.add_argument("--bundles", type=Path, help="also write each fold's learner (seed 0) as DIR/foldK/bundle, with "
                                                "DIR/foldK/held_out.csv: the takes it never saw, to run live")

    e = sub.add_parser("evaluate", help="score an exported bundle with ONNX Runtime")
    e.add_argument("--bundle", required=True, type=Path)
    add_dataset_args(e)
    e.add_argument("--split", default="test", help="split to score (default test)")
    e.add_argument("--workers", type=int, default=0, help="DataLoader processes reading a real dataset")
    e.add_argument("--speakers", nargs="+", help="FSDD speakers to evaluate on (overrides the split's)")
    e.add_argument("--images", help="MNIST image range START:STOP (overrides the split's)")
    e.add_argument("--n-clips", type=int, default=1000)
    e.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    e.add_argument("--config", type=Path, help="trainer YAML whose data section (seed, levels) renders the clips")
    e.add_argument("--json", type=Path, help="also write the scores here")
    e.add_argument("--threads", type=int, default=1, help="ONNX Runtime threads")
    return ap


def _run_args(p: argparse.ArgumentParser, out_help: str, out_required: bool = True) -> None:
    """What every training command takes: the dataset, --out, the config and its overrides, threads."""
    add_dataset_args(p)
    p.add_argument("--out", required=out_required, type=Path, help=out_help)
    p.add_argument("--config", type=Path, help="trainer YAML overriding the defaults of trainer/config.py (default "
                                               "assets/configs/trainer.yaml, trainer_smoke.yaml with --smoke)")
    p.add_argument("--set", action="extend", nargs="+", default=[], metavar="SECTION.KEY=VALUE",
                   help="override config values (e.g. --set batch_size=256 data.workers=8 finetune.epochs=10)")
    p.add_argument("--smoke", action="store_true", help="the tiny smoke configuration (every stage in < 1 minute)")
    p.add_argument("--train-split", default="train", help="split trained on (default train; EPIC and SSv2: "
                                                          "90%% of the train list, train-full: all of it)")
    p.add_argument("--threads", type=int, default=1, help="torch threads per process (default 1: on a shared "
                                                          "CPU, more threads oversubscribe and run slower)")


def _config(args: argparse.Namespace):
    from trainer.config import load_config

    return load_config(args.config or CONFIG_DIR / ("trainer_smoke.yaml" if args.smoke else "trainer.yaml"), args.set)


def add_dataset_args(p: argparse.ArgumentParser) -> None:
    """--dataset, --data-root and the media options (trainer and calibration commands)."""
    from trainer.data.registry import DATASET_NAMES, MOVING_DIGITS

    p.add_argument("--dataset", default=MOVING_DIGITS, choices=DATASET_NAMES, help=f"default {MOVING_DIGITS}")
    p.add_argument("--data-root", help="data root (MovingDigits-AV: MNIST + FSDD, default $KARMMA_DATA_ROOT or "
                                       "../shared/data; real datasets: required)")
    p.add_argument("--annotations", help="annotation folder of a real dataset (default: under --data-root)")
    p.add_argument("--media-root", help="media folder of EPIC-KITCHENS or Something-Something (default: under "
                                        "--data-root)")
    p.add_argument("--layout", choices=("frames", "video"), help="EPIC-KITCHENS media layout (default frames)")
    p.add_argument("--flow-source", choices=("recompute", "epic"),
                   help="EPIC-KITCHENS flow: recomputed from RGB (default) or its u/v JPEGs")
    p.add_argument("--limit", type=int, help="only the first LIMIT annotation rows of each split")


def dataset_spec(args: argparse.Namespace):
    """The DatasetSpec the dataset arguments name."""
    from trainer.data.registry import DatasetSpec

    if args.limit is not None and args.limit < 1:
        raise EdgeError(f"--limit must be at least 1, got {args.limit}.")
    options = {k: getattr(args, k) for k in ("annotations", "media_root", "layout", "flow_source", "limit")
               if getattr(args, k) is not None}
    return DatasetSpec(args.dataset, args.data_root, options)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command in ("benchmark", "teacher", "student"):
            return _train(args)
        if args.command == "finetune":
            return _finetune(args)
        if args.command == "crossval":
            return _crossval(args)
        if args.dataset != "moving-digits":
            return _evaluate_dataset(args)
        return _evaluate(args)
    except EdgeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _train(args: argparse.Namespace) -> int:
    import logging

    import torch

    from trainer import distributed as ddp
    from trainer.benchmark import run_benchmark
    from trainer.loop import Run
    from trainer.stages import run_student, run_teacher

    if getattr(args, "seeds", 1) < 1:
        raise EdgeError("--seeds must be at least 1.")
    if getattr(args, "jobs", 1) < 1:
        raise EdgeError("--jobs must be at least 1.")
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(max(1, args.threads))
    cfg = _config(args)
    spec = dataset_spec(args)
    info = ddp.init(device=args.device)
    try:
        run = Run(spec, cfg, args.out, info, train_split=args.train_split, eval_split=args.eval_split,
                  freeze_bn=args.freeze_bn, seed=cfg.data.seed, cache=args.cache)
        if args.command == "benchmark":
            results = run_benchmark(run, seeds=args.seeds, jobs=args.jobs)
            if info.is_main:
                print((args.out / "results.md").read_text())
                print(f"wrote {args.out / 'results.json'}, results.md, drop_curve.png and bundles/ "
                      f"({results['wall_time_s'] / 60:.1f} min)")
        else:
            (run_teacher if args.command == "teacher" else run_student)(run)
    except BaseException:
        ddp.shutdown(failed=True)
        raise
    ddp.shutdown()
    return 0


def _finetune(args: argparse.Namespace) -> int:
    import logging
    import time

    import torch

    from trainer import distributed as ddp
    from trainer.finetune import run_finetune
    from trainer.loop import Run

    start = time.time()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(max(1, args.threads))
    cfg = _config(args)
    if args.backbone:
        cfg = replace(cfg, finetune=replace(cfg.finetune, backbone=args.backbone))
    run = Run(dataset_spec(args), cfg, args.out, ddp.DistInfo(device=torch.device(args.device)),
              train_split=args.train_split, seed=cfg.data.seed)
    from edge.assets import default_bundle

    run_finetune(run, args.source or default_bundle("fp32"), args.eval_splits, args.out / "bundle",
                 name=args.name)
    print(f"wrote {args.out / 'bundle'} and {args.out / 'finetune' / 'results.json'}; "
          f"wall time {time.time() - start:.1f} s ({(time.time() - start) / 60:.1f} min)")
    return 0


def _crossval(args: argparse.Namespace) -> int:
    import json
    import tempfile

    import torch

    from edge.assets import default_bundle
    from trainer import distributed as ddp
    from trainer.crossval import format_report, plot_confusions, run_crossval
    from trainer.data.registry import REAL_DATASETS
    from trainer.loop import Run

    if args.dataset != "recordings" or "recordings" not in REAL_DATASETS:
        raise EdgeError("crossval reads --dataset recordings (takes of your own actions).")
    if args.seeds < 1:
        raise EdgeError(f"--seeds must be at least 1, got {args.seeds}.")
    torch.set_num_threads(max(1, args.threads))
    cfg = _config(args)
    source = args.source or default_bundle("fp32")
    log = (lambda m: print(m, file=sys.stderr, flush=True)) if args.json else print
    with tempfile.TemporaryDirectory(prefix="crossval-") as tmp:
        run = Run(dataset_spec(args), cfg, args.out or Path(tmp), ddp.DistInfo(device=torch.device("cpu")),
                  seed=cfg.data.seed, progress=False, verbose=False)
        result = run_crossval(run, source, folds=None if args.leave_one_out else args.folds, seeds=args.seeds,
                              verbs=args.verbs.split(",") if args.verbs else None, bundles=args.bundles,
                              progress=log)
    if args.png:
        plot_confusions(result, args.png)
    print(json.dumps(result, indent=1) if args.json else format_report(result))
    return 0


def _evaluate_dataset(args: argparse.Namespace) -> int:
    from edge.bundle import load_bundle
    from trainer.config import load_config
    from trainer.data.registry import build_dataset, check_bundle_labels
    from trainer.evaluation import bundle_callables
    from trainer.stages import format_scores, score_tokens
    from trainer.data.token_cache import dataset_tokens

    bundle = load_bundle(args.bundle, threads=max(1, args.threads))
    cfg = load_config(args.config)
    dataset = build_dataset(dataset_spec(args), args.split, train=False, data=cfg.data, pre=bundle.preprocess)
    check_bundle_labels(bundle, dataset, args.dataset)
    encode, fuse = bundle_callables(bundle)
    tokens = dataset_tokens(encode, dataset, dims=dict(bundle.manifest["token_dim"]), batch_size=cfg.batch_size,
                            workers=args.workers, desc=f"{args.dataset} {args.split} tokens")
    result = {"model": bundle.manifest["name"], "dataset": args.dataset, "eval_split": args.split,
              **score_tokens(fuse, tokens, cfg.eval)}
    print(format_scores(result))
    if dataset.skips is not None and dataset.skips.total:
        print(dataset.skips.summary(kept=len(dataset)))
    if args.json:
        args.json.write_text(json.dumps({"bundle": str(args.bundle), **result}, indent=1))
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from edge.bundle import load_bundle
    from trainer.config import load_config
    from trainer.data.sources import load_clips, resolve_source
    from trainer.evaluation import bundle_callables
    from trainer.stages import score_tokens
    from trainer.data.token_cache import dataset_tokens

    bundle = load_bundle(args.bundle, threads=max(1, args.threads))
    cfg = load_config(args.config)
    source = resolve_source(args.data_root)
    clips = load_clips(source, args.split, args.n_clips, cfg.data, bundle.preprocess, args.cache,
                       speakers=args.speakers, images=args.images)
    encode, fuse = bundle_callables(bundle)
    tokens = dataset_tokens(encode, clips, dims=dict(bundle.manifest["token_dim"]), batch_size=cfg.batch_size,
                            workers=0, desc=f"{args.split} tokens")
    scores = score_tokens(fuse, tokens, cfg.eval)
    table, curve = scores["table"], scores["curve"]
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
