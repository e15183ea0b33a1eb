"""stderr for people: one-sentence warnings (once per subject) and the one-line status of a terminal run."""
from __future__ import annotations

import shutil
import sys
import threading

# Held while the C libraries' own stderr chatter is silenced (sources.quiet_c_stderr); warnings take it too.
STDERR_LOCK = threading.Lock()
_warned: set[str] = set()
_status_width = 0  # the width of the status line now on screen (0: none)


def warn(message: str, key: str | None = None) -> None:
    """Print `warning: message` on its own line; with a `key`, only the first warning about that subject
    (a file that is both the camera and the microphone is truncated once, not twice)."""
    global _status_width
    with STDERR_LOCK:  # not while a capture thread has the C libraries' stderr silenced
        if key is not None:
            if key in _warned:
                return
            _warned.add(key)
        clear = "\r" + " " * _status_width + "\r" if _status_width else ""
        _status_width = 0
        sys.stderr.write(f"{clear}warning: {message}\n")
        sys.stderr.flush()


def status(line: str) -> None:
    """Show `line` as the terminal's status line (rewritten in place)."""
    global _status_width
    with STDERR_LOCK:
        width = max(40, shutil.get_terminal_size((120, 24)).columns - 1)
        sys.stderr.write("\r" + line[:width].ljust(width))
        sys.stderr.flush()
        _status_width = width


def end_status() -> None:
    """Leave the status line where it is and move to a new line (before the summary)."""
    global _status_width
    with STDERR_LOCK:
        if _status_width:
            sys.stderr.write("\n")
            sys.stderr.flush()
        _status_width = 0
