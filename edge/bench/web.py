"""Web view under load: the real-time live pipeline without and with `--serve` and N clients, side by side.

The demo stream (a MovingDigits-AV session from the test split at the bundle's training levels, real recordings
when the data root exists; looped, no dropouts) plays in real time through the live pipeline for --seconds
without the web view, then for --seconds with it and --clients clients on loopback (--rounds repeats the pair,
alternating, so a drifting background load hits both). Each client, like the page, loads / and /state once, then
follows /events (SSE) and /video.mjpg (MJPEG) to the end; the clients run in a separate process. Per run:
capture-to-prediction p50/p95/p99, skipped ticks, predictions, RSS at the start and end (and its maximum) of the
run; per served run also what each client received (predictions and frames per second) and refused requests.
--json prints one object.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import socket
import threading
import time
from pathlib import Path

import psutil

from edge.assets import default_bundle, default_data_root
from edge.bundle import Bundle, load_bundle
from edge.errors import EdgeError
from edge.live.config import DEFAULT_PATH, RuntimeConfig, load_runtime_config
from edge.moving_digits.config import session_levels
from edge.live.arrays import ArrayAudio, ArrayVideo
from edge.live.pipeline import recognizer_for, run_session
from edge.live.sensors import Sensor
from edge.live.web import WebView
from edge.moving_digits import DEFAULT_SPLITS, Session, load_sources, render_session

CLIENT_STREAMS = ("/events", "/video.mjpg")


def _follow(port: int, path: str, stop: threading.Event, counts: dict, key: str, marker: bytes) -> None:
    """One client connection: GET path, then read (and count `marker`) until stopped or the server closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(f"GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
        s.settimeout(1.0)
        tail = b""
        while not stop.is_set():
            try:
                chunk = s.recv(65536)
            except TimeoutError:
                continue
            if not chunk:
                break
            counts["bytes"] += len(chunk)
            data = tail + chunk
            counts[key] += data.count(marker)
            tail = data[-len(marker) + 1:]


def run_clients(port: int, n: int, stop: multiprocessing.synchronize.Event,
                results: multiprocessing.queues.Queue) -> None:
    """N page-like clients (in their own process): / and /state once, then /events and /video.mjpg until `stop`."""
    done = threading.Event()
    counts = [{"bytes": 0, "predictions": 0, "frames": 0} for _ in range(n)]
    threads = []
    for i in range(n):
        for path in ("/", "/state"):
            with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
                s.sendall(f"GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
                while s.recv(65536):
                    pass
        threads += [threading.Thread(target=_follow, args=(port, "/events", done, counts[i], "predictions",
                                                           b"event: prediction\n"), daemon=True),
                    threading.Thread(target=_follow, args=(port, "/video.mjpg", done, counts[i], "frames",
                                                           b"Content-Type: image/jpeg"), daemon=True)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    stop.wait()
    seconds = time.monotonic() - t0
    done.set()
    for t in threads:
        t.join(timeout=3)
    results.put({"seconds": seconds, "clients": counts})


class RssSampler(threading.Thread):
    """This process's RSS in MB, every `every_s` seconds, until stopped."""

    def __init__(self, every_s: float = 1.0) -> None:
        super().__init__(name="rss", daemon=True)
        self.every_s, self.samples, self.stop = every_s, [], threading.Event()
        self.process = psutil.Process()

    def run(self) -> None:
        while True:
            self.samples.append(self.process.memory_info().rss / 2**20)
            if self.stop.wait(self.every_s):
                return

    def report(self) -> dict:
        self.stop.set()
        self.join()
        self.samples.append(self.process.memory_info().rss / 2**20)
        s = self.samples
        return {"start": round(s[0], 1), "end": round(s[-1], 1), "max": round(max(s), 1),
                "growth": round(s[-1] - s[0], 1), "max_growth": round(max(s) - s[0], 1)}


def one_run(bundle: Bundle, cfg: RuntimeConfig, session: Session, seconds: float, clients: int) -> dict:
    """One real-time run of the looped session, with the web view and `clients` clients when clients > 0."""
    rate = session.sample_rate
    video = ArrayVideo(session.frames, session.fps, name="camera", loop=True)
    audio = ArrayAudio(session.audio, rate, block_s=cfg.capture.mic_block_s, name="microphone", loop=True)
    rss = RssSampler()
    rss.start()
    video, audio = Sensor(video), Sensor(audio)
    core = recognizer_for(bundle, cfg, video, audio)
    sinks: list = []
    view = process = None
    if clients:
        view = WebView("127.0.0.1", 0)
        sinks.append(view.sink(core))
        ctx = multiprocessing.get_context("spawn")
        stop, results = ctx.Event(), ctx.Queue()
        process = ctx.Process(target=run_clients, args=(view.port, clients, stop, results), daemon=True)
        process.start()
        deadline = time.monotonic() + 60
        while view.connections < clients * len(CLIENT_STREAMS):  # connected before the run: its start-up
            if time.monotonic() > deadline or not process.is_alive():  # is not measured
                raise EdgeError("the web clients did not connect within 60 s.")
            time.sleep(0.1)
    try:
        summary = run_session(bundle, cfg, video, audio, sinks, realtime=True, duration_s=seconds, core=core).summary
    finally:
        if process is not None:
            stop.set()
    out = {"web_view": bool(clients), "clients": clients, "seconds": seconds,
           "capture_to_prediction_ms": {k: summary["capture_to_prediction_ms"].get(k) for k in ("p50", "p95", "p99")},
           "predictions": summary["counters"].get("predictions", 0),
           "skipped_ticks": summary["counters"].get("late_ticks", 0),
           "cpu_percent": summary["cpu_percent"], "rss_mb": rss.report()}
    if process is not None:
        received = results.get(timeout=30)
        process.join(timeout=10)
        warning = view.close()
        per = received["clients"]
        secs = received["seconds"]
        out["received_per_client"] = {
            "predictions_per_s": [round(min(c["predictions"] for c in per) / secs, 2),
                                  round(max(c["predictions"] for c in per) / secs, 2)],
            "frames_per_s": [round(min(c["frames"] for c in per) / secs, 2),
                             round(max(c["frames"] for c in per) / secs, 2)],
            "mb": round(sum(c["bytes"] for c in per) / len(per) / 2**20, 2)}
        out["predictions_per_s"] = round(out["predictions"] / seconds, 2)
        out["refused"] = warning
    return out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--clients", type=int, default=20, help="web clients in the served run")
    parser.add_argument("--seconds", type=float, default=60.0, help="seconds per run")
    parser.add_argument("--rounds", type=int, default=1, help="pairs of runs (without, with the web view)")
    parser.add_argument("--data-root", type=Path, default=None,
                        help="real recordings (default: $KARMMA_DATA_ROOT or ../shared/data when present, else "
                        "the procedural source)")
    parser.add_argument("--bundle", type=Path, default=None, help="model bundle (default: the live default)")
    parser.add_argument("--config", type=Path, default=DEFAULT_PATH, help="runtime settings YAML")
    parser.add_argument("--json", action="store_true", help="print the report as one JSON object")


def run(args: argparse.Namespace) -> int:
    if args.clients < 1 or args.seconds <= 0 or args.rounds < 1:
        raise EdgeError("--clients and --rounds must be at least 1 and --seconds positive.")
    bundle = load_bundle(args.bundle or default_bundle(), threads=1)
    cfg = load_runtime_config(args.config)
    root = args.data_root or default_data_root()      # none: procedural sources
    split = DEFAULT_SPLITS["test"]
    rate = bundle.preprocess.audio_sample_rate
    sources = load_sources(root, speakers=list(split.speakers), images=split.images, sample_rate=rate)
    session = render_session(sources, 0, 8, session_levels(bundle)[0], sample_rate=rate)
    runs = [one_run(bundle, cfg, session, args.seconds, clients)
            for _ in range(args.rounds) for clients in (0, args.clients)]
    report = {"stream": f"{session.source} demo session, {session.duration_s:.1f} s looped",
              "bundle": bundle.manifest["name"], "runs": runs}
    if args.json:
        print(json.dumps(report, indent=1))
        return 0
    print(f"{report['stream']}, bundle {report['bundle']}")
    for r in runs:
        c = r["capture_to_prediction_ms"]
        line = (f"{'served, ' + str(r['clients']) + ' clients' if r['web_view'] else 'no web view':<20} "
                f"c2p p50 {c['p50']:.2f}  p95 {c['p95']:.2f}  p99 {c['p99']:.2f} ms | skipped ticks "
                f"{r['skipped_ticks']} | {r['predictions']} predictions | RSS {r['rss_mb']['start']:.1f} -> "
                f"{r['rss_mb']['end']:.1f} MB (max {r['rss_mb']['max']:.1f}) | CPU {r['cpu_percent']:.0f} %")
        if r["web_view"]:
            got = r["received_per_client"]
            line += (f"\n{'':<20} each client: {got['predictions_per_s'][0]}-{got['predictions_per_s'][1]} "
                     f"predictions/s, {got['frames_per_s'][0]}-{got['frames_per_s'][1]} frames/s, {got['mb']} MB; "
                     f"{r['refused'] or 'no request refused'}")
        print(line)
    return 0
