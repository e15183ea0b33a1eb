"""Docs that stay true: every command the README and docs/ show names a module that exists and uses only flags
its `--help` lists (no command is run for real), every `make` target exists, and no shipped text file names a
path of this machine."""
# Tier: unit, except the tests marked integration (they run each program's --help in a subprocess).
from __future__ import annotations

import functools
import importlib.util
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
STARTS = re.compile(r"(?:^|[\s`(])((?:[A-Z_]+=\S+ )*(?:nice -n -?\d+ |timeout \d+ )?(?:\.venv/bin/)?"
                    r"(?:python3? (?:-m [\w.]+|run_live\.py)|torchrun|karmma-live|make [\w-]+)(?:[^`\n]*))")
SHELL_ENDS = {"&&", ";", "|", "||", ">", ">>", "2>&1", "&"}


def shown_commands(text: str) -> list[str]:
    """Commands in fenced blocks (not python ones) and inline code spans, continuation lines joined."""
    spans = []
    for lang, block in re.findall(r"```(\w*)\n(.*?)```", text, flags=re.S):
        if lang != "python":
            spans += block.replace("\\\n", " ").splitlines()
    spans += re.findall(r"(?<!`)`([^`\n]+)`(?!`)", re.sub(r"```.*?```", "", text, flags=re.S))
    return [m.strip() for span in spans for m in STARTS.findall(span)]


@functools.lru_cache(maxsize=None)
def help_text(program: tuple[str, ...]) -> str:
    res = subprocess.run([sys.executable, *program, "--help"], cwd=REPO, capture_output=True, text=True, timeout=120)
    return res.stdout if res.returncode == 0 else ""


def subcommands(help_out: str) -> set[str]:
    """The choices of an argparse sub-command group: `usage: prog [-h] {a,b,c} ...`, or, under a metavar, the
    names argparse indents by four spaces below "positional arguments"."""
    found = re.search(r"\{([\w,-]+)\}", help_out.split("\n\n")[0])
    if found:
        return set(found.group(1).split(","))
    return set(re.findall(r"^    ([a-z][\w-]*)(?:\s|$)", help_out.split("positional arguments:")[-1], flags=re.M)) \
        if "positional arguments:" in help_out else set()


def check_command(command: str) -> str | None:
    """None when the command is valid as written, else what is wrong, in words."""
    command = re.sub(r"\s+#.*$", "", command)
    try:
        tokens = shlex.split(command)
    except ValueError:
        tokens = command.split()
    for i, tok in enumerate(tokens):
        if tok in SHELL_ENDS:
            tokens = tokens[:i]
            break
    tokens = [t.strip("[]") for t in tokens if t.strip("[]|") not in ("", "...")]
    while tokens and (re.fullmatch(r"[A-Z_]+=\S*", tokens[0]) or tokens[0] in ("nice", "timeout")):
        tokens = tokens[3:] if tokens[0] == "nice" else tokens[2:] if tokens[0] == "timeout" else tokens[1:]
    if not tokens:
        return None
    if tokens[0] == "make":
        targets = re.findall(r"^([\w-]+):", (REPO / "Makefile").read_text(), flags=re.M)
        return None if tokens[1] in targets else f"make has no target {tokens[1]!r}"
    if tokens[0] == "karmma-live":
        program, rest = ("-m", "edge.live"), tokens[1:]
    elif tokens[0] == "torchrun":
        if "-m" not in tokens:
            return None
        k = tokens.index("-m")
        program, rest = ("-m", tokens[k + 1]), tokens[k + 2:]
    elif tokens[1] == "-m":
        program, rest = ("-m", tokens[2]), tokens[3:]
    else:
        program, rest = (tokens[1],), tokens[2:]
    if program[0] == "-m" and importlib.util.find_spec(program[1]) is None:
        return f"no module {program[1]}"
    if program[0] != "-m" and not (REPO / program[0]).is_file():
        return f"no file {program[0]}"
    out = help_text(program)
    if not out:
        return f"{' '.join(program)} --help fails"
    subs = subcommands(out)
    positional = [t for t in rest if not t.startswith("-")]
    if subs and positional and positional[0] in subs:
        program = (*program, positional[0])
        out = help_text(program)
    elif subs and positional and not positional[0].isupper():
        return f"{' '.join(program)} has no sub-command {positional[0]!r} (it has {sorted(subs)})"
    known = set(re.findall(r"--[A-Za-z0-9][\w-]*", out))
    unknown = [t.split("=")[0] for t in rest if t.startswith("--") and t.split("=")[0] not in known]
    return f"{' '.join(program)} does not take {unknown}" if unknown else None


def all_commands() -> list[tuple[str, str]]:
    return [(doc.relative_to(REPO).as_posix(), c) for doc in DOCS for c in shown_commands(doc.read_text())]


@pytest.mark.integration
def test_every_command_in_the_readme_and_docs_is_accepted_as_written():
    commands = all_commands()
    assert len(commands) >= 20 and any(c.startswith("make demo") for _, c in commands)
    wrong = [f"{doc}: `{c}`: {why}" for doc, c in commands if (why := check_command(c)) is not None]
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("command, says", [
    ("python -m trainer crossval --dataset recordings --no-such-flag", "does not take ['--no-such-flag']"),
    (".venv/bin/python -m edge.bench latenzy --json", "has no sub-command 'latenzy'"),
    ("python -m edge.no_such_module --help", "no module edge.no_such_module"),
    ("make deploy", "make has no target 'deploy'"),
    ("python run_live.py --camera 0 --mic default --colour", "does not take ['--colour']"),
])
@pytest.mark.integration
def test_the_check_catches_a_drifted_command(command, says):
    assert says in (check_command(command) or "")


@pytest.mark.integration
def test_the_check_passes_commands_as_the_docs_write_them():
    for command in ("python -m trainer crossval --dataset recordings --data-root DATA [--folds K | --leave-one-out]",
                    "KARMMA_CACHE=cache .venv/bin/python -m edge.bench latency [--bundle DIR] [--json]  # note",
                    "python run_live.py --camera 0 --mic default", "make test"):
        assert check_command(command) is None, command


MACHINE_PATHS = re.compile(r"(?<![\w.])/(?:work|tmp|root|home|Users)/")


def test_no_shipped_text_names_a_path_of_this_machine():
    texts = [*DOCS, *[p for p in (REPO / "assets").rglob("*") if p.suffix in (".md", ".json", ".yaml", ".yml", ".txt")
                      or p.name == "LICENSE"]]
    found = [f"{p.relative_to(REPO)}:{n}: {line.strip()[:100]}" for p in texts
             for n, line in enumerate(p.read_text(errors="replace").splitlines(), 1) if MACHINE_PATHS.search(line)]
    assert not found, "\n".join(found)
