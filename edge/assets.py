"""Where the shipped assets are (the default model bundles, the runtime and demo settings): a checkout's
assets/ folder, else what `pip install .` put under the environment's share/karmma-edge."""
from __future__ import annotations

import sysconfig
from pathlib import Path

from edge.errors import UsageError

CHECKOUT = Path(__file__).resolve().parents[1] / "assets"
INSTALLED = Path(sysconfig.get_path("data")) / "share" / "karmma-edge"
ASSETS = CHECKOUT if (CHECKOUT / "configs" / "runtime.yaml").is_file() else INSTALLED
DEFAULT_BUNDLES = ("karmma_s", "karmma_s_int8")  # fp32 first: int8 streams 1-2 points lower with mic or camera off (README)


def default_bundle() -> Path:
    """The shipped bundle: the fp32 student, else the int8 one."""
    for name in DEFAULT_BUNDLES:
        if (ASSETS / "bundles" / name / "bundle.yaml").is_file():
            return ASSETS / "bundles" / name
    raise UsageError(f"no model bundle is shipped in {ASSETS / 'bundles'}; pass --bundle DIR, a bundle folder "
                     "(with bundle.yaml) such as a checkout's assets/bundles/karmma_s, or produce one with "
                     "`python -m trainer benchmark --out assets` in a checkout.")
