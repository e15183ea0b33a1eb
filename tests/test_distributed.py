"""torchrun support: a real 2-process CPU (gloo) run matches a single process and keeps the ranks in step."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from trainer import distributed as ddp
from trainer.distributed_smoke import GeneratedClips, main
from edge.errors import ConfigError
from edge.preprocess import PreprocessConfig

REPO = Path(__file__).resolve().parent.parent
ARGS = ["--steps", "4", "--batch-size", "8", "--samples", "32", "--freeze-bn"]


def test_single_process_helpers_need_no_process_group(tmp_path, monkeypatch):
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    info = ddp.init(device="cpu")
    assert (info.rank, info.world_size, info.is_main, info.distributed) == (0, 1, True, False)
    model = torch.nn.Linear(2, 2)
    assert ddp.wrap(model, info) is model and ddp.unwrap(model) is model
    assert ddp.broadcast({"a": 1}, info) == {"a": 1} and ddp.parameter_spread(model, info) == 0.0
    sampler = ddp.sampler(GeneratedClips(10, PreprocessConfig(frame_size=8)), info, shuffle=True, seed=3)
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


def test_torchrun_two_cpu_processes_match_one(tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "trainer.distributed_smoke", *ARGS, "--out", str(tmp_path / "two")]
    run = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stderr.count("step 4/4") == 1                   # rank 0 alone logs
    assert main([*ARGS, "--device", "cpu", "--out", str(tmp_path / "one")]) == 0

    two = json.loads((tmp_path / "two" / "result.json").read_text())
    one = json.loads((tmp_path / "one" / "result.json").read_text())
    assert two["world_size"] == 2 and two["backend"] == "gloo"
    assert two["weight_spread_between_ranks"] == 0.0            # gradients were synchronised
    assert two["losses"] == pytest.approx(one["losses"], abs=1e-5)
    w2 = torch.load(tmp_path / "two" / "checkpoint.pt")["model"]
    w1 = torch.load(tmp_path / "one" / "checkpoint.pt")["model"]
    diff = max(float((w2[k].float() - w1[k].float()).abs().max()) for k in w1)
    moved = max(float((w1[k].float() - w0.float()).abs().max())
                for k, w0 in _initial_weights().items() if k in w1)
    assert diff < 1e-5 < moved * 1e-2                            # trained, and the same up to float noise


def _initial_weights() -> dict:
    from trainer.distributed_smoke import TINY_MODEL
    from trainer.models import ModelConfig, MultimodalModel

    torch.manual_seed(0)
    return MultimodalModel(ModelConfig(**TINY_MODEL), n_verb=4, n_noun=3).state_dict()


@pytest.mark.slow
def test_torchrun_trains_on_a_real_dataset_loader(tmp_path):
    """Two ranks over the recordings loader (generated video with audio): samples collate, ranks agree."""
    from media_helpers import write_video

    rec = tmp_path / "recordings"
    write_video(rec / "a.mp4", 240, 30, audio=True, level=lambda k: k)
    rows = [f"a.mp4,{0.9 * i:.1f},{0.9 * i + 1.5:.1f},{('open', 'close')[i % 2]},{('cup', 'door')[i % 3 % 2]}"
            for i in range(8)]
    (rec / "train.csv").write_text("media,start,end,verb,noun\n" + "\n".join(rows) + "\n")
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "trainer.distributed_smoke", "--dataset", "recordings", "--data-root", str(tmp_path),
           "--steps", "3", "--batch-size", "4", "--workers", "1", "--out", str(tmp_path / "out")]
    run = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads((tmp_path / "out" / "result.json").read_text())
    assert result["steps"] == 3 and result["weight_spread_between_ranks"] == 0.0
