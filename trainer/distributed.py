"""Training on more than one process or machine with PyTorch's own engine (torchrun + DDP).

Under `torchrun --nproc_per_node=N ...` (or `--nnodes`), torchrun sets RANK, WORLD_SIZE, LOCAL_RANK,
MASTER_ADDR and MASTER_PORT; `init()` joins the process group (NCCL on GPUs, gloo on CPU). Without
them everything here degrades to a single process, so one code path serves both.

Equivalence with one process: with a DistributedSampler each rank sees 1/N of every global batch
and DDP averages gradients, so N ranks x batch B train like one process with batch N*B, up to
floating-point noise, provided nothing depends on the per-rank batch: dropout masks differ per rank,
in-batch contrastive negatives (the teacher's optional InfoNCE) are the rank's own batch,
and BatchNorm statistics are per rank unless converted to SyncBatchNorm, which PyTorch supports on GPUs
only (`wrap(..., sync_bn=True)` does it there). On CPU, freeze BatchNorm statistics (`freeze_batchnorm`)
when exact equivalence matters.
"""
from __future__ import annotations

import gc
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import Dataset, DistributedSampler

from edge.errors import ConfigError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None:
        return default
    try:
        return int(value)
    except ValueError:
        raise ConfigError(f"environment variable {name} must be an integer, got {value!r}.") from None


def init(backend: str | None = None, device: str | None = None) -> DistInfo:
    """Join the process group torchrun describes in the environment (nothing to do without torchrun).

    `backend` defaults to "nccl" when CUDA is available and "gloo" otherwise; `device` ("cpu" or
    "cuda") overrides the choice of device (cuda:LOCAL_RANK on GPUs).
    """
    world = _env_int("WORLD_SIZE", 1)
    rank, local = _env_int("RANK", 0), _env_int("LOCAL_RANK", 0)
    use_cuda = torch.cuda.is_available() if device is None else device == "cuda"
    if use_cuda and not torch.cuda.is_available():
        raise ConfigError("device 'cuda' was asked for but CUDA is not available.")
    dev = torch.device("cuda", local) if use_cuda else torch.device("cpu")
    if use_cuda:
        torch.cuda.set_device(dev)
    if world > 1 and not dist.is_initialized():
        absent = [v for v in ("MASTER_ADDR", "MASTER_PORT") if v not in os.environ]
        if absent:
            raise ConfigError(f"WORLD_SIZE={world} but {' and '.join(absent)} unset: start the run with torchrun.")
        backend = backend or ("nccl" if use_cuda else "gloo")
        if backend == "nccl" and not use_cuda:
            raise ConfigError("the NCCL backend needs GPUs; use gloo on CPU.")
        dist.init_process_group(backend=backend, init_method="env://", rank=rank, world_size=world,
                                **({"device_id": dev} if use_cuda else {}))
    return DistInfo(rank=rank, world_size=world, local_rank=local, device=dev)


def backend_name(info: DistInfo) -> str:
    """"gloo" / "nccl" under torchrun, "none" in a single process."""
    return str(dist.get_backend()) if info.distributed else "none"


def shutdown(failed: bool = False) -> None:
    """Leave the process group (call once at the end of training, after the DDP model is released).

    `failed`: this rank stopped on an error; it leaves without waiting for the others (they may be inside a
    collective it will never join), so it exits and torchrun stops the rest instead of every rank hanging.
    """
    if dist.is_initialized():
        gc.collect()            # gloo worker threads must not outlive tensors still referenced from Python
        if not failed:
            dist.barrier()
        dist.destroy_process_group()


def wrap(model: nn.Module, info: DistInfo, sync_bn: bool = True, find_unused: bool = False) -> nn.Module:
    """The model on its device, wrapped in DistributedDataParallel when there is more than one process.

    The wrapper broadcasts rank 0's parameters and buffers at construction, so every rank starts equal.
    `find_unused`: some parameters may get no gradient in a step (an encoder whose modality is missing
    from every sample of a rank's batch is not run), which DDP must then be told.
    """
    model = model.to(info.device)
    if not info.distributed:
        return model
    if sync_bn and info.device.type == "cuda":
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    ids = [info.device.index] if info.device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ids, find_unused_parameters=find_unused)


def unwrap(model: nn.Module) -> nn.Module:
    """The plain module inside a DDP wrapper (what to save, export or evaluate)."""
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def freeze_batchnorm(model: nn.Module) -> None:
    """Use running statistics in every BatchNorm layer (their affine weights still train).

    Call after `model.train()`; it makes the forward pass independent of how a batch is split.
    """
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()


def sampler(dataset: Dataset, info: DistInfo, shuffle: bool, seed: int = 0,
            drop_last: bool = False) -> DistributedSampler:
    """Each rank's share of `dataset`; with one process, the same order a single rank of one would see.

    Call `sampler.set_epoch(epoch)` before each epoch for a new shuffle.
    """
    return DistributedSampler(dataset, num_replicas=info.world_size, rank=info.rank, shuffle=shuffle, seed=seed,
                              drop_last=drop_last)


def broadcast(obj: Any, info: DistInfo, src: int = 0) -> Any:
    """Rank `src`'s value of a picklable `obj` on every rank (e.g. a run folder decided on rank 0)."""
    if not info.distributed:
        return obj
    holder = [obj]
    dist.broadcast_object_list(holder, src=src, device=info.device if info.device.type == "cuda" else None)
    return holder[0]


def all_reduce_sum(tensor: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Sum of `tensor` over ranks (e.g. correct / total counts for evaluation), returned on every rank, on
    the tensor's own device (NCCL reduces only GPU tensors, so a CPU tensor travels through the rank's device)."""
    if not info.distributed:
        return tensor
    total = tensor.to(info.device, copy=True)
    dist.all_reduce(total, op=dist.ReduceOp.SUM)
    return total.to(tensor.device)


def parameter_spread(model: nn.Module, info: DistInfo) -> float:
    """Largest difference between ranks in any parameter (0.0 when gradients are synchronised).

    Buffers are left out: BatchNorm running statistics are updated locally by each forward pass and
    DDP re-broadcasts rank 0's at the next one, so after the last step they legitimately differ
    (the checkpoint holds rank 0's).
    """
    if not info.distributed:
        return 0.0
    flat = torch.cat([p.detach().float().reshape(-1) for p in unwrap(model).parameters()])
    hi, lo = flat.clone(), flat.clone()
    dist.all_reduce(hi, op=dist.ReduceOp.MAX)
    dist.all_reduce(lo, op=dist.ReduceOp.MIN)
    return float((hi - lo).abs().max())


def check_synchronised(model: nn.Module, info: DistInfo, tol: float = 0.0) -> float:
    """The ranks' weight spread; raises when it exceeds `tol` (gradients were not synchronised)."""
    spread = parameter_spread(model, info)
    if spread > tol:
        raise RuntimeError(f"ranks hold different weights (largest difference {spread:.3g} > {tol}).")
    return spread


def main_log(info: DistInfo, message: str, *args: Any) -> None:
    """Log on rank 0 only, so N processes print one line, not N."""
    if info.is_main:
        log.info(message, *args)


def save_checkpoint(state: dict, path: str | Path, info: DistInfo) -> None:
    """Rank 0 writes `state` atomically (temporary file + rename); every rank waits until it is written."""
    if info.is_main:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".tmp")
        torch.save(state, tmp)
        os.replace(tmp, path)
    if info.distributed:
        dist.barrier()
