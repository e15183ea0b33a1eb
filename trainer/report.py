"""results.json, results.md and the random-drop plot of one benchmark run."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from edge.modalities import SUBSETS

MODEL_NAMES = {"teacher": "Teacher", "baseline": "Baseline", "baseline_delta": "Baseline w/ δ", "karmma_s": "KARMMA_S"}
STUDENTS = ("baseline", "baseline_delta", "karmma_s")


def aggregate(runs: dict[str, list[dict]]) -> tuple[list[dict], list[dict]]:
    """Per model, a list over seeds of {"table": {subset: accs}, "curve": {p: action}} -> mean (+ std) rows."""
    table, curve = [], []
    for model, per_seed in runs.items():
        for subset in (s for s in SUBSETS if s in per_seed[0]["table"]):    # a subset no sample has is left out
            row = {"model": model, "modalities": subset}
            for key in ("verb", "noun", "action"):
                values = [r["table"][subset][key] for r in per_seed]
                row[key] = round(float(np.mean(values)), 2)
                if len(values) > 1:
                    row[f"{key}_std"] = round(float(np.std(values)), 2)
            table.append(row)
        for p in per_seed[0]["curve"]:
            values = [r["curve"][p] for r in per_seed]
            row = {"model": model, "p": p, "action": round(float(np.mean(values)), 2)}
            if len(values) > 1:
                row["action_std"] = round(float(np.std(values)), 2)
            curve.append(row)
    return table, curve


def check_targets(table: list[dict], curve: list[dict], costs: dict) -> dict[str, Any]:
    """The issue's targets, each with whether it holds and the margin (positive = met by that much)."""
    acc = {(r["model"], r["modalities"]): r for r in table}
    out: dict[str, Any] = {}
    for subset in (s for s in SUBSETS[1:] if ("baseline", s) in acc):
        k, d, b = (acc[(m, subset)]["action"] for m in STUDENTS[::-1])
        out[f"order_{subset}"] = {"holds": k >= d >= b, "karmma_minus_delta": round(k - d, 2),
                                  "delta_minus_baseline": round(d - b, 2)}
    cur = {(r["model"], r["p"]): r["action"] for r in curve}
    margins = [cur[("karmma_s", p)] - max(cur[("baseline_delta", p)], cur[("baseline", p)])
               for (m, p) in cur if m == "karmma_s" and p >= 0.3 - 1e-9]
    out["curve_above_p>=0.3"] = {"holds": min(margins) > 0, "min_margin": round(min(margins), 2)}
    k_full, b_full = acc[("karmma_s", "VFA")], acc[("baseline", "VFA")]
    spread = max(k_full.get("action_std", 0.0), b_full.get("action_std", 0.0))
    out["VFA_karmma_vs_baseline"] = {"holds": k_full["action"] >= b_full["action"] - spread,
                                     "margin": round(k_full["action"] - b_full["action"], 2), "seed_spread": spread}
    s, t = costs["student"], costs["teacher"]
    out["student_frame_mflops<=60"] = {"holds": s["mflops_per_sampled_frame"] <= 60,
                                       "value": round(s["mflops_per_sampled_frame"], 2)}
    out["student_fusion_mflops<=10"] = {"holds": s["mflops_per_fusion_call"] <= 10,
                                        "value": round(s["mflops_per_fusion_call"], 2)}
    ratio = t["mflops_whole_window"] / s["mflops_whole_window"]
    out["teacher>=5x_student"] = {"holds": ratio >= 5, "ratio": round(ratio, 2)}
    return out


def _fmt(row: dict, key: str) -> str:
    std = row.get(f"{key}_std")
    return f"{row[key]:.1f}" + (f" ± {std:.1f}" if std is not None else "")


def markdown(results: dict) -> str:
    table, curve, costs = results["table"], results["drop_curve"], results["costs"]
    acc = {(r["model"], r["modalities"]): r for r in table}
    models = [m for m in MODEL_NAMES if any(r["model"] == m for r in table)]
    subsets = [s for s in SUBSETS if (models[0], s) in acc]
    dataset = {"moving-digits": "MovingDigits-AV"}.get(results["data"].get("dataset"), results["data"].get("dataset"))
    lines = [f"# {dataset} benchmark ({results['data']['source']}, split {results['data']['eval_split']})", "",
             f"Seeds: {results['seeds']}; wall time {results['wall_time_s'] / 60:.1f} min. "
             f"Accuracy in % ({results['data']['n_eval']} samples); action = verb and noun both correct.", "",
             "## Action accuracy per available-modality subset", "",
             "| modalities | " + " | ".join(MODEL_NAMES[m] for m in models) + " |",
             "|---|" + "---|" * len(models)]
    for subset in subsets:
        lines.append(f"| {subset} | " + " | ".join(_fmt(acc[(m, subset)], "action") for m in models) + " |")
    lines += ["", "## Verb / noun accuracy", "", "| modalities | " + " | ".join(MODEL_NAMES[m] for m in models) + " |",
              "|---|" + "---|" * len(models)]
    for subset in subsets:
        lines.append(f"| {subset} | " + " | ".join(
            f"{acc[(m, subset)]['verb']:.1f} / {acc[(m, subset)]['noun']:.1f}" for m in models) + " |")
    ps = sorted({r["p"] for r in curve})
    cur = {(r["model"], r["p"]): r for r in curve}
    lines += ["", "## Random modality drop (each modality missing with probability p; all-missing draws redrawn)", "",
              "| model | " + " | ".join(f"p={p:.1f}" for p in ps) + " |", "|---|" + "---|" * len(ps)]
    for m in models:
        lines.append(f"| {MODEL_NAMES[m]} | " + " | ".join(_fmt(cur[(m, p)], "action") for p in ps) + " |")
    lines += ["", "## Cost (batch 1; conv + matmul FLOPs, 2 per multiply-add)", "",
              "| model | params (M) | MFLOPs / sampled frame (V+F) | MFLOPs / audio hop | MFLOPs / fusion call "
              "| MFLOPs / whole window |", "|---|---|---|---|---|---|"]
    for name in ("teacher", "student"):
        c = costs[name]
        lines.append(f"| {name} | {c['params_m']:.2f} | {c['mflops_per_sampled_frame']:.1f} | "
                     f"{c['mflops_per_audio_hop']:.1f} | {c['mflops_per_fusion_call']:.2f} | {c['mflops_whole_window']:.1f} |")
    lines += ["", "## Targets", ""]
    for name, verdict in results["targets"].items():
        detail = ", ".join(f"{k} {v}" for k, v in verdict.items() if k != "holds")
        lines.append(f"- {name}: {'met' if verdict['holds'] else 'MISSED'} ({detail})")
    return "\n".join(lines) + "\n"


def plot_curve(curve: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 4))
    for model, label in MODEL_NAMES.items():
        rows = sorted((r for r in curve if r["model"] == model), key=lambda r: r["p"])
        if rows:
            ax.plot([r["p"] for r in rows], [r["action"] for r in rows], marker="o", label=label)
    ax.set_xlabel("per-modality drop probability p")
    ax.set_ylabel("action accuracy (%)")
    ax.set_title("random modality drop")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def write_results(results: dict, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    _write_atomic(out / "results.json", json.dumps(results, indent=1))
    _write_atomic(out / "results.md", markdown(results))
    plot_curve(results["drop_curve"], out / "drop_curve.png")
