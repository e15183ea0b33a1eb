"""Per-stage latency of the streaming models (p50/p95/p99 ms): student fp32, student int8 and teacher side by side
(and, with --against, another student fp32: what a new architecture or video backbone costs against the shipped one).

Each repetition runs one prediction's work for every model, in a shuffled order, so drift and noisy
neighbours hit all models alike. Stages: preprocess_video (camera frame -> model input), flow (DIS against
the previous sampled frame -> model input), video_encoder, flow_encoder, preprocess_audio (1 s window ->
log-mel), audio_encoder, fusion (last tokens + mask -> logits).
"total" is one prediction when a new sampled frame and a new audio hop have both arrived (an upper bound:
the live loop alternates video and audio ticks at 8 Hz), the sum of all stages in the same repetition;
"models" is its encoders + fusion part; "sampled_frame" is flow + video and flow encoders.
Inputs: a synthetic 640x480 BGR camera frame sequence (a drifting texture) and 1 s of 16 kHz noise.
--json prints rows {"model", "precision", "stage", "p50_ms", "p95_ms", "p99_ms"}.
"""
from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np

from edge.assets import ASSETS
from edge.bundle import ENCODER_INPUT, FUSION_INPUT, Bundle, load_bundle
from edge.errors import EdgeError
from edge.modalities import MODALITIES
from edge.preprocess import (compute_flow, flow_to_model_input, make_flow_backend, prepare_frame, video_input,
                             to_gray, to_rgb_uint8, window_to_model_input)

BUNDLES = ASSETS / "bundles"
DEFAULT_STUDENT = BUNDLES / "karmma_s"
DEFAULT_TEACHER = BUNDLES / "teacher"
STAGES = ("preprocess_video", "flow", "video_encoder", "flow_encoder", "preprocess_audio", "audio_encoder", "fusion")
MODEL_STAGES = ("video_encoder", "flow_encoder", "audio_encoder", "fusion")
FRAME_STAGES = ("flow", "video_encoder", "flow_encoder")
SUMS = ("sampled_frame", "models", "total")
CAMERA = (480, 640)


def percentiles_ms(times_s: np.ndarray | list[float]) -> dict[str, float]:
    p50, p95, p99 = np.percentile(np.asarray(times_s, dtype=np.float64) * 1000.0, [50, 95, 99])
    return {"p50_ms": round(float(p50), 4), "p95_ms": round(float(p95), 4), "p99_ms": round(float(p99), 4)}


def interleave(tasks: dict[str, Callable[[], dict[str, float]]], repetitions: int, warmup: int = 5,
               seed: int = 0) -> dict[str, dict[str, np.ndarray]]:
    """Run every task once per repetition in a shuffled order; each task returns {stage: seconds}.

    Returns, per task and stage, the seconds of every timed repetition (warm-up repetitions dropped).
    """
    order = list(tasks)
    rng = random.Random(seed)
    times: dict[str, dict[str, list[float]]] = {name: {} for name in order}
    for rep in range(warmup + repetitions):
        rng.shuffle(order)
        for name in order:
            stages = tasks[name]()
            if rep >= warmup:
                for stage, seconds in stages.items():
                    times[name].setdefault(stage, []).append(seconds)
    return {name: {s: np.asarray(v) for s, v in st.items()} for name, st in times.items()}


def timed_call(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def synthetic_frames(n: int, seed: int = 0) -> list[np.ndarray]:
    """A drifting random texture: camera-sized BGR frames with real motion for the flow stage."""
    rng = np.random.default_rng(seed)
    texture = rng.integers(0, 256, size=(CAMERA[0] + 64, CAMERA[1] + 64, 3), dtype=np.uint8)
    shifts = [(2 * i % 64, 3 * i % 64) for i in range(n)]
    return [np.ascontiguousarray(texture[dy:dy + CAMERA[0], dx:dx + CAMERA[1]]) for dy, dx in shifts]


class StreamingModel:
    """One bundle's per-prediction work, with its own flow backend and token windows."""

    def __init__(self, bundle: Bundle, role: str) -> None:
        self.bundle, self.role = bundle, role      # role: the rows' "model" (student, teacher, other student)
        self.flow_backend = make_flow_backend(bundle.preprocess.flow)
        dims, tokens = self.bundle.manifest["token_dim"], self.bundle.manifest["tokens"]
        rng = np.random.default_rng(1)
        self.windows = {m: rng.standard_normal((1, tokens[m], dims[m])).astype(np.float32) for m in "VFA"}
        self.mask = np.ones((1, 3), np.float32)
        self.prev_gray: np.ndarray | None = None
        self.prev_small: np.ndarray | None = None

    def predict(self, frame_bgr: np.ndarray, audio: np.ndarray, audio_rate: int) -> dict[str, float]:
        """Run and time each stage of one prediction; returns {stage: seconds}."""
        pre, b, t = self.bundle.preprocess, self.bundle, {}
        start = time.perf_counter()
        small = prepare_frame(to_rgb_uint8(frame_bgr), pre)
        frame = video_input(small, self.prev_small, pre)[None]
        self.prev_small = small
        gray = to_gray(small)
        t["preprocess_video"] = time.perf_counter() - start
        prev = gray if self.prev_gray is None else self.prev_gray
        start = time.perf_counter()
        flow = flow_to_model_input(compute_flow(self.flow_backend, prev, gray, pre), pre)[None]
        t["flow"] = time.perf_counter() - start
        self.prev_gray = gray
        start = time.perf_counter()
        logmel = window_to_model_input(audio, audio_rate, pre)[None]
        t["preprocess_audio"] = time.perf_counter() - start
        for m, x in (("V", frame), ("F", flow), ("A", logmel)):
            stage, input_name = ENCODER_INPUT[m]
            t[stage] = timed_call(lambda: b.run(stage, **{input_name: x}))
        windows = {FUSION_INPUT[m]: self.windows[m] for m in MODALITIES}
        t["fusion"] = timed_call(lambda: b.run("fusion", **windows, mask=self.mask))
        t["sampled_frame"] = sum(t[s] for s in FRAME_STAGES)
        t["models"] = sum(t[s] for s in MODEL_STAGES)
        t["total"] = sum(t[s] for s in STAGES)
        return t


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--bundle", type=Path, default=None,
                        help=f"student fp32 bundle (default {DEFAULT_STUDENT} when present)")
    parser.add_argument("--int8", type=Path, default=None,
                        help="student int8 bundle (default: the --bundle folder name + '_int8' when present)")
    parser.add_argument("--teacher", type=Path, default=None,
                        help=f"teacher bundle (default {DEFAULT_TEACHER} when present)")
    parser.add_argument("--against", "--previous", dest="against", type=Path, default=None,
                        help="another student fp32 bundle timed beside them (rows of model 'other student'): an "
                             "earlier student, or a fine-tuned one with another video backbone")
    parser.add_argument("--repetitions", type=int, default=300, help="timed predictions per model")
    parser.add_argument("--warmup", type=int, default=20, help="untimed predictions per model first")
    parser.add_argument("--threads", type=int, default=1, help="ONNX Runtime intra-op threads (the runtime's default)")
    parser.add_argument("--png", type=lambda s: Path(s) if s else None, default=Path("runs/bench/latency.png"),
                        help="where to write the histograms (default runs/bench/latency.png); '' for none")
    parser.add_argument("--json", action="store_true", help="print the rows as JSON instead of a table")


def _models(args: argparse.Namespace) -> dict[str, StreamingModel]:
    """Label -> model for every bundle asked for; defaults that are absent are skipped with a note."""
    student = args.bundle or DEFAULT_STUDENT
    wanted = [("student fp32", args.bundle, student),
              ("student int8", args.int8, student.with_name(student.name + "_int8")),
              ("teacher fp32", args.teacher, DEFAULT_TEACHER)]
    if args.against is not None:
        wanted.append(("other student fp32", args.against, None))
    models = {}
    for name, given, default in wanted:
        path = given or default
        if given is None and not path.is_dir():
            print(f"note: no {name} bundle at {path}; it is left out.", file=sys.stderr)
            continue
        bundle = load_bundle(path, threads=args.threads)
        role = bundle.manifest["kind"] if name != "other student fp32" else "other student"
        if role == "other student" and (bundle.manifest["kind"], bundle.precision) != ("student", "fp32"):
            raise EdgeError(f"--against {path} is a {bundle.manifest['kind']} {bundle.precision} bundle; "
                            "pass a student fp32 bundle.")
        label = f"{role} {bundle.precision}"
        if label in models:
            raise EdgeError(f"two bundles are both {label} ({models[label].bundle.path} and {path}).")
        models[label] = StreamingModel(bundle, role)
    if not models:
        raise EdgeError("no bundle to time: pass --bundle / --int8 / --teacher or ship assets/bundles/.")
    return models


def rows_of(times: dict[str, dict[str, np.ndarray]], models: dict[str, StreamingModel]) -> list[dict]:
    rows = []
    for label, stages in times.items():
        model = models[label]
        for stage in (*STAGES, *SUMS):
            rows.append({"model": model.role, "precision": model.bundle.precision, "stage": stage,
                         **percentiles_ms(stages[stage])})
    return rows


RATIOS = (("student fp32 / student int8", ("student", "fp32"), ("student", "int8")),
          ("teacher / student fp32", ("teacher", "fp32"), ("student", "fp32")),
          ("teacher / student int8", ("teacher", "fp32"), ("student", "int8")),
          ("other student fp32 / student fp32", ("other student", "fp32"), ("student", "fp32")))


def ratios(rows: list[dict]) -> dict[str, dict[str, float]]:
    """p50 ratios per stage for each pair of models present (above 1: the second is faster)."""
    p50 = {(r["model"], r["precision"], r["stage"]): r["p50_ms"] for r in rows}
    out = {}
    for name, num, den in RATIOS:
        got = {stage: round(p50[(*num, stage)] / p50[(*den, stage)], 2) for stage in (*STAGES, *SUMS)
               if (*num, stage) in p50 and p50.get((*den, stage))}
        if got:
            out[name] = got
    return out


def table(rows: list[dict]) -> str:
    labels = sorted({(r["model"], r["precision"]) for r in rows}, key=lambda k: (k[0] != "student", k[1]))
    by = {(r["model"], r["precision"], r["stage"]): r for r in rows}
    lines = [f"{'ms p50/p95/p99':<17}" + "".join(f"{m + ' ' + p:>32}" for m, p in labels)]
    for stage in (*STAGES, *SUMS):
        cells = "".join(f"{by[(*k, stage)]['p50_ms']:>12.3f}{by[(*k, stage)]['p95_ms']:>10.3f}"
                        f"{by[(*k, stage)]['p99_ms']:>10.3f}" for k in labels)
        lines.append(f"{stage:<17}{cells}")
    return "\n".join(lines)


def plot(times: dict[str, dict[str, np.ndarray]], path: Path) -> None:
    """Histograms of per-prediction total and per-stage latency, one colour per model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib import ticker

    panels = ("total", "models", "sampled_frame", *STAGES)
    fig, axes = plt.subplots(4, 3, figsize=(13, 13))
    for ax, stage in zip(axes.flat, panels):
        all_ms = np.concatenate([stages[stage] for stages in times.values()]) * 1000.0
        bins = np.geomspace(max(all_ms.min(), 1e-3), all_ms.max() * 1.01, 60)
        for label, stages in times.items():
            ax.hist(stages[stage] * 1000.0, bins=bins, alpha=0.5, label=label)
        ax.set_title(stage)
        ax.set_xlabel("ms (log scale)")
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(ticker.FormatStrFormatter("%g"))
        ax.xaxis.set_minor_formatter(ticker.NullFormatter())
    axes.flat[0].legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)


def run(args: argparse.Namespace) -> int:
    if args.repetitions < 10 or args.warmup < 0:
        raise EdgeError("--repetitions must be at least 10 and --warmup non-negative.")
    models = _models(args)
    frames = synthetic_frames(64)
    audio_rate = 16000
    audio = np.random.default_rng(2).normal(0, 0.1, audio_rate).astype(np.float32)
    counter = {label: 0 for label in models}

    def task(label: str) -> Callable[[], dict[str, float]]:
        def step() -> dict[str, float]:
            counter[label] += 1
            return models[label].predict(frames[counter[label] % len(frames)], audio, audio_rate)
        return step

    times = interleave({label: task(label) for label in models}, args.repetitions, args.warmup)
    rows = rows_of(times, models)
    if args.png is not None:
        plot(times, args.png)
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    print(f"{args.repetitions} interleaved predictions per model, {args.threads} ONNX Runtime thread(s); "
          "total = preprocess + flow + all encoders + fusion for one prediction")
    print(table(rows))
    for name, per_stage in ratios(rows).items():
        print(f"{name} (p50): " + ", ".join(f"{stage} {r:.2f}x" for stage, r in per_stage.items()))
    if args.png is not None:
        print(f"histograms: {args.png}")
    return 0
