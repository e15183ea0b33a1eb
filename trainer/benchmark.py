"""`python -m trainer benchmark`: the teacher and three students (Baseline, Baseline w/ δ, KARMMA_S) x seeds
through the one training path (trainer.stages: the same stages and loop as `teacher` / `student`, on any
dataset, alone or under torchrun) -> the subset table and drop curve (mean ± std over seeds), costs, targets,
results.json / results.md / drop_curve.png and two bundles.

Every stage writes its result under --out atomically (checkpoints per epoch, cached teacher tokens), so a
killed run started again with the same arguments resumes where it stopped. With `jobs` > 1 the trainings first run
side by side in that many processes (trainer.parallel: the teacher beside the warm starts, the baselines before the
teacher is done); the pass that scores and exports then resumes each of them as finished.
"""
from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import torch

from edge.errors import ConfigError
from trainer import distributed as ddp
from trainer.costs import model_costs
from trainer.data.sources import resolve_source
from trainer.data.registry import MOVING_DIGITS
from trainer.export import export_bundle
from trainer.parallel import Job, run_jobs
from trainer.report import aggregate, check_targets, write_results
from trainer.loop import Run
from trainer.stages import (MODE_NAMES, check_same_run, cpu_fuse, describe_dataset, score_student, score_tokens,
                            train_student, train_teacher, warm_start)
from trainer.students import MODES


def _encoders_path(run: Run, seed: int) -> Path:
    return run.out / "students" / f"encoders_seed{seed}.pt"


def _student_path(run: Run, seed: int, mode: str) -> Path:
    return run.out / "students" / f"{mode}_seed{seed}.pt"


def _training_jobs(seeds: int) -> list[Job]:
    """Every training of the benchmark, in the order a free process takes them: the teacher (the longest chain)
    first, then the warm starts, then each seed's students; only KARMMA_S waits for the teacher."""
    jobs = [Job("teacher", ("teacher",))]
    jobs += [Job(f"warm start seed {s}", ("warm", s)) for s in range(seeds)]
    jobs += [Job(f"{MODE_NAMES[m]} seed {s}", ("student", s, m),
                 (f"warm start seed {s}", *(("teacher",) if m == "karmma_s" else ())))
             for s in range(seeds) for m in MODES]
    return jobs


_process_run: Run | None = None     # a job process's Run (its dataset loaded once, for all its jobs)


def _setup_job_process(run: Run, threads: int) -> None:
    global _process_run
    torch.set_num_threads(threads)
    _process_run = run
    run.dataset(run.train_split, train=True)


def _run_job(kind: str, seed: int = 0, mode: str = "") -> None:
    """One training of `_training_jobs` in a job process, through the same stages as the sequential benchmark."""
    run = _process_run
    if kind == "teacher":
        train_teacher(run)
        return
    seeded = dataclasses.replace(run, seed=seed)
    encoders = warm_start(seeded, _encoders_path(run, seed))
    if kind == "student":
        teacher = train_teacher(run) if mode == "karmma_s" else None     # resumed: trained by its own job
        train_student(seeded, mode, teacher, encoders, _student_path(run, seed, mode))


def _data_info(run: Run, train, evaluation) -> dict:
    """What the table was computed on (recorded in results.json and in both bundles)."""
    info = {"dataset": run.spec.name, "eval_split": run.eval_split, "train_split": run.train_split,
            "n_eval": len(evaluation), "counts": {run.train_split: len(train), run.eval_split: len(evaluation)},
            "train": describe_dataset(train), "eval": describe_dataset(evaluation)}
    if run.spec.name == MOVING_DIGITS:
        source = resolve_source(run.spec.data_root)
        info.update(source=source.describe(), data=source.identity(),
                    splits={s: source.split_info(s) for s in (run.train_split, run.eval_split)},
                    seed=run.cfg.data.seed, levels=source.levels_dict(run.cfg.data))
    else:
        info.update(source=f"{run.spec.name} from a folder named {Path(run.spec.data_root).name!r}",
                    options=dict(run.spec.options))
    return info


def run_benchmark(run: Run, *, seeds: int = 1, jobs: int = 1) -> dict:
    """Train and score everything (the trainings in `jobs` processes side by side when > 1); on rank 0 write
    results.json / results.md / drop_curve.png and two bundles under `run.out` and return the results ({} on the
    other ranks)."""
    if jobs > 1 and run.info.distributed:
        raise ConfigError("--jobs runs the trainings in processes of its own; under torchrun every process already "
                          "takes part in each training, so leave --jobs at 1.")
    start = time.time()
    run.out.mkdir(parents=True, exist_ok=True)
    train, evaluation = run.dataset(run.train_split, train=True), run.dataset(run.eval_split, train=False)
    run.log(f"data ready after {time.time() - start:.0f} s: {run.train_split} {len(train)}, "
            f"{run.eval_split} {len(evaluation)}")
    if jobs > 1:
        check_same_run(run, train)          # before any job writes into a --out that holds another run
        run_jobs(_training_jobs(seeds), _run_job, processes=jobs, setup=_setup_job_process,
                 setup_args=(dataclasses.replace(run, progress=False, loaded={}), torch.get_num_threads()),
                 log=run.log)
        run.log(f"trainings done after {time.time() - start:.0f} s in {jobs} processes; scoring")
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
        encoders = warm_start(seeded, _encoders_path(run, seed))
        for mode in MODES:
            model = train_student(seeded, mode, teacher, encoders, _student_path(run, seed, mode))
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
