"""Checkpoints written atomically (temporary file + os.replace) and read back with weights_only=True."""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from edge.errors import ConfigError


def save_atomic(obj: Any, path: str | Path) -> None:
    """torch.save to a temporary sibling, then rename: a killed run never leaves a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load(path: str | Path) -> Any | None:
    """The checkpoint at `path`, or None when there is none yet."""
    path = Path(path)
    if not path.is_file():
        return None
    return torch.load(path, map_location="cpu", weights_only=True)


def _plain(settings: dict[str, Any] | None) -> dict[str, Any]:
    """`settings` as JSON gives them back (tuples become lists), so a saved and a live copy compare equal."""
    return json.loads(json.dumps(settings or {}, sort_keys=True))


def save_epoch(path: str | Path, epoch: int, parts: dict[str, Any], settings: dict[str, Any] | None = None) -> None:
    """Checkpoint the end of `epoch`: each part's state_dict (model, optimizer, scheduler, ...), the global torch
    RNG state, which dropout draws from, so a resumed run continues exactly, and the `settings` (loss weights,
    learning rate, ...) that shaped it but not its tensors' shapes."""
    state = {name: part.state_dict() for name, part in parts.items()}
    save_atomic({"epoch": epoch, "rng": torch.get_rng_state(), "settings": _plain(settings), **state}, path)


def resume(path: str | Path, parts: dict[str, Any], settings: dict[str, Any] | None = None) -> int:
    """Restore `parts` from the checkpoint at `path`; the epoch to start from (0 without one). A checkpoint
    written with other `settings` is refused: resuming it would silently mix two trainings (or, once finished,
    report the old one under the new settings)."""
    state = load(path)
    if state is None:
        return 0
    saved, now = state.get("settings") or {}, _plain(settings)  # checkpoints written before this key lack it
    changed = sorted(k for k in saved if saved[k] != now.get(k))  # a setting recorded only since is not compared
    if changed:
        detail = ", ".join(f"{k} {saved.get(k)!r} -> {now.get(k)!r}" for k in changed)
        raise ConfigError(f"{path} was trained with other settings ({detail}); resume only with the same settings, "
                          "or use a new --out.")
    for name, part in parts.items():
        try:
            part.load_state_dict(state[name])
        except (KeyError, RuntimeError, ValueError) as exc:     # another model, loss or optimizer wrote it
            raise ConfigError(f"{path} was written by a run with other settings ({type(exc).__name__} loading its "
                              f"{name}); resume only with the same settings, or use a new --out.") from None
    if "rng" in state:  # checkpoints written before this key lack it
        torch.set_rng_state(state["rng"])
    return state["epoch"] + 1
