"""`python -m edge.bench latency`: student fp32 / int8 and teacher timed side by side, rows, ratios, histograms."""
# Tier: unit, except the tests marked integration (the latency command on exported bundles, int8 calibration
# included).
from __future__ import annotations

import json

import numpy as np
import pytest

from edge.bench import latency
from edge.bench.__main__ import main as bench_main


@pytest.fixture(scope="module")
def teacher_bundle(tmp_path_factory):
    """A wider random MultimodalModel exported as kind 'teacher': the stand-in until the trained one ships."""
    torch = pytest.importorskip("torch")
    from edge.preprocess import PreprocessConfig
    from trainer.export import export_bundle
    from trainer.models import ModelConfig, MultimodalModel

    torch.manual_seed(1)
    cfg = ModelConfig(video_widths=(48, 96, 192, 256), flow_widths=(48, 96, 192, 256), audio_widths=(48, 96, 192),
                      token_dim=128, dim=128, layers=2, heads=4, ff=256)
    labels = {"verb": [f"verb{i}" for i in range(8)], "noun": [str(i) for i in range(10)]}
    return export_bundle(MultimodalModel(cfg, 8, 10), PreprocessConfig(), labels,
                         tmp_path_factory.mktemp("bundles") / "teacher", name="random-teacher", kind="teacher")


@pytest.fixture(scope="module")
def int8_bundle(random_bundle, tmp_path_factory):
    from calibration.pipeline import Splits, calibrate
    from tests.test_calibration import random_clips

    out = tmp_path_factory.mktemp("bundles") / "random_int8"
    calibrate(random_bundle, Splits(random_clips(4, 0), random_clips(8, 1), random_clips(8, 2)), out,
              encoder_inputs=16, timing_repetitions=10, log=lambda _: None, write_anyway=True)
    return out


@pytest.mark.integration
def test_latency_rows_for_every_model_stage_and_total(random_bundle, int8_bundle, teacher_bundle, tmp_path, capsys):
    png = tmp_path / "latency.png"
    code = bench_main(["latency", "--bundle", str(random_bundle), "--int8", str(int8_bundle), "--teacher",
                       str(teacher_bundle), "--repetitions", "20", "--warmup", "2", "--png", str(png), "--json"])
    assert code == 0
    rows = json.loads(capsys.readouterr().out)
    by = {(r["model"], r["precision"], r["stage"]): r for r in rows}
    models = {("student", "fp32"), ("student", "int8"), ("teacher", "fp32")}
    assert {(m, p) for m, p, _ in by} == models
    for model in models:
        for stage in (*latency.STAGES, *latency.SUMS):
            r = by[(*model, stage)]
            assert 0 < r["p50_ms"] <= r["p95_ms"] <= r["p99_ms"]
        # total is the per-repetition sum of the stages, so each of its percentiles bounds every stage's.
        assert all(by[(*model, "total")]["p50_ms"] >= by[(*model, s)]["p50_ms"] for s in latency.STAGES)
    assert by[("teacher", "fp32", "models")]["p50_ms"] > by[("student", "fp32", "models")]["p50_ms"]
    assert png.stat().st_size > 10_000


@pytest.mark.integration
def test_latency_table_prints_ratios(random_bundle, teacher_bundle, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # `--png ''` means no histogram file at all (it once wrote ./.png)
    code = bench_main(["latency", "--bundle", str(random_bundle), "--teacher", str(teacher_bundle),
                       "--int8", str(teacher_bundle.parent / "absent"), "--repetitions", "10", "--png", ""])
    assert code == 2  # an explicitly named bundle that does not exist is an error, in one line
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "absent" in err[0]
    code = bench_main(["latency", "--bundle", str(random_bundle), "--teacher", str(teacher_bundle),
                       "--repetitions", "10", "--warmup", "1", "--png", ""])
    out = capsys.readouterr().out
    assert code == 0 and "teacher / student fp32 (p50)" in out and "total" in out
    assert "histograms:" not in out and list(tmp_path.iterdir()) == []
    code = bench_main(["latency", "--bundle", str(random_bundle), "--against", str(random_bundle), "--teacher",
                       str(teacher_bundle), "--repetitions", "10", "--warmup", "1", "--png", "", "--json"])
    rows = json.loads(capsys.readouterr().out)
    assert code == 0 and {r["model"] for r in rows} == {"student", "other student", "teacher"}
    assert "other student fp32 / student fp32" in latency.ratios(rows)
    code = bench_main(["latency", "--bundle", str(random_bundle), "--previous", str(teacher_bundle), "--png", ""])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and "is a teacher fp32 bundle" in err[-1] and err[-1].startswith("edge.bench latency:")


def test_ratios_divide_medians_per_stage():
    rows = [{"model": "student", "precision": "fp32", "stage": "total", "p50_ms": 2.0},
            {"model": "student", "precision": "int8", "stage": "total", "p50_ms": 1.0},
            {"model": "teacher", "precision": "fp32", "stage": "total", "p50_ms": 50.0}]
    assert latency.ratios(rows) == {"student fp32 / student int8": {"total": 2.0},
                                    "teacher / student fp32": {"total": 25.0},
                                    "teacher / student int8": {"total": 50.0}}


def test_interleave_runs_every_task_each_repetition_in_shuffled_order():
    calls = []

    def task(name):
        return lambda: calls.append(name) or {"call": 0.001}

    times = latency.interleave({n: task(n) for n in "abc"}, repetitions=30, warmup=2)
    assert {n: len(t["call"]) for n, t in times.items()} == {"a": 30, "b": 30, "c": 30}
    rounds = [tuple(calls[i:i + 3]) for i in range(0, len(calls), 3)]
    assert all(sorted(r) == ["a", "b", "c"] for r in rounds) and len(set(rounds)) > 1


def test_percentiles_ms():
    got = latency.percentiles_ms(np.arange(1, 101) / 1000.0)
    assert got["p50_ms"] == pytest.approx(50.5) and got["p99_ms"] == pytest.approx(99.01)
