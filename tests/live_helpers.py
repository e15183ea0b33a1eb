"""Running the live pipeline in a test: one call, its summary, its records and the core it ran."""
from __future__ import annotations

import time
from pathlib import Path

from edge.bundle import Bundle
from edge.live.config import RuntimeConfig
from edge.live.core import Recognizer
from edge.live.pipeline import recognizer_for, run_session
from edge.live.sensors import Sensor
from edge.live.sources import Source


def run_live_session(bundle: Bundle, video: Source | None, audio: Source | None = None, *,
                     cfg: RuntimeConfig | None = None, realtime: bool = False,
                     duration_s: float | None = None) -> tuple[dict, list[dict], Recognizer]:
    """Run opened sources (None: that sensor is off) through run_session; (summary, records, core)."""
    cfg = cfg or RuntimeConfig()
    sensors = [Sensor(s) if s is not None else Sensor(None, "off") for s in (video, audio)]
    core = recognizer_for(bundle, cfg, *sensors)
    records: list[dict] = []
    outcome = run_session(bundle, cfg, *sensors, [records.append], realtime=realtime, duration_s=duration_s,
                          core=core)
    return outcome.summary, records, core


def wait_for_a_prediction(path: Path, timeout_s: float = 30.0) -> None:
    """Until the JSONL a live run is writing holds a prediction with an action (a loaded CPU starts slowly)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if path.is_file() and '"state": "ok"' in path.read_text():
            return
        time.sleep(0.05)
    raise AssertionError(f"no prediction in {path} after {timeout_s} s")
