"""Optical-flow quality and cost on the Middlebury pairs with ground truth (EPE px, median ms per pair).

Rows: every backend at size "model" (frames resized as the model sees them, PreprocessConfig().frame_size
square; ground truth area-resized and scaled per axis) and "full" (the original 584x388 frames).
--json prints a list of {"backend", "size", "epe_px", "ms_median"}; "farneback" is OpenCV's reference.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time

import numpy as np

from edge.bench import data_root, median_ms
from edge.bench.middlebury import epe, load_pairs, resize_flow
from edge.preprocess import PreprocessConfig, make_flow_backend, prepare_frame, to_gray, to_rgb_uint8

BACKENDS = ("dis", "torch", "farneback")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-root", type=str, default=None,
                        help="folder holding flow/<pair>/ (default: $KARMMA_DATA_ROOT or ../shared/data)")
    parser.add_argument("--backends", nargs="+", choices=BACKENDS, default=list(BACKENDS))
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per pair after one warm-up run")
    parser.add_argument("--json", action="store_true", help="print the rows as JSON")


def _inputs(cfg: PreprocessConfig, data_root) -> dict[str, list[tuple]]:
    """Per size: [(prev_gray, next_gray, gt_flow, valid)] for every pair."""
    out = {"model": [], "full": []}
    s = cfg.frame_size
    for pair in load_pairs(data_root):
        rgb = [to_rgb_uint8(f) for f in (pair.frame0_bgr, pair.frame1_bgr)]
        out["full"].append((to_gray(rgb[0]), to_gray(rgb[1]), pair.flow, pair.valid))
        out["model"].append((to_gray(prepare_frame(rgb[0], cfg)), to_gray(prepare_frame(rgb[1], cfg)),
                             *resize_flow(pair.flow, pair.valid, s, s)))
    return out


def measure(backend, pairs: list[tuple], repeats: int) -> tuple[float, float]:
    """(average EPE over the pairs, median ms per pair) of one backend."""
    errors, times = [], []
    for prev, nxt, gt, valid in pairs:
        errors.append(epe(backend(prev, nxt), gt, valid))  # also the warm-up run
        for _ in range(repeats):
            start = time.perf_counter()
            backend(prev, nxt)
            times.append(time.perf_counter() - start)
    return float(np.mean(errors)), median_ms(times)


def run(args: argparse.Namespace) -> int:
    cfg = PreprocessConfig()
    inputs = _inputs(cfg, data_root(args.data_root))
    rows = []
    for name in args.backends:
        try:
            backend = make_flow_backend(dataclasses.replace(cfg.flow, backend=name))
        except ImportError as exc:
            print(f"skipping the {name} flow backend: {exc}.", file=sys.stderr)
            continue
        for size, pairs in inputs.items():
            epe_px, ms = measure(backend, pairs, max(1, args.repeats))
            rows.append({"backend": name, "size": size, "epe_px": round(epe_px, 4), "ms_median": round(ms, 3)})
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    full_px = "x".join(str(v) for v in inputs["full"][0][0].shape[::-1])
    pixels = {"model": f"{cfg.frame_size}x{cfg.frame_size}", "full": full_px}
    print(f"Middlebury flow, {len(inputs['full'])} pairs; DIS preset {cfg.flow.preset!r}")
    print(f"{'backend':<10} {'size':<6} {'pixels':<8} {'EPE px':>7} {'ms/pair':>8}")
    for r in rows:
        print(f"{r['backend']:<10} {r['size']:<6} {pixels[r['size']]:<8} {r['epe_px']:>7.3f} {r['ms_median']:>8.2f}")
    by = {(r["backend"], r["size"]): r for r in rows}
    for size in ("model", "full"):
        if ("dis", size) in by and ("farneback", size) in by:
            d, f = by["dis", size], by["farneback", size]
            print(f"{size}: DIS is {f['ms_median'] / d['ms_median']:.1f}x faster than Farneback "
                  f"(EPE {d['epe_px']:.3f} vs {f['epe_px']:.3f} px).")
    return 0
