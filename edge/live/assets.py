"""Where the shipped runtime assets are: the default model bundle and the runtime settings."""
from __future__ import annotations

from pathlib import Path

from edge.errors import UsageError

ASSETS = Path(__file__).resolve().parents[2] / "assets"
DEFAULT_BUNDLES = ("karmma_s_int8", "karmma_s")
TRAIN_COMMAND = "python -m trainer benchmark --out assets"


def default_bundle() -> Path:
    """The shipped bundle: the int8 one when calibration produced it, else the fp32 one."""
    for name in DEFAULT_BUNDLES:
        if (ASSETS / "bundles" / name / "bundle.yaml").is_file():
            return ASSETS / "bundles" / name
    raise UsageError(f"no model bundle is shipped in {ASSETS / 'bundles'} yet; produce one with `{TRAIN_COMMAND}` "
                     "(it writes assets/bundles/karmma_s) or pass --bundle DIR.")
