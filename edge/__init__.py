"""On-device runtime: preprocessing, model bundles, live capture and inference.

`edge` never imports `trainer` or `calibration` (see ARCHITECTURE.md) and does not
need torch unless the torch optical-flow backend is chosen.
"""

import os

# numpy's OpenBLAS keeps its worker threads spinning after every small matrix product (the log-mel filterbank):
# in the real-time live loop that alone cost ~30 % of a core for no speed-up at these sizes. It must be set
# before numpy loads; a user's own setting wins.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

__all__ = ["ActionRecognizer", "load_bundle"]


def __getattr__(name: str):
    """`from edge import ActionRecognizer` (edge/embed.py) without loading ONNX Runtime on a bare `import edge`."""
    if name == "ActionRecognizer":
        from edge.embed import ActionRecognizer

        return ActionRecognizer
    if name == "load_bundle":
        from edge.bundle import load_bundle

        return load_bundle
    raise AttributeError(f"module 'edge' has no attribute {name!r}")
