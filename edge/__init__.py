"""On-device runtime: preprocessing, model bundles, live capture and inference.

`edge` never imports `trainer` or `calibration` (see ARCHITECTURE.md) and does not
need torch unless the torch optical-flow backend is chosen.
"""

import os

# numpy's OpenBLAS keeps its worker threads spinning after every small matrix product (the log-mel filterbank):
# in the real-time live loop that alone cost ~30 % of a core for no speed-up at these sizes. It must be set
# before numpy loads; a user's own setting wins.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
