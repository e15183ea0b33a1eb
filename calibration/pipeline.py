"""fp32 bundle -> int8 bundle: quantize every role in each format, pick the fastest combination that keeps
the accuracy on the validation split, measure retention on the test split, fit temperatures, write the bundle.
"""
from __future__ import annotations

import itertools
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from calibration.data import encoder_feeds, fusion_feeds
from calibration.evaluate import accuracy_table, encode, open_session, subset_logits
from calibration.quantize import ENCODER_VARIANTS, FUSION_VARIANTS, Variant, quantize_variant
from calibration.temperature import action_confidence, expected_calibration_error, fit_temperature
from edge.bench.latency import interleave, timed_call
from edge.bundle import ENCODER_INPUT, FUSION_INPUT, ROLES, load_bundle, write_bundle
from edge.modalities import MODALITIES, SUBSETS, subset_mask
from trainer.data.clip_set import ClipSet

MODALITY_OF = {role: m for m, (role, _) in ENCODER_INPUT.items()}


@dataclass
class Splits:
    calib: ClipSet   # drawn from the validation split: calibration ranges (inputs only)
    val: ClipSet     # validation split: format choice and temperatures (labels used)
    test: ClipSet    # test split: the reported retention and ECE


@dataclass
class Targets:
    max_action_loss: float = 1.0   # points of action accuracy int8 may lose on any subset
    max_size_ratio: float = 0.30   # int8 files / fp32 files


def _variants(role: str) -> tuple[Variant, ...]:
    return FUSION_VARIANTS if role == "fusion" else ENCODER_VARIANTS


def _single_feed(role: str, clips: ClipSet, tokens: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """One batch-1 input of `role` from the first clip (all modalities present), for timing."""
    if role == "fusion":
        return {**{FUSION_INPUT[m]: tokens[m][:1] for m in MODALITIES}, "mask": subset_mask("VFA", 1)}
    m = MODALITY_OF[role]
    return {ENCODER_INPUT[m][1]: clips.inputs[m][0, :1].astype(np.float32)}


def _time_role(paths: dict[str, Path], feed: dict[str, np.ndarray], repetitions: int, threads: int) -> dict[str, float]:
    """Median ms per batch-1 call of each model file, timed interleaved."""
    sessions = {name: open_session(p, threads) for name, p in paths.items()}
    times = interleave({name: (lambda s=s: {"call": timed_call(lambda: s.run(None, feed))})
                        for name, s in sessions.items()}, repetitions, warmup=10)
    return {name: round(float(np.median(t["call"])) * 1000.0, 4) for name, t in times.items()}


def _losses(fp32: dict, int8: dict) -> dict[str, float]:
    return {s: round(fp32[s]["action"] - int8[s]["action"], 2) for s in SUBSETS}


def calibrate(bundle_dir: str | Path, splits: Splits, out_dir: str | Path, *, encoder_inputs: int = 512,
              masks_per_clip: int = 4, seed: int = 0, threads: int = 1, timing_repetitions: int = 200,
              targets: Targets = Targets(), source: dict | None = None, write_anyway: bool = False,
              method: str = "minmax", log: Callable[[str], None] = print) -> dict:
    """Quantize `bundle_dir`, write the int8 bundle to `out_dir` when it meets `targets` (or `write_anyway`),
    and return the report (calibration/report.py renders its tables)."""
    fp32 = load_bundle(bundle_dir, threads=threads)
    fp32_paths = {role: Path(bundle_dir) / fp32.manifest["files"][role]["path"] for role in ROLES}
    rng = np.random.default_rng(seed)
    fp32_tokens = {m: encode(fp32.sessions[role], splits.calib.inputs[m]) for m, (role, _) in ENCODER_INPUT.items()}
    feeds = {role: encoder_feeds(splits.calib.inputs[MODALITY_OF[role]], ENCODER_INPUT[MODALITY_OF[role]][1],
                                 encoder_inputs, rng) for role in ROLES if role != "fusion"}
    feeds["fusion"] = fusion_feeds(fp32_tokens, masks_per_clip, rng)
    log(f"calibration inputs: {', '.join(f'{r} {len(f)}' for r, f in feeds.items())}")

    with tempfile.TemporaryDirectory() as tmp:
        paths: dict[str, dict[str, Path]] = {}
        variants_report: dict[str, list[dict]] = {}
        for role in ROLES:
            paths[role] = {"fp32": fp32_paths[role]}
            for v in _variants(role):
                log(f"quantizing {role} as {v.name}")
                paths[role][v.name] = quantize_variant(fp32_paths[role], Path(tmp) / f"{role}.{v.name}.onnx",
                                                       feeds[role], v, method)
            timing = _time_role(paths[role], _single_feed(role, splits.val, fp32_tokens), timing_repetitions, threads)
            variants_report[role] = [
                {"variant": name, "description": next((v.description for v in _variants(role) if v.name == name),
                                                      "float32 reference"),
                 "median_ms": timing[name], "bytes": p.stat().st_size} for name, p in paths[role].items()]

        choice, combos = _choose(paths, variants_report, splits.val, targets, threads, log)
        chosen = {role: paths[role][choice[role]] for role in ROLES}
        log("scoring fp32 and int8 on the test split")
        fp32_test = _logits({r: fp32_paths[r] for r in ROLES}, splits.test, threads)
        int8_test = _logits(chosen, splits.test, threads)
        int8_val = _logits(chosen, splits.val, threads)
        retention = {"fp32": accuracy_table(fp32_test, splits.test), "int8": accuracy_table(int8_test, splits.test)}
        retention["action_loss"] = _losses(retention["fp32"], retention["int8"])
        temperatures, ece = _temperatures(int8_val, splits.val, int8_test, splits.test)
        fp32_bytes = sum(p.stat().st_size for p in fp32_paths.values())
        int8_bytes = sum(p.stat().st_size for p in chosen.values())
        met = {"action_loss": max(retention["action_loss"].values()) <= targets.max_action_loss,
               "size": int8_bytes / fp32_bytes <= targets.max_size_ratio}
        report = {
            "bundle": str(bundle_dir), "out": str(out_dir), "source": dict(source or {}),
            "clips": {"calib": len(splits.calib), "val": len(splits.val), "test": len(splits.test)},
            "calibration_inputs": {r: len(f) for r, f in feeds.items()}, "method": method,
            "variants": variants_report, "combinations_val": combos, "choice": choice,
            "retention_test": retention, "temperatures": temperatures, "ece_test": ece,
            "size": {"fp32_bytes": fp32_bytes, "int8_bytes": int8_bytes, "ratio": round(int8_bytes / fp32_bytes, 4)},
            "targets": {"max_action_loss": targets.max_action_loss, "max_size_ratio": targets.max_size_ratio,
                        "met": met},
        }
        report["written"] = all(met.values()) or write_anyway
        if report["written"]:
            _write(fp32.manifest, chosen, out_dir, report, seed, masks_per_clip)
            log(f"wrote {out_dir}")
    return report


def _logits(paths: dict[str, Path], clips: ClipSet, threads: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    sessions = {role: open_session(p, threads) for role, p in paths.items()}
    tokens = {m: encode(sessions[role], clips.inputs[m]) for m, (role, _) in ENCODER_INPUT.items()}
    return subset_logits(sessions["fusion"], tokens)


def _choose(paths: dict[str, dict[str, Path]], variants_report: dict[str, list[dict]], val: ClipSet,
            targets: Targets, threads: int, log: Callable[[str], None]) -> tuple[dict[str, str], list[dict]]:
    """Score every int8 combination on the validation split; keep the fastest that meets both targets.

    Speed = the sum of the roles' median call times (one sampled frame + one audio hop + one fusion).
    With no combination meeting the targets, the one losing the least action accuracy is kept.
    """
    ms = {role: {r["variant"]: r["median_ms"] for r in rows} for role, rows in variants_report.items()}
    size = {role: {r["variant"]: r["bytes"] for r in rows} for role, rows in variants_report.items()}
    fp32_size = sum(size[role]["fp32"] for role in ROLES)
    sessions = {role: {name: open_session(p, threads) for name, p in by.items()} for role, by in paths.items()}
    tokens = {role: {name: encode(s, val.inputs[MODALITY_OF[role]]) for name, s in by.items()}
              for role, by in sessions.items() if role != "fusion"}

    def table_of(combo: dict[str, str]) -> dict:
        tok = {MODALITY_OF[role]: tokens[role][combo[role]] for role in tokens}
        return accuracy_table(subset_logits(sessions["fusion"][combo["fusion"]], tok), val)

    reference = table_of({role: "fp32" for role in ROLES})
    combos = []
    names = [[v.name for v in _variants(role)] for role in ROLES]
    for pick in itertools.product(*names):
        combo = dict(zip(ROLES, pick))
        losses = _losses(reference, table_of(combo))
        combos.append({"choice": combo, "ms": round(sum(ms[r][combo[r]] for r in ROLES), 4),
                       "size_ratio": round(sum(size[r][combo[r]] for r in ROLES) / fp32_size, 4),
                       "worst_action_loss": max(losses.values()), "action_loss": losses})
    combos.sort(key=lambda c: (round(c["ms"], 2), c["size_ratio"]))  # ties within 0.01 ms: smaller files
    ok = [c for c in combos if c["worst_action_loss"] <= targets.max_action_loss
          and c["size_ratio"] <= targets.max_size_ratio]
    best = ok[0] if ok else min(combos, key=lambda c: (c["worst_action_loss"], c["ms"]))
    log(f"chosen on the validation split: {best['choice']} ({best['ms']:.3f} ms per prediction, "
        f"worst action loss {best['worst_action_loss']:.2f} points, size {100 * best['size_ratio']:.1f} %)"
        + ("" if ok else "; no combination met the targets"))
    return best["choice"], combos


def _temperatures(val_logits: dict, val: ClipSet, test_logits: dict, test: ClipSet) -> tuple[dict, dict]:
    """T per subset fitted on the validation split; ECE (%) on the test split before and after."""
    temperatures, ece = {}, {}
    for s in SUBSETS:
        t = fit_temperature(*val_logits[s], val.verb, val.noun)
        temperatures[s] = round(t, 4)
        before = expected_calibration_error(*action_confidence(*test_logits[s], test.verb, test.noun))
        after = expected_calibration_error(*action_confidence(*test_logits[s], test.verb, test.noun, t))
        ece[s] = {"before": round(before, 2), "after": round(after, 2)}
    return temperatures, ece


def _write(manifest: dict, chosen: dict[str, Path], out_dir: str | Path, report: dict, seed: int,
           masks_per_clip: int) -> None:
    keep = {k: v for k, v in manifest.items() if k not in ("files", "format_version")}
    extra = dict(keep.get("extra") or {})
    extra["quantization"] = {"tool": "onnxruntime.quantization.quantize_static", "weights": "int8 per channel",
                             "activations": f"uint8 per tensor, {report['method']}",
                             "formats": dict(report["choice"]),
                             "fp32_bundle": {"name": manifest["name"],
                                             "fusion_sha256": manifest["files"]["fusion"]["sha256"]}}
    extra["calibration_set"] = {**report["source"], "clips": report["clips"]["calib"],
                                "inputs": report["calibration_inputs"], "seed": seed,
                                "fusion_masks": f"{masks_per_clip} random non-empty modality subsets per clip, "
                                                "missing tokens zeroed"}
    metrics = {"test_accuracy_int8": report["retention_test"]["int8"],
               "test_accuracy_fp32": report["retention_test"]["fp32"], "test_ece": report["ece_test"]}
    out = {**keep, "name": f"{manifest['name']}-int8", "precision": "int8",
           "temperatures": report["temperatures"], "metrics": metrics, "extra": extra}
    write_bundle(out_dir, out, chosen)
