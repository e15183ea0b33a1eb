#!/usr/bin/env python
"""The live recognizer: `python run_live.py --camera 0 --mic default`, `--camera FILE --mic FILE`, or `--demo`."""
import os
import sys

# The hot path is many tiny numpy operations: a multi-threaded BLAS only adds wake-up latency (a log-mel
# window took ~18 ms instead of ~0.5 ms on a busy 2-core machine). Must be set before numpy is imported.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

from edge.live.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
