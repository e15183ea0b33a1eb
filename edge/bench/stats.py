"""Health-monitor frame statistics (edge.stats): numba one-pass kernel vs the numpy fallback, median us per call.

Inputs: a 640x480 BGR camera frame and a 64x64 model-size frame, each with a previous frame; both
implementations see the same arrays (the numba kernel is compiled before timing).
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np

from edge import stats
from edge.bench import median_ms
from edge.errors import EdgeError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--repeats", type=int, default=200, help="timed calls per case and implementation")
    parser.add_argument("--json", action="store_true",
                        help='print a list of {"case", "numpy_us", "numba_us", "speedup"}')


def _time_us(fn, args: tuple, repeats: int) -> float:
    fn(*args)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn(*args)
        times.append(time.perf_counter() - start)
    return 1000.0 * median_ms(times)


def run(args: argparse.Namespace) -> int:
    if stats._numba_kernel() is None:
        raise EdgeError("numba is not installed, so there is nothing to compare the numpy statistics with.")
    rng = np.random.default_rng(0)
    cam = rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)
    cam_prev = np.clip(cam.astype(np.int16) + rng.integers(-3, 4, cam.shape), 0, 255).astype(np.uint8)
    small = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    cases = [
        ("frame_stats 640x480x3 + prev", (cam.reshape(-1), cam_prev.reshape(-1))),
        ("frame_stats 640x480x3", (cam.reshape(-1), None)),
        ("frame_stats 64x64x3 + prev", (small.reshape(-1), small[::-1].copy().reshape(-1))),
    ]
    rows = []
    repeats = max(1, args.repeats)
    for case, inputs in cases:
        np_fn, nb_fn = stats._frame_stats_numpy, stats._frame_stats_numba
        np.testing.assert_allclose(np_fn(*inputs), nb_fn(*inputs), rtol=1e-9)
        t_np, t_nb = _time_us(np_fn, inputs, repeats), _time_us(nb_fn, inputs, repeats)
        rows.append({"case": case, "numpy_us": round(t_np, 1), "numba_us": round(t_nb, 1),
                     "speedup": round(t_np / t_nb, 2)})
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    print(f"{'case':<30} {'numpy us':>9} {'numba us':>9} {'speedup':>8}")
    for r in rows:
        print(f"{r['case']:<30} {r['numpy_us']:>9.1f} {r['numba_us']:>9.1f} {r['speedup']:>7.1f}x")
    return 0
