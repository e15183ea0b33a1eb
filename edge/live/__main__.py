"""`python -m edge.live` and the `karmma-live` command: the live recognizer (the flags of run_live.py).

Kept light: the heavy imports (numpy, OpenCV, onnxruntime) happen inside main(), so a Ctrl-C while they load
is one sentence, not a traceback.
"""
import os
import signal
import sys

# The hot path is many tiny numpy operations: a multi-threaded BLAS only adds wake-up latency (a log-mel
# window took ~18 ms instead of ~0.5 ms on a busy 2-core machine). Must be set before numpy is imported.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")


def main(argv: list[str] | None = None, prog: str = "karmma-live") -> int:
    """Run the command line; once it is done, a late Ctrl-C cannot turn a clean exit into death by signal."""
    try:
        from edge.live.cli import main as cli_main
    except KeyboardInterrupt:
        print("interrupted before the recognizer started.", file=sys.stderr)
        return 130
    code = cli_main(argv, prog)
    # Python gives its own handlers back to the default (fatal) action while the interpreter shuts down, which
    # takes a moment after onnxruntime; an ignored signal stays ignored.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    return code


if __name__ == "__main__":
    sys.exit(main(prog="python -m edge.live"))
