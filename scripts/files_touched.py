"""Which of the repository's files run on the hot path: how many files a reader follows (docs/ARCHITECTURE.md).

    python scripts/files_touched.py frame CAMERA [MIC]     # run_live.py --fast: read, tick, predict, print
    python scripts/files_touched.py batch TRAINER-ARGS...  # each fit() of a trainer command: load, step, loss

`frame` profiles the --fast session loop (every item read, every tick and record: a superset of one frame's path,
audio included unless MIC is `none`); `batch` profiles each fit() while it iterates its batches (data loading,
forward, loss, backward, optimizer step) and prints one line per fit() name (fits of one name, e.g. folds,
pooled). Python functions only: files whose code runs in C (ONNX Runtime, OpenCV, torch ops) count for the
repository file that called them, and DataLoader worker processes are not followed (run with data.workers=0, as
--smoke does, to count the loading).
"""
from __future__ import annotations

import runpy
import sys
import tempfile
from pathlib import Path
from typing import Callable, Iterator

__file__ = str(Path(__file__).resolve())
REPO = Path(__file__).parent.parent
sys.path.insert(0, str(REPO))


def _profiler(hits: set[str]) -> Callable:
    root = str(REPO) + "/"

    def profile(frame, event, arg) -> None:
        name = frame.f_code.co_filename
        if event == "call" and name.startswith(root) and "/.venv/" not in name and name != __file__:
            hits.add(name[len(root):])
    return profile


def frame_path(camera: str, mic: str) -> list[str]:
    import edge.live.pipeline as pipeline

    hits: set[str] = set()
    run_fast = pipeline.Session._run_fast

    def traced(session) -> None:
        sys.setprofile(_profiler(hits))
        try:
            run_fast(session)
        finally:
            sys.setprofile(None)

    pipeline.Session._run_fast = traced
    with tempfile.TemporaryDirectory() as tmp:      # the events are printed to a JSONL file
        sys.argv = ["run_live.py", "--camera", camera, "--mic", mic, "--fast", "--jsonl", f"{tmp}/run.jsonl"]
        try:
            runpy.run_path(str(REPO / "run_live.py"), run_name="__main__")
        except SystemExit:
            pass
    return sorted(hits)


def batch_paths(args: list[str]) -> dict[str, set[str]]:
    import trainer.loop as loop

    fit, per_fit = loop.fit, {}

    def traced_fit(step, batches, n_batches, run, **kw) -> None:
        hits = per_fit.setdefault(kw["desc"], set())

        def traced_batches(epoch: int) -> Iterator:
            epoch_batches = iter(batches(epoch))        # the epoch's set-up, once: not a batch's path
            sys.setprofile(_profiler(hits))
            try:
                yield from epoch_batches
            finally:
                sys.setprofile(None)

        fit(step, traced_batches, n_batches, run, **kw)

    loop.fit = traced_fit   # before the stages import it
    sys.argv = ["trainer", *args]
    try:
        runpy.run_module("trainer", run_name="__main__")
    except SystemExit as exc:
        if exc.code:
            raise
    return per_fit


def main() -> None:
    if len(sys.argv) < 3 or sys.argv[1] not in ("frame", "batch"):
        sys.exit(__doc__)
    if sys.argv[1] == "frame":
        files = frame_path(sys.argv[2], sys.argv[3] if len(sys.argv) > 3 else "none")
        print(f"one camera frame: {len(files)} files: {' '.join(files)}")
    else:
        for desc, files in batch_paths(sys.argv[2:]).items():
            print(f"{desc}: {len(files)} files: {' '.join(sorted(files))}")


if __name__ == "__main__":
    main()
