"""`python -m trainer benchmark`: clips -> teacher -> three students (x seeds) -> evaluation -> bundles + report.

Every stage writes its result under --out atomically (extractor / fusion / student checkpoints per epoch,
cached teacher tokens), so a killed run started again with the same arguments resumes where it stopped.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from edge.errors import ConfigError
from edge.preprocess.config import PreprocessConfig
from trainer.clips import ClipSet
from trainer.config import TrainerConfig
from trainer.costs import model_costs
from trainer.data_access import DataSource, label_names, load_clips
from trainer.evaluation import drop_curve, model_tokens, subset_table
from trainer.export import export_bundle
from trainer.report import aggregate, check_targets, write_results
from trainer.students import MODES, pretrain_encoders, train_student
from trainer.teacher import build_teacher, subset_logits


def _evaluate(fuse, tokens: dict[str, torch.Tensor], clips: ClipSet, cfg: TrainerConfig) -> dict:
    return {"table": subset_table(fuse, tokens, clips.verb, clips.noun),
            "curve": drop_curve(fuse, tokens, clips.verb, clips.noun, tuple(cfg.eval.drop_ps), cfg.eval.drop_repeats)}


def _check_same_clips(out: Path, keys: dict[str, str]) -> None:
    """A resumed run must train on the clips its checkpoints and cached tokens came from."""
    path = out / "clips.json"
    if path.is_file():
        before = json.loads(path.read_text())
        changed = sorted(s for s in keys if s in before and before[s] != keys[s])
        if changed:
            raise ConfigError(f"{out} holds a run on different {'/'.join(changed)} clips (renderer, levels or sizes "
                              "changed); resume only with the same settings, or use a new --out.")
        keys = {**before, **keys}
    path.write_text(json.dumps(keys, indent=1))


def run_benchmark(cfg: TrainerConfig, source: DataSource, out: Path, cache_dir: Path, *, seeds: int = 1,
                  eval_split: str = "test") -> dict:
    """Run the whole benchmark and write results.json / results.md / drop_curve.png and two bundles under `out`."""
    start = time.time()
    out.mkdir(parents=True, exist_ok=True)
    pre = PreprocessConfig()
    labels = label_names()
    n_classes = {k: len(v) for k, v in labels.items()}
    tokens_per_modality = {"V": pre.video_tokens, "F": pre.flow_tokens, "A": pre.audio_tokens}
    counts = {"train": cfg.data.n_train, "val": cfg.data.n_val, "test": cfg.data.n_test}
    splits = ["train", "val"] + ([eval_split] if eval_split != "val" else [])
    clips = {s: load_clips(source, s, counts[s], cfg.data, pre, cache_dir) for s in splits}
    _check_same_clips(out, {s: c.key for s, c in clips.items()})
    print(f"clips ready after {time.time() - start:.0f} s: " + ", ".join(f"{s} {len(c)}" for s, c in clips.items()),
          flush=True)

    teacher, teacher_tokens = build_teacher(cfg.teacher, clips, n_classes, tokens_per_modality,
                                            batch_size=cfg.batch_size, seed=0, work=out / "teacher")
    print(f"teacher ready after {time.time() - start:.0f} s", flush=True)
    runs = {"teacher": [_evaluate(teacher.fusion, teacher_tokens[eval_split], clips[eval_split], cfg)]}
    train_logits = subset_logits(teacher.fusion, teacher_tokens["train"])

    shipped = None
    for seed in range(seeds):
        encoders = pretrain_encoders(cfg.student, clips["train"], n_classes, tokens_per_modality,
                                     batch_size=cfg.batch_size, seed=seed, work=out / "students")
        for mode in MODES:
            model = train_student(mode, cfg.student, clips["train"], n_classes, tokens_per_modality,
                                  batch_size=cfg.batch_size, seed=seed, ckpt_path=out / "students" / f"{mode}_seed{seed}.pt",
                                  teacher_logits=train_logits if mode == "karmma_s" else None, val=clips["val"],
                                  encoders=encoders)
            tokens = model_tokens(model, clips[eval_split], cfg.batch_size, f"{mode} seed {seed} {eval_split}")
            runs.setdefault(mode, []).append(_evaluate(model.fusion, tokens, clips[eval_split], cfg))
            print(f"{mode} seed {seed} done after {time.time() - start:.0f} s: {eval_split} action "
                  + " ".join(f"{s} {a['action']:.1f}" for s, a in runs[mode][-1]["table"].items()), flush=True)
            if mode == "karmma_s" and seed == 0:
                shipped = model

    table, curve = aggregate(runs)
    costs = {"teacher": model_costs(teacher, pre), "student": model_costs(shipped, pre)}
    costs["teacher_over_student_whole_window"] = round(
        costs["teacher"]["mflops_whole_window"] / costs["student"]["mflops_whole_window"], 2)
    data = {"source": source.describe(), "data_root": str(source.root) if source.root else None,
            "eval_split": eval_split, "splits": {s: source.split_info(s) for s in splits},
            "n_eval": len(clips[eval_split]), "counts": {s: len(c) for s, c in clips.items()},
            "seed": cfg.data.seed, "levels": source.levels_dict(cfg.data)}
    results = {"table": table, "drop_curve": curve, "costs": costs, "seeds": list(range(seeds)),
               "teacher_seeds": [0], "data": data, "wall_time_s": round(time.time() - start, 1),
               "config": cfg.to_dict()}
    results["targets"] = check_targets(table, curve, costs)

    def metrics(model: str) -> dict:
        """The exported model's own accuracies (seed 0), and the table's mean over seeds."""
        mean = {r["modalities"]: {k: r[k] for k in ("verb", "noun", "action")} for r in table if r["model"] == model}
        own = {s: {k: round(v, 2) for k, v in acc.items()} for s, acc in runs[model][0]["table"].items()}
        return {"split": eval_split, "seed": 0, "accuracy": own, "accuracy_mean_over_seeds": mean}

    extra = {"data": data}
    export_bundle(shipped, pre, labels, out / "bundles" / "karmma_s", name="karmma_s-moving-digits", kind="student",
                  metrics=metrics("karmma_s"), extra=extra)
    export_bundle(teacher, pre, labels, out / "bundles" / "teacher", name="teacher-moving-digits", kind="teacher",
                  metrics=metrics("teacher"), extra={**extra, "extractors": dict(cfg.teacher.extractors)})
    results["wall_time_s"] = round(time.time() - start, 1)
    write_results(results, out)
    return results
