"""`python -m trainer benchmark`: the teacher and three students (Baseline, Baseline w/ δ, KARMMA_S) x seeds
through the one training path (trainer.stages: the same stages and loop as `teacher` / `student`, on any
dataset, alone or under torchrun) -> the subset table and drop curve (mean ± std over seeds), costs, targets,
results.json / results.md / drop_curve.png and two bundles.

Every stage writes its result under --out atomically (checkpoints per epoch, cached teacher tokens), so a
killed run started again with the same arguments resumes where it stopped.
"""
from __future__ import annotations

import dataclasses
import time

from trainer import distributed as ddp
from trainer.costs import model_costs
from trainer.data_access import resolve_source
from trainer.datasets import MOVING_DIGITS
from trainer.export import export_bundle
from trainer.report import aggregate, check_targets, write_results
from trainer.stages import (Run, cpu_fuse, describe_dataset, score_student, score_tokens, train_student,
                            train_teacher, warm_start)
from trainer.students import MODES


def _data_info(run: Run, train, evaluation) -> dict:
    """What the table was computed on (recorded in results.json and in both bundles)."""
    info = {"dataset": run.spec.name, "eval_split": run.eval_split, "train_split": run.train_split,
            "n_eval": len(evaluation), "counts": {run.train_split: len(train), run.eval_split: len(evaluation)},
            "train": describe_dataset(train), "eval": describe_dataset(evaluation)}
    if run.spec.name == MOVING_DIGITS:
        source = resolve_source(run.spec.data_root)
        info.update(source=source.describe(), data_root=str(source.root) if source.root else None,
                    splits={s: source.split_info(s) for s in (run.train_split, run.eval_split)},
                    seed=run.cfg.data.seed, levels=source.levels_dict(run.cfg.data))
    else:
        info.update(source=f"{run.spec.name} from {run.spec.data_root}", data_root=run.spec.data_root,
                    options=dict(run.spec.options))
    return info


def run_benchmark(run: Run, *, seeds: int = 1) -> dict:
    """Train and score everything; on rank 0 write results.json / results.md / drop_curve.png and two bundles
    under `run.out` and return the results ({} on the other ranks)."""
    start = time.time()
    run.out.mkdir(parents=True, exist_ok=True)
    train, evaluation = run.dataset(run.train_split, train=True), run.dataset(run.eval_split, train=False)
    run.log(f"data ready after {time.time() - start:.0f} s: {run.train_split} {len(train)}, "
            f"{run.eval_split} {len(evaluation)}")
    teacher = train_teacher(run)
    run.log(f"teacher ready after {time.time() - start:.0f} s")
    main = run.info.is_main
    runs = {}
    if main:
        runs["teacher"] = [score_tokens(cpu_fuse(teacher.model.fusion), teacher.eval_view, run.cfg.eval)]
    teacher.model.fusion.to(run.info.device)

    shipped = None
    for seed in range(seeds):
        seeded = dataclasses.replace(run, seed=seed)
        work = run.out / "students"
        encoders = warm_start(seeded, work / f"encoders_seed{seed}.pt")
        for mode in MODES:
            model = train_student(seeded, mode, teacher, encoders, work / f"{mode}_seed{seed}.pt")
            scores = score_student(seeded, model, work)
            if not main:
                continue
            runs.setdefault(mode, []).append(scores)
            run.log(f"{mode} seed {seed} done after {time.time() - start:.0f} s: {run.eval_split} action "
                    + " ".join(f"{s} {a['action']:.1f}" for s, a in scores["table"].items()))
            if mode == "karmma_s" and seed == 0:
                shipped = model.cpu()
    if not main:
        return {}

    pre, labels, teacher_model = run.pre, train.labels, teacher.model.cpu()
    table, curve = aggregate(runs)
    costs = {"teacher": model_costs(teacher_model, pre), "student": model_costs(shipped, pre)}
    costs["teacher_over_student_whole_window"] = round(
        costs["teacher"]["mflops_whole_window"] / costs["student"]["mflops_whole_window"], 2)
    data = _data_info(run, train, evaluation)
    results = {"table": table, "drop_curve": curve, "costs": costs, "seeds": list(range(seeds)),
               "teacher_seeds": [0], "data": data, "world_size": run.info.world_size,
               "backend": ddp.backend_name(run.info), "wall_time_s": round(time.time() - start, 1),
               "config": run.cfg.to_dict()}
    results["targets"] = check_targets(table, curve, costs)

    def metrics(model: str) -> dict:
        """The exported model's own accuracies (seed 0), and the table's mean over seeds."""
        mean = {r["modalities"]: {k: r[k] for k in ("verb", "noun", "action")} for r in table if r["model"] == model}
        own = {s: {k: round(v, 2) for k, v in acc.items()} for s, acc in runs[model][0]["table"].items()}
        return {"split": run.eval_split, "dataset": run.spec.name, "seed": 0, "accuracy": own,
                "accuracy_mean_over_seeds": mean}

    extra = {"data": data}
    export_bundle(shipped, pre, labels, run.out / "bundles" / "karmma_s", name=f"karmma_s-{run.spec.name}",
                  kind="student", metrics=metrics("karmma_s"), extra=extra)
    export_bundle(teacher_model, pre, labels, run.out / "bundles" / "teacher", name=f"teacher-{run.spec.name}",
                  kind="teacher", metrics=metrics("teacher"),
                  extra={**extra, "extractors": dict(run.cfg.teacher.extractors)})
    results["wall_time_s"] = round(time.time() - start, 1)
    write_results(results, run.out)
    return results
