"""`python -m trainer crossval`: the fine-tuning learner against two simple baselines, on the same folds of takes.

Every take of every split file is pooled and dealt into folds by take (stratified by action; rows sharing a
`group` stay in one fold), or left out one at a time. Per fold the learner is exactly `trainer finetune`
(`finetune_model` from the bundle, then `predict_takes`), and two baselines a reader can check in a few lines see
the same training takes:

- centroid: the nearest class mean,
- nn1: the nearest training take,

both by Euclidean distance on standardised simple features (`trainer.data.takes.take_features`: the 16x16 mean
frame for V, the 16x16 mean absolute frame difference for F, the mean log-mel for A), each modality's block scaled
to equal weight. Every subset whose modalities some take has is scored on the takes that have them; a modality
no take has is named absent.
"""
from __future__ import annotations

import csv
import dataclasses
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np

from edge.bundle import load_bundle
from edge.errors import ConfigError
from edge.modalities import MODALITIES, SUBSETS
from trainer.data.takes import Take, load_takes, take_features
from trainer.finetune import action_list, bundle_model, check_settings, claim_folder, finetune_model, predict_takes
from trainer.export import export_bundle
from trainer.loop import Run

LEARNERS = ("learner", "centroid", "nn1")


def make_folds(takes: list[Take], folds: int | None, seed: int = 0) -> list[list[int]]:
    """Take indices per fold: groups (a take alone, or the takes sharing a `group`) dealt round-robin within each
    action after a seeded shuffle, so each fold holds about the same share of every action. `folds` None: one
    fold per group (leave one out)."""
    groups: dict[str, list[int]] = {}
    for i, t in enumerate(takes):
        groups.setdefault(t.group, []).append(i)
    units = list(groups.values())
    if folds is None:
        return units
    if not 2 <= folds <= len(units):
        raise ConfigError(f"--folds must be from 2 to the number of takes (or groups), {len(units)}; got {folds}.")
    rng = np.random.default_rng(seed)
    order = [units[i] for i in rng.permutation(len(units))]
    order.sort(key=lambda unit: takes[unit[0]].action)          # stable: shuffled within each action
    out: list[list[int]] = [[] for _ in range(folds)]
    for k, unit in enumerate(order):
        out[k % folds].extend(unit)
    return [sorted(f) for f in out if f]


def relabel(takes: list[Take], labels: dict[str, list[str]]) -> tuple[list[Take], dict[str, list[str]]]:
    """The takes with verb and noun ids into a label set of only the names they use (the learner's heads then
    have no class without a take)."""
    used = {h: sorted({labels[h][getattr(t, h)] for t in takes}) for h in ("verb", "noun")}
    return [dataclasses.replace(t, verb=used["verb"].index(labels["verb"][t.verb]),
                                noun=used["noun"].index(labels["noun"][t.noun])) for t in takes], used


def standardise(train: np.ndarray, test: np.ndarray, blocks: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """z-score by the training takes' statistics, then each modality block divided by sqrt(its size). A feature
    that hardly varies is not blown up: its spread is floored at 10 % of its block's mean spread."""
    mean, std = train.mean(axis=0), train.std(axis=0)
    edges = np.cumsum([0, *blocks])
    floor = np.concatenate([np.full(n, 0.1 * std[a:b].mean() + 1e-6) for n, a, b in zip(blocks, edges, edges[1:])])
    std = np.maximum(std, floor)
    weight = np.concatenate([np.full(n, 1 / np.sqrt(n)) for n in blocks])
    return (train - mean) / std * weight, (test - mean) / std * weight


def baselines(features: list[dict], train: list[int], test: list[int], labels: np.ndarray,
              subset: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{centroid, nn1: (predicted action index, confidence)} of the test takes on `subset`'s features; the
    confidence is a softmax over negative distances (class means, or each class's nearest take)."""
    def stack(rows: list[int]) -> np.ndarray:
        return np.stack([np.concatenate([features[i][m] for m in subset]) for i in rows])

    blocks = [features[train[0]][m].size for m in subset]
    x_train, x_test = standardise(stack(train), stack(test), blocks)
    y = labels[train]
    classes = np.unique(y)
    distances = np.linalg.norm(x_test[:, None] - x_train[None], axis=2)
    centres = np.stack([x_train[y == c].mean(axis=0) for c in classes])
    by_centroid = np.linalg.norm(x_test[:, None] - centres[None], axis=2)
    by_nearest = np.stack([distances[:, y == c].min(axis=1) for c in classes], axis=1)
    out = {}
    for name, d in (("centroid", by_centroid), ("nn1", by_nearest)):
        p = np.exp(-(d - d.min(axis=1, keepdims=True)))
        p /= p.sum(axis=1, keepdims=True)
        out[name] = (classes[d.argmin(axis=1)], p.max(axis=1))
    return out


def run_crossval(run: Run, source: Path, *, folds: int | None, seeds: int = 1, verbs: list[str] | None = None,
                 bundles: Path | None = None, progress=print) -> dict:
    """Cross-validate the learner (`seeds` trainings per fold) and the baselines on `run`'s recordings; with
    `bundles`, also export each fold's first-seed learner as `bundles/foldK` beside `foldK/held_out.csv`, the takes
    it never saw (to run them live)."""
    check_settings(run)
    bundle = load_bundle(source)
    run = replace(run, pre=bundle.preprocess)
    dataset = run.dataset("*", train=False)
    labels = dataset.labels
    takes = load_takes(dataset)
    spans = [(seg.media, seg.start / dataset.videos[seg.media].fps, (seg.stop + 1) / dataset.videos[seg.media].fps)
             for seg in dataset.segments]
    if verbs:
        unknown = sorted(set(verbs) - set(labels["verb"]))
        if unknown:
            raise ConfigError(f"--verbs {', '.join(unknown)} not among the takes' verbs {labels['verb']}.")
        keep = [i for i, t in enumerate(takes) if labels["verb"][t.verb] in verbs]
        takes, spans = [takes[i] for i in keep], [spans[i] for i in keep]
        takes, labels = relabel(takes, labels)
    actions = action_list(takes)
    if len(actions) < 2:
        raise ConfigError(f"cross-validation needs at least 2 actions; the takes show {len(actions)}.")
    truth = np.array([actions.index(t.action) for t in takes])
    features = [take_features(t, run.pre) for t in takes]
    have = {m for f in features for m in f}
    subsets = [s for s in SUBSETS if set(s) <= have]
    fold_of = make_folds(takes, folds, run.seed)
    n = len(takes)
    pred = {(who, s): np.full(n, -1) for who in LEARNERS for s in subsets}
    conf = {(who, s): np.full(n, np.nan) for who in LEARNERS for s in subsets}
    per_seed = {(seed, s): np.full(n, -1) for seed in range(seeds) for s in subsets}   # each seed's own prediction
    seconds = []
    for k, test in enumerate(fold_of):
        train = sorted(set(range(n)) - set(test))
        missing = sorted({actions[c] for c in truth[test]} - {actions[c] for c in truth[train]})
        if missing:
            raise ConfigError(f"fold {k + 1}: no training take shows {missing}; use fewer folds or record more takes.")
        start = time.time()
        probs_by_seed = []
        for seed in range(seeds):
            fold_run = replace(run, seed=run.seed + seed, out=run.out / f"fold{k}" / f"seed{seed}")
            claim_folder(fold_run.out, {"train": [takes[i].id for i in train], "finetune": asdict(run.cfg.finetune)})
            model = finetune_model(fold_run, bundle_model(bundle), [takes[i] for i in train], labels)
            probs_by_seed.append(predict_takes(fold_run, model, [takes[i] for i in test], actions))
            if bundles is not None and seed == 0:
                export_fold(model, run, labels, actions, bundles / f"fold{k}", [spans[i] for i in test],
                            [takes[i] for i in test])
        seconds.append(round((time.time() - start) / seeds, 1))
        for s in subsets:
            seed_probs = [p[s] for p in probs_by_seed if s in p]
            if not seed_probs:
                continue
            has = ~np.isnan(seed_probs[0][:, 0])
            scored = np.array(test)[has]
            for seed, p in enumerate(seed_probs):
                per_seed[(seed, s)][scored] = p[has].argmax(axis=1)
            mean = np.mean(seed_probs, axis=0)
            pred[("learner", s)][scored] = mean[has].argmax(axis=1)
            conf[("learner", s)][scored] = mean[has].max(axis=1)
            rows = [i for i in test if all(m in features[i] for m in s)]
            train_rows = [i for i in train if all(m in features[i] for m in s)]
            if rows and train_rows:
                for name, (p, c) in baselines(features, train_rows, rows, truth, s).items():
                    pred[(name, s)][rows], conf[(name, s)][rows] = p, c
        progress(f"fold {k + 1}/{len(fold_of)}: {len(test)} held-out takes, {seconds[-1]:.1f} s per training")
    return report(takes, [p for p, _, _ in spans], labels, actions, truth, fold_of, subsets, pred, conf, per_seed, seeds, seconds)


def export_fold(model, run: Run, labels: dict, actions: list, folder: Path, spans: list[tuple[str, float, float]],
                held_out: list[Take]) -> None:
    """A fold's learner as a bundle (`folder/bundle`) and its held-out takes (`folder/held_out.csv`: media, start,
    end in seconds, verb, noun: a take cut from a longer recording is only its span)."""
    folder.mkdir(parents=True, exist_ok=True)
    listed = [[labels["verb"][v], labels["noun"][n]] for v, n in actions]
    export_bundle(model.cpu(), run.pre, labels, folder / "bundle", name=f"{folder.name}-learner", actions=listed)
    with open(folder / "held_out.csv", "w", newline="") as fh:
        out = csv.writer(fh)
        out.writerow(["media", "start", "end", "verb", "noun"])
        for (path, start, end), t in zip(spans, held_out):
            out.writerow([path, f"{start:.3f}", f"{end:.3f}", labels["verb"][t.verb], labels["noun"][t.noun]])


def report(takes, media, labels, actions, truth, fold_of, subsets, pred, conf, per_seed, seeds, seconds) -> dict:
    """The `--json` document: accuracy per subset and learner, per class, per take, seconds per fold."""
    names = [f"{labels['verb'][v]} {labels['noun'][n]}" for v, n in actions]
    fold = np.zeros(len(takes), int)
    for k, f in enumerate(fold_of):
        fold[f] = k
    table, per_class = {}, {}
    for s in subsets:
        scored = pred[("learner", s)] >= 0
        table[s] = {who: round(100.0 * float((pred[(who, s)][scored] == truth[scored]).mean()), 1) for who in LEARNERS}
        table[s]["takes"] = int(scored.sum())
        if seeds > 1:
            table[s]["learner_seeds"] = [round(100.0 * float((per_seed[(seed, s)][scored] == truth[scored]).mean()), 1)
                                         for seed in range(seeds)]
        per_class[s] = {names[c]: {who: round(100.0 * float((pred[(who, s)][scored & (truth == c)] == c).mean()), 1)
                                   for who in LEARNERS} for c in range(len(actions)) if (scored & (truth == c)).any()}
    per_take = []
    for i, t in enumerate(takes):
        row = {"take": t.id, "media": media[i], "fold": int(fold[i]), "truth": names[truth[i]], "subsets": {}}
        for s in subsets:
            if pred[("learner", s)][i] >= 0:
                row["subsets"][s] = {who: {"prediction": names[pred[(who, s)][i]],
                                           "confidence": round(float(conf[(who, s)][i]), 3)} for who in LEARNERS}
        per_take.append(row)
    absent = [m for m in MODALITIES if not any(m in s for s in subsets)]
    main = max(subsets, key=lambda s: (table[s]["takes"], len(s)))     # most takes, then most modalities
    return {"folds": len(fold_of), "takes": len(takes), "actions": names, "seeds": seeds, "main_subset": main,
            "subsets": table,
            "absent": absent, "per_class": per_class, "per_take": per_take, "seconds_per_fold": seconds}


def format_report(result: dict) -> str:
    lines = [f"{result['takes']} takes, {len(result['actions'])} actions, {result['folds']} folds, learner "
             f"{result['seeds']} seed(s); action accuracy %:",
             f"{'subset':<7}{'takes':>6}{'learner':>9}{'centroid':>10}{'nn1':>6}" +
             ("  learner per seed" if result["seeds"] > 1 else "")]
    for s, row in result["subsets"].items():
        seeds = "  " + " / ".join(f"{a:.1f}" for a in row.get("learner_seeds", [])) if result["seeds"] > 1 else ""
        lines.append(f"{s:<7}{row['takes']:>6}{row['learner']:>9.1f}{row['centroid']:>10.1f}{row['nn1']:>6.1f}{seeds}")
    if result["absent"]:
        lines.append(f"absent: {', '.join(result['absent'])} (no take has it)")
    secs = result["seconds_per_fold"]
    lines.append(f"fine-tuning: {np.median(secs):.1f} s per fold (median; max {max(secs):.1f})")
    s = result["main_subset"]
    for r in result["per_take"]:
        x = r["subsets"][s]
        if x["learner"]["prediction"] == r["truth"]:
            continue
        lines.append(f"  learner wrong on {r['media']} ({s}): {r['truth']} read as {x['learner']['prediction']} "
                     f"({x['learner']['confidence']:.2f})")
    return "\n".join(lines)


def plot_confusions(result: dict, path: Path) -> None:
    """One confusion matrix per learner on the main subset (scored on the most takes)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = result["actions"]
    subset = result["main_subset"]
    fig, axes = plt.subplots(1, 3, figsize=(12, 4.6))
    for ax, who in zip(axes, LEARNERS):
        m = np.zeros((len(names), len(names)), int)
        for r in result["per_take"]:
            if subset in r["subsets"]:
                m[names.index(r["truth"]), names.index(r["subsets"][subset][who]["prediction"])] += 1
        ax.imshow(m, cmap="Blues")
        for (i, j), v in np.ndenumerate(m):
            if v:
                ax.text(j, i, str(v), ha="center", va="center", color="white" if v > m.max() / 2 else "black")
        ax.set_xticks(range(len(names)), names, rotation=45, ha="right", fontsize=8)
        ax.set_yticks(range(len(names)), names if who == "learner" else [], fontsize=8)
        ax.set_title(f"{who}: {result['subsets'][subset][who]:.0f} % ({subset})")
        ax.set_xlabel("predicted")
    axes[0].set_ylabel("truth")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
