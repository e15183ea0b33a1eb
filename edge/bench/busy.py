"""Competing CPU load for the soak and overload benchmarks: busy-looping child processes."""
from __future__ import annotations

import subprocess
import sys
from contextlib import contextmanager
from typing import Iterator

_SPIN = "while True: pass"


def start_busy(n: int) -> list[subprocess.Popen]:
    """Start `n` processes that each keep one core busy until stopped."""
    return [subprocess.Popen([sys.executable, "-c", _SPIN], stdin=subprocess.DEVNULL,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for _ in range(n)]


def stop_busy(procs: list[subprocess.Popen]) -> None:
    """Kill the processes started by start_busy and reap them."""
    for proc in procs:
        proc.kill()
    for proc in procs:
        proc.wait()


@contextmanager
def busy(n: int) -> Iterator[list[subprocess.Popen]]:
    """`n` busy processes for the duration of the block."""
    procs = start_busy(n)
    try:
        yield procs
    finally:
        stop_busy(procs)
