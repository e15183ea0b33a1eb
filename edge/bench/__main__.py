"""`python -m edge.bench <subcommand> ...`: one dispatcher for every benchmark.

Each subcommand is a module edge.bench.<name> exposing `add_arguments(parser)` and `run(args) -> int`
(its docstring's first line is the help). Adding a benchmark = writing the module + one name in SUBCOMMANDS (`-` in a name is `_` in its module's).
"""
from __future__ import annotations

import argparse
import importlib
import sys

from edge.errors import EdgeError

SUBCOMMANDS = ("flow", "stats", "latency", "e2e", "soak", "overload", "stream", "web", "record", "own-actions")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m edge.bench", description="KARMMA edge benchmarks.")
    sub = parser.add_subparsers(dest="subcommand", required=True, metavar="SUBCOMMAND")
    modules = {}
    for name in SUBCOMMANDS:
        module = importlib.import_module(f"edge.bench.{name.replace('-', '_')}")
        summary = (module.__doc__ or "").strip().splitlines()[0] if module.__doc__ else ""
        module.add_arguments(sub.add_parser(name, help=summary, description=module.__doc__,
                                            formatter_class=argparse.RawDescriptionHelpFormatter))
        modules[name] = module
    args = parser.parse_args(argv)
    try:
        return modules[args.subcommand].run(args)
    except EdgeError as exc:
        print(f"edge.bench {args.subcommand}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
