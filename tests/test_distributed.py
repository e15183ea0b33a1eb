"""torchrun: `python -m trainer student` on 2 CPU processes (gloo) trains what 1 process does, ranks in step."""
# Tier: unit, except the tests marked integration (torchrun with 2 processes).
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch.utils.data import TensorDataset

from edge.errors import ConfigError
from trainer import distributed as ddp
from trainer.__main__ import main

from test_trainer_datasets import write_recordings

REPO = Path(__file__).resolve().parent.parent
# Exact equivalence needs what does not depend on how a batch is split: BatchNorm on running statistics,
# no dropout, and no in-batch negatives (InfoNCE) - see trainer/distributed.py.
EXACT = ["--smoke", "--freeze-bn", "--set", "batch_size=8", "--set", "teacher.dropout=0.0", "--set",
         "student.model.dropout=0.0", "--set", "teacher.infonce=false", "--set", "student.epochs=2"]
CHECKPOINTS = ("teacher/extractors.pt", "teacher/fusion.pt", "student/encoders.pt", "student/karmma_s.pt")


def test_single_process_helpers_need_no_process_group(tmp_path, monkeypatch):
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    info = ddp.init(device="cpu")
    assert (info.rank, info.world_size, info.is_main, info.distributed) == (0, 1, True, False)
    model = torch.nn.Linear(2, 2)
    assert ddp.wrap(model, info) is model and ddp.unwrap(model) is model
    assert ddp.broadcast({"a": 1}, info) == {"a": 1} and ddp.parameter_spread(model, info) == 0.0
    sampler = ddp.sampler(TensorDataset(torch.arange(10)), info, shuffle=True, seed=3)
    assert sorted(sampler) == list(range(10))
    ddp.save_checkpoint({"x": torch.ones(2)}, tmp_path / "c" / "ckpt.pt", info)
    assert torch.load(tmp_path / "c" / "ckpt.pt")["x"].sum() == 2 and not list((tmp_path / "c").glob("*.tmp"))


def test_bad_environment_is_one_sentence(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "two")
    with pytest.raises(ConfigError, match="WORLD_SIZE must be an integer"):
        ddp.init(device="cpu")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.delenv("MASTER_ADDR", raising=False)
    with pytest.raises(ConfigError, match="start the run with torchrun"):
        ddp.init(device="cpu")


def test_jobs_under_torchrun_is_refused(tmp_path):
    """`benchmark --jobs 2` under torchrun would start 2 trainings per rank: one sentence instead, before any data."""
    from trainer.benchmark import run_benchmark
    from trainer.config import TrainerConfig
    from trainer.data.registry import DatasetSpec
    from trainer.loop import Run

    run = Run(DatasetSpec(), TrainerConfig(), tmp_path, ddp.DistInfo(rank=0, world_size=2))
    with pytest.raises(ConfigError, match="under torchrun every process already takes part"):
        run_benchmark(run, jobs=2)


def _one_and_two_processes(command: str, tmp_path: Path) -> subprocess.CompletedProcess:
    """`python -m trainer COMMAND` on the recordings under torchrun with 2 gloo processes (--out two) and in
    this process (--out one); returns the torchrun run."""
    write_recordings(tmp_path)                 # half the samples have audio: ranks see unequal A counts
    data = ["--dataset", "recordings", "--data-root", str(tmp_path)]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "trainer", command, *data, "--out", str(tmp_path / "two"), *EXACT]
    run = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    assert main([command, *data, "--out", str(tmp_path / "one"), "--device", "cpu", *EXACT]) == 0
    return run


@pytest.mark.integration
def test_torchrun_two_cpu_processes_train_what_one_does(tmp_path):
    run = _one_and_two_processes("student", tmp_path)
    assert run.stdout.count("KARMMA_S (seed 0) epoch 2/2: mean loss") == 1           # rank 0 alone logs

    two = json.loads((tmp_path / "two" / "student" / "results.json").read_text())
    one = json.loads((tmp_path / "one" / "student" / "results.json").read_text())
    assert (two["world_size"], two["backend"], one["world_size"]) == (2, "gloo", 1)
    assert two["weight_spread_between_ranks"] == 0.0                        # gradients were synchronised
    assert two["table"] == one["table"] and two["curve"] == one["curve"]
    diffs = {}
    for name in CHECKPOINTS:
        w2 = torch.load(tmp_path / "two" / name, weights_only=True)["model"]
        w1 = torch.load(tmp_path / "one" / name, weights_only=True)["model"]
        diffs[name] = max(float((w2[k].float() - w1[k].float()).abs().max()) for k in w1)
        # float noise; Adam turns the noise in truly-zero gradients (attention key biases) into ~1e-4 steps
        assert diffs[name] < 1e-3, name
    warm = torch.load(tmp_path / "one" / "student/encoders.pt", weights_only=True)["model"]
    final = torch.load(tmp_path / "one" / "student/karmma_s.pt", weights_only=True)["model"]
    encoders = [k for k in warm if k.startswith("encoders") and warm[k].is_floating_point()]
    moved = max(float((final[f"student.{k}"] - warm[k]).abs().max()) for k in encoders)
    spread = max(float((torch.load(tmp_path / "two" / "student/karmma_s.pt", weights_only=True)["model"][f"student.{k}"]
                        - final[f"student.{k}"]).abs().max()) for k in encoders)
    assert moved > 10 * spread                  # KARMMA_S moved the encoders far more than 1 vs 2 processes differ
    assert not list((tmp_path / "two" / "teacher" / "tokens").glob("*.rank*.pt"))   # shards merged


@pytest.mark.slow
@pytest.mark.integration
def test_torchrun_benchmark_scores_what_one_process_does(tmp_path):
    """The benchmark's students run through the same loop: 2 processes give one process's table."""
    _one_and_two_processes("benchmark", tmp_path)
    two = json.loads((tmp_path / "two" / "results.json").read_text())
    one = json.loads((tmp_path / "one" / "results.json").read_text())
    assert (two["world_size"], one["world_size"]) == (2, 1)
    assert two["table"] == one["table"] and two["drop_curve"] == one["drop_curve"]
