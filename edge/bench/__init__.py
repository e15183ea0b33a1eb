"""Benchmarks: `python -m edge.bench <subcommand>` (see edge/bench/__main__.py for the list)."""
from __future__ import annotations

import os
from pathlib import Path

DEFAULT_DATA_ROOT = "../shared/data"


def default_data_root() -> Path:
    """The data root: $KARMMA_DATA_ROOT, else ../shared/data (relative to the working directory)."""
    return Path(os.environ.get("KARMMA_DATA_ROOT", DEFAULT_DATA_ROOT))


def median_ms(times_s: list[float]) -> float:
    """Median of a list of durations in seconds, in milliseconds."""
    ordered = sorted(times_s)
    mid = len(ordered) // 2
    value = ordered[mid] if len(ordered) % 2 else 0.5 * (ordered[mid - 1] + ordered[mid])
    return 1000.0 * value
