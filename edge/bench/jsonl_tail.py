"""Follow a growing JSONL file (run_live.py --jsonl) from another process, stamping each record with the
time.monotonic() it appeared: what a bench or a test compares with the moments it changed the devices."""
from __future__ import annotations

import json
import threading
import time
from pathlib import Path


class JsonlTail(threading.Thread):
    """Collects a growing JSONL file's records, each stamped with the time.monotonic() it appeared."""

    def __init__(self, path: Path) -> None:
        super().__init__(name="jsonl-tail", daemon=True)
        self.path, self.records, self.done = path, [], threading.Event()

    def run(self) -> None:
        while not self.path.exists() and not self.done.wait(0.01):
            pass
        if not self.path.exists():
            return
        buf = ""
        with open(self.path) as f:
            while True:
                chunk = f.read()
                if chunk:
                    stamp = time.monotonic()
                    *lines, buf = (buf + chunk).split("\n")
                    self.records += [(stamp, json.loads(x)) for x in lines if x]
                elif self.done.is_set():
                    return
                else:
                    time.sleep(0.01)

    def predictions(self, since: float = 0.0) -> list[tuple[float, dict]]:
        return [(s, r) for s, r in list(self.records) if r["type"] == "prediction" and s >= since]
