"""Benchmarks: `python -m edge.bench <subcommand>` (see edge/bench/__main__.py for the list)."""
from __future__ import annotations

from pathlib import Path

from edge.assets import default_data_root
from edge.errors import EdgeError


def data_root(given: Path | None) -> Path:
    """--data-root, else the default data root; one sentence when there is none."""
    root = given or default_data_root()
    if root is None:
        raise EdgeError("no data root: pass --data-root, or set KARMMA_DATA_ROOT (default ../shared/data beside the "
                        "checkout).")
    return root


def median_ms(times_s: list[float]) -> float:
    """Median of a list of durations in seconds, in milliseconds."""
    ordered = sorted(times_s)
    mid = len(ordered) // 2
    value = ordered[mid] if len(ordered) % 2 else 0.5 * (ordered[mid - 1] + ordered[mid])
    return 1000.0 * value
