"""A complete distributed training run: a student trained with cross-entropy, under torchrun or alone.

    torchrun --nproc_per_node=2 -m trainer.distributed_smoke --out runs/ddp            # tiny generated data
    torchrun --nproc_per_node=8 -m trainer.distributed_smoke --dataset epic-kitchens-100 \\
        --data-root /data --split train --steps 20000 --batch-size 256 --workers 8 --out runs/epic

`--batch-size` is the GLOBAL batch (split evenly over the ranks), so the same command with any number
of processes trains the same model, up to floating-point noise (see trainer/distributed.py for what
that needs). Rank 0 alone logs and writes `<out>/checkpoint.pt` and `<out>/result.json`; at the end
every rank checks that all ranks hold identical weights.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset

from edge.errors import EdgeError
from edge.preprocess import PreprocessConfig
from trainer import distributed as ddp
from trainer.models import MODALITIES, ModelConfig, MultimodalModel

TINY_MODEL = dict(video_widths=(8, 16), flow_widths=(8, 16), audio_widths=(8, 16), token_dim=16, dim=16,
                  layers=1, heads=2, ff=32, dropout=0.0)


class GeneratedClips(Dataset):
    """Tiny deterministic samples in the real datasets' format, for checking the distributed machinery.

    Sample i is drawn from a generator seeded with i, and its labels are visible in its inputs (V's
    mean brightness sets the verb, A's the noun), so the loss falls as it trains.
    """

    def __init__(self, n: int, cfg: PreprocessConfig, n_verb: int = 4, n_noun: int = 3) -> None:
        self.n, self.cfg = n, cfg
        self.labels = {"verb": [f"verb{i}" for i in range(n_verb)], "noun": [f"noun{i}" for i in range(n_noun)]}

    @property
    def num_classes(self) -> dict[str, int]:
        return {h: len(v) for h, v in self.labels.items()}

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict:
        c, rng = self.cfg, np.random.default_rng(i)
        verb, noun = int(rng.integers(len(self.labels["verb"]))), int(rng.integers(len(self.labels["noun"])))
        s = c.frame_size
        v = rng.normal(verb, 1.0, (c.video_tokens, 3, s, s)).astype(np.float32)
        f = rng.uniform(-1, 1, (c.flow_tokens, 2, s, s)).astype(np.float32)
        a = rng.normal(noun, 1.0, (c.audio_tokens, 1, c.n_mels, c.logmel_frames)).astype(np.float32)
        return {"V": torch.from_numpy(v), "F": torch.from_numpy(f), "A": torch.from_numpy(a),
                "present": {"V": True, "F": True, "A": True}, "verb": verb, "noun": noun, "id": str(i)}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m trainer.distributed_smoke", description=__doc__.split("\n")[0])
    p.add_argument("--dataset", default="generated",
                   help="'generated' (tiny built-in data) or a real dataset: epic-kitchens-100, "
                        "something-something-v2, recordings")
    p.add_argument("--data-root", default=None, help="data root of a real dataset")
    p.add_argument("--split", default="train")
    p.add_argument("--annotations", help="annotation folder of a real dataset (default: under --data-root)")
    p.add_argument("--media-root",
                   help="media folder of EPIC-KITCHENS or Something-Something (default: under --data-root)")
    p.add_argument("--layout", choices=["frames", "video"], help="EPIC-KITCHENS media layout (default frames)")
    p.add_argument("--flow-source", choices=["recompute", "epic"],
                   help="EPIC-KITCHENS flow: recomputed from RGB (default) or its precomputed u/v JPEGs")
    p.add_argument("--limit", type=int, help="use only the first LIMIT annotation rows")
    p.add_argument("--samples", type=int, default=32, help="size of the generated dataset")
    p.add_argument("--frame-size", type=int, default=16, help="frame size of the generated dataset")
    p.add_argument("--steps", type=int, default=4, help="optimizer steps")
    p.add_argument("--batch-size", type=int, default=8, help="global batch size (all ranks together)")
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=0, help="DataLoader worker processes per rank")
    p.add_argument("--freeze-bn", action="store_true",
                   help="use BatchNorm running statistics (exact equivalence with one process on CPU)")
    p.add_argument("--device", choices=["cpu", "cuda"], default=None, help="default: cuda when available")
    p.add_argument("--out", required=True, help="folder for checkpoint.pt and result.json (rank 0)")
    return p.parse_args(argv)


def make_dataset(args: argparse.Namespace):
    if args.dataset == "generated":
        return GeneratedClips(args.samples, PreprocessConfig(frame_size=args.frame_size)), TINY_MODEL
    if args.data_root is None:
        raise EdgeError(f"--dataset {args.dataset} needs --data-root.")
    from trainer.data.registry import build_real_dataset

    options = {k: getattr(args, k) for k in ("annotations", "media_root", "layout", "flow_source", "limit")
               if getattr(args, k) is not None}
    return build_real_dataset(args.dataset, args.data_root, args.split, seed=args.seed, **options), {}


def train(args: argparse.Namespace, info: ddp.DistInfo) -> dict:
    """Train, save on rank 0, check the ranks agree; returns what result.json holds."""
    if args.batch_size % info.world_size:
        raise EdgeError(f"--batch-size {args.batch_size} must be a multiple of the {info.world_size} processes.")
    dataset, widths = make_dataset(args)
    torch.manual_seed(args.seed)
    model = MultimodalModel(ModelConfig(**widths), **{f"n_{h}": n for h, n in dataset.num_classes.items()})
    model = ddp.wrap(model, info)
    # SGD, not Adam: Adam divides by the gradient's running scale, which turns the float noise in
    # gradients that are truly zero (e.g. attention key biases) into full-size steps.
    opt = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9)
    sampler = ddp.sampler(dataset, info, shuffle=True, seed=args.seed, drop_last=True)
    loader = DataLoader(dataset, batch_size=args.batch_size // info.world_size, sampler=sampler,
                        num_workers=args.workers, drop_last=True)
    if len(loader) == 0:
        raise EdgeError(f"the dataset's {len(dataset)} samples do not fill one batch of {args.batch_size}.")
    loss_fn = torch.nn.CrossEntropyLoss(ignore_index=-1)
    step, epoch, losses = 0, 0, []
    while step < args.steps:
        sampler.set_epoch(epoch)
        if hasattr(dataset, "set_epoch"):
            dataset.set_epoch(epoch)
        for batch in loader:
            model.train()
            if args.freeze_bn:
                ddp.freeze_batchnorm(model)
            inputs = {m: batch[m].to(info.device) for m in MODALITIES}
            mask = torch.stack([batch["present"][m] for m in MODALITIES], 1).float().to(info.device)
            verb, noun = model(inputs, mask)
            loss = loss_fn(verb, batch["verb"].to(info.device)) + loss_fn(noun, batch["noun"].to(info.device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            mean_loss = float(ddp.all_reduce_sum(loss.detach(), info)) / info.world_size
            losses.append(mean_loss)
            step += 1
            ddp.main_log(info, "step %d/%d  loss %.4f", step, args.steps, mean_loss)
            if step == args.steps:
                break
        epoch += 1
    spread = ddp.check_synchronised(model, info)
    result = {"world_size": info.world_size, "backend": dist.get_backend() if info.distributed else "none",
              "steps": step, "losses": losses, "weight_spread_between_ranks": spread,
              "dataset": args.dataset}
    ddp.save_checkpoint({"model": ddp.unwrap(model).state_dict(), "result": result},
                        Path(args.out) / "checkpoint.pt", info)
    if info.is_main:
        (Path(args.out) / "result.json").write_text(json.dumps(result, indent=1))
    return result


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args = parse_args(argv)
    try:
        info = ddp.init(device=args.device)
        try:
            train(args, info)   # returns before shutdown, so the DDP model is gone when the group closes
        finally:
            ddp.shutdown()
    except EdgeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
