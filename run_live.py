#!/usr/bin/env python
"""The live recognizer: `python run_live.py --camera 0 --mic default`, `--camera FILE --mic FILE`, or `--demo`."""
import sys

from edge.live.cli import main

if __name__ == "__main__":
    sys.exit(main())
