#!/usr/bin/env python
"""The live recognizer: `python run_live.py --camera 0 --mic default`, `--camera FILE --mic FILE`, or `--demo`
(the same command as `karmma-live` and `python -m edge.live`)."""
import sys

from edge.live.__main__ import main

if __name__ == "__main__":
    sys.exit(main(prog="run_live.py"))
