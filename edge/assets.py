"""Where things are: the shipped assets (the default model bundles, the runtime and demo settings: a checkout's
assets/ folder, else what `pip install .` put under the environment's share/karmma-edge) and the real data."""
from __future__ import annotations

import os
import sysconfig
from pathlib import Path

from edge.errors import UsageError

CHECKOUT = Path(__file__).resolve().parents[1] / "assets"
INSTALLED = Path(sysconfig.get_path("data")) / "share" / "karmma-edge"
ASSETS = CHECKOUT if (CHECKOUT / "configs" / "runtime.yaml").is_file() else INSTALLED
INT8, FP32 = "karmma_s_int8", "karmma_s"        # the quantized student is what runs live; fp32 holds torch weights


def default_data_root() -> Path | None:
    """Where real data is read from when no --data-root is given: $KARMMA_DATA_ROOT, else ../shared/data beside
    the checkout; None when that folder does not exist (callers then say so, or render procedurally)."""
    env = os.environ.get("KARMMA_DATA_ROOT")
    candidate = Path(env) if env else CHECKOUT.parent.parent / "shared" / "data"
    return candidate if candidate.is_dir() else None


def default_bundle(precision: str = "int8") -> Path:
    """The shipped student: the int8 one (the live default), else the fp32 one; `precision="fp32"` asks for the one
    that holds torch weights (fine-tuning starts from it)."""
    for name in ((INT8, FP32) if precision == "int8" else (FP32,)):
        if (ASSETS / "bundles" / name / "bundle.yaml").is_file():
            return ASSETS / "bundles" / name
    raise UsageError(f"no model bundle is shipped in {ASSETS / 'bundles'}; pass --bundle DIR, a bundle folder "
                     "(with bundle.yaml) such as a checkout's assets/bundles/karmma_s, or produce one with "
                     "`python -m trainer benchmark --out assets` in a checkout.")
