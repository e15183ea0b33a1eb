"""Reading a YAML settings file with one ConfigError sentence for every way it can be unusable."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from edge.errors import ConfigError


def read_yaml(path: Path, what: str) -> Any:
    """The parsed YAML at `path` (an empty file gives {}); `what` names the file in the error sentence."""
    if not path.is_file():
        raise ConfigError(f"{what} {path} does not exist.")
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read {what} {path}: {exc.strerror}.") from None
    try:
        return yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{what} {path} is not valid YAML ({type(exc).__name__}).") from None
