"""N ranks must see the very batches one process sees, also when the dataset size is not a
multiple of the batch size; and a resumed --out with other settings fails in one sentence."""
# Tier: unit, except the test marked integration (slow: a training run resumed).
from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from trainer import distributed as ddp
from trainer.__main__ import main
from trainer.loop import index_batches
from trainer.data.loaders import make_loader

from test_trainer_datasets import write_recordings


def _global_batches(batches_of_rank, world: int) -> list[list[int]]:
    """The global batches N ranks train on: batch k of every rank, together (sorted: order inside a batch
    does not change a mean loss)."""
    per_rank = [batches_of_rank(ddp.DistInfo(rank=r, world_size=world)) for r in range(world)]
    assert len({len(b) for b in per_rank}) == 1, "ranks take different numbers of steps (collective mismatch)"
    return [sorted(i for rank in per_rank for i in rank[k]) for k in range(len(per_rank[0]))]


@pytest.mark.parametrize("n", [16, 17, 18, 23])
def test_sample_loader_gives_n_ranks_the_batches_of_one_process(n):
    dataset = [{"x": torch.zeros(1)} for _ in range(n)]

    def batches(info: ddp.DistInfo) -> list[list[int]]:
        loader, sampler = make_loader(dataset, info, 8, shuffle=True, seed=0, workers=0)
        sampler.set_epoch(1)
        return [b["index"].tolist() for b in loader]

    one = _global_batches(batches, 1)
    for world in (2, 4):        # same steps (the one-cycle schedule's length) and the same samples in each
        assert _global_batches(batches, world) == one, f"{n} samples, {world} ranks"


@pytest.mark.parametrize("n", [16, 17, 23])
def test_token_row_batches_give_n_ranks_the_batches_of_one_process(n):
    cfg = SimpleNamespace(batch_size=8)

    def batches(info: ddp.DistInfo) -> list[list[int]]:
        of_epoch, count = index_batches(n, SimpleNamespace(cfg=cfg, info=info, seed=0))
        rows = [b.tolist() for b in of_epoch(1)]
        assert len(rows) == count
        return rows

    one = _global_batches(batches, 1)
    assert _global_batches(batches, 2) == one, f"{n} rows"


@pytest.mark.slow
@pytest.mark.integration
def test_resuming_with_another_batch_size_is_one_sentence(tmp_path, capsys):
    write_recordings(tmp_path)
    args = ["teacher", "--dataset", "recordings", "--data-root", str(tmp_path), "--out", str(tmp_path / "run"),
            "--smoke"]
    assert main([*args, "--set", "batch_size=8"]) == 0
    capsys.readouterr()
    # the checkpoints' one-cycle schedules were sized for batch 8 and 2 fusion epochs
    assert main([*args, "--set", "batch_size=4", "--set", "teacher.fusion_epochs=3"]) == 2
    assert capsys.readouterr().err.startswith("error: ")
