"""Keys typed while the recorder runs, read by a thread so a slow terminal never holds up capture."""
from __future__ import annotations

import os
import queue
import sys
import threading
import time
from typing import IO


class KeyReader(threading.Thread):
    """Key presses from stdin as (monotonic time, key): single keys on a terminal (cbreak mode), else one key per
    line (an empty line is Enter), so tests and scripts can drive it through a pipe. EOF gives key 'eof'."""

    def __init__(self, stream: IO = None) -> None:
        super().__init__(name="record-keys", daemon=True)
        self.stream = stream or sys.stdin
        self.q: queue.Queue = queue.Queue()
        self._saved = None
        try:
            self.tty = self.stream.isatty()
        except (AttributeError, ValueError):
            self.tty = False

    def run(self) -> None:
        if self.tty:
            import termios
            import tty

            fd = self.stream.fileno()
            self._saved = termios.tcgetattr(fd)
            tty.setcbreak(fd)
            while True:
                ch = os.read(fd, 1).decode("utf-8", "ignore")
                if not ch:
                    break
                self.q.put((time.monotonic(), "\n" if ch in "\r\n" else ch))
        else:
            for line in self.stream:
                key = line.strip()
                self.q.put((time.monotonic(), key if key else "\n"))
        self.q.put((time.monotonic(), "eof"))

    def restore(self) -> None:
        if self._saved is not None:
            import termios

            termios.tcsetattr(self.stream.fileno(), termios.TCSADRAIN, self._saved)
            self._saved = None

    def keys(self) -> list:
        out = []
        while True:
            try:
                out.append(self.q.get_nowait())
            except queue.Empty:
                return out


# ---- the session ------------------------------------------------------------------------------------------------
